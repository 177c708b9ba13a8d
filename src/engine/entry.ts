//! Reading and verifying single entries (framing in format.ts).
//!
//! Every entry read from disk passes its CRC32C here before anything decodes it; a mismatch is
//! a CorruptionError naming the entry's offset, never data (design.md §4 invariant 5).
import type { Buffer } from 'node:buffer';
import { crc32c } from '../wasm/crc32c.js';
import { CorruptionError } from './errors.js';
import { ENTRY_HEADER_BYTES, Kind, isKind, kindName, readU32 } from './format.js';
import type { FileLog } from './log-file.js';

export interface RawEntry {
  /** The whole entry (header and body). */
  buf: Buffer;
  kind: Kind;
  bodyLen: number;
}

/** Verifies the framing and checksum of an entry held in `buf` at `off`. */
export function verifyEntry(buf: Buffer, off: number, pos: number): { kind: Kind; bodyLen: number } {
  if (buf.length - off < ENTRY_HEADER_BYTES) throw new CorruptionError(pos, 'entry header cut short');
  const bodyLen = readU32(buf, off + 4);
  const kind = buf[off + 8];
  if (!isKind(kind)) throw new CorruptionError(pos, `unknown entry kind ${kind}`);
  if (bodyLen > buf.length - off - ENTRY_HEADER_BYTES) throw new CorruptionError(pos, 'entry length runs past its bounds');
  const want = readU32(buf, off);
  const got = crc32c(buf, off + 4, off + ENTRY_HEADER_BYTES + bodyLen);
  if (want !== got) throw new CorruptionError(pos, `${kindName(kind)} entry checksum mismatch`);
  return { kind, bodyLen };
}

/** Reads an entry whose whole length is known (from its parent's reference) and verifies it. */
export function readEntry(log: FileLog, pos: number, len: number, expectKind?: Kind): RawEntry {
  if (len < ENTRY_HEADER_BYTES || pos + len > log.end) {
    throw new CorruptionError(pos, `reference to ${len} bytes at ${pos} lies outside the file (end ${log.end})`);
  }
  const buf = log.read(pos, len);
  const { kind, bodyLen } = verifyEntry(buf, 0, pos);
  if (ENTRY_HEADER_BYTES + bodyLen !== len) throw new CorruptionError(pos, 'entry length differs from its reference');
  if (expectKind !== undefined && kind !== expectKind) {
    throw new CorruptionError(pos, `expected a ${kindName(expectKind)} entry, found ${kindName(kind)}`);
  }
  return { buf, kind, bodyLen };
}

/** Reads and verifies a tree node entry (Leaf or Index); any other kind is corruption. */
export function readNodeEntry(log: FileLog, pos: number, len: number): RawEntry & { kind: Kind.Leaf | Kind.Index } {
  const e = readEntry(log, pos, len);
  if (e.kind !== Kind.Leaf && e.kind !== Kind.Index) {
    throw new CorruptionError(pos, `expected a leaf or index entry, found ${kindName(e.kind)}`);
  }
  return e as RawEntry & { kind: Kind.Leaf | Kind.Index };
}
