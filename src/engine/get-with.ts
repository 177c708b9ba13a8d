//! Get-with-continuation: hand a value to a handler without copying it through JavaScript.
//!
//! `getWith(key, handler)` gives the handler exactly one of NotFound, Value (bytes that are not
//! contiguous in the file: values small enough to live inside their leaf; or not in the page
//! cache: values among the last ~1 MiB of small durable commits written directly, which a send
//! from the file would read from the disk, OpenOptions.syncDirect) or Location (a
//! duplicated fd, offset and length of the value's bytes in the data file). While the handler
//! runs, the commit it read from stays pinned (db.snapshot), so compaction cannot reclaim those
//! bytes, and since the file is append-only a later overwrite writes elsewhere. The duplicated fd
//! is closed when the handler's promise settles, whether it resolves or throws: a handler that
//! keeps the fd keeps nothing useful.
//!
//! Checksums: a Location's bytes are verified against their Value entry's CRC32C the first time
//! that entry is handed out or read (streamed in 1 MiB chunks), then remembered for as long as
//! the store is open, so repeated zero-copy sends and gets of a hot value cost no second pass.
//! The trust is "verified since open": bytes that rot on disk after their first read are caught
//! by the next open's reads or by check(), not by every get.
//!
//! `sendValue(key, socket)` is built on it: an optional u32 little-endian length prefix, then the
//! value, written with sendfile/splice through the native addon (src/native/send-file.ts), or
//! pread + socket.write without it. That is Arakoon's GET reply body after its 4-byte return code.
import { Buffer } from 'node:buffer';
import fs from 'node:fs';
import type net from 'node:net';
import { addon } from '../native/addon.js';
import { sendBytes, sendFileRegion, type SendMode } from '../native/send-file.js';
import { crc32cUpdate } from '../wasm/crc32c.js';
import { CorruptionError } from './errors.js';
import { ENTRY_HEADER_BYTES, Kind, kindName, readU32 } from './format.js';
import type { FileLog } from './log-file.js';

export type ValueSource =
  | { kind: 'notFound' }
  | { kind: 'value'; value: Buffer }
  | { kind: 'location'; fd: number; offset: number; length: number };

export interface SendValueOptions {
  /** 'u32le' (default): a 4-byte little-endian length before the value; 'none': the value only. */
  lengthPrefix?: 'u32le' | 'none';
  /** Transfer path; 'sendfile' by default, 'fallback' forces pread + socket.write. */
  mode?: SendMode;
}

export interface SendValueResult {
  found: boolean;
  /** Value bytes written (the prefix not counted). */
  bytes: number;
}

const VERIFIED_MAX = 1 << 20;

/**
 * Remembers which Value entries passed their checksum, and their lengths, so zero-copy sends skip
 * re-reading. By position and length: a reference that names a checked entry with another length
 * (a damaged or hostile leaf whose own checksum holds) must be checked again, and refused.
 */
export class ValueVerifier {
  private readonly verified = new Map<number, number>();
  constructor(private readonly log: FileLog) {}

  isVerified(pos: number, len: number): boolean {
    return this.verified.get(pos) === len;
  }

  markVerified(pos: number, len: number): void {
    if (this.verified.size >= VERIFIED_MAX) this.verified.clear();
    this.verified.set(pos, len);
  }

  /** Throws CorruptionError unless the Value entry at `pos` with `len` value bytes is intact. */
  verify(pos: number, len: number): void {
    if (this.isVerified(pos, len)) return;
    if (!(Number.isSafeInteger(pos) && pos >= 0 && Number.isSafeInteger(len) && len >= 0 && pos + ENTRY_HEADER_BYTES + len <= this.log.end)) {
      throw new CorruptionError(pos, `reference to a ${len}-byte value at ${pos} lies outside the file (end ${this.log.end})`);
    }
    const head = this.log.read(pos, ENTRY_HEADER_BYTES);
    if (head[8] !== Kind.Value) throw new CorruptionError(pos, `expected a value entry, found ${kindName(head[8])}`);
    if (readU32(head, 4) !== len) throw new CorruptionError(pos, 'value entry length differs from its reference');
    let crc = crc32cUpdate(0, head, 4, ENTRY_HEADER_BYTES);
    const chunkBytes = 1 << 20;
    const chunk = Buffer.allocUnsafe(Math.min(chunkBytes, Math.max(1, len)));
    for (let off = 0; off < len; off += chunkBytes) {
      const n = Math.min(chunkBytes, len - off);
      this.log.readInto(chunk, 0, n, pos + ENTRY_HEADER_BYTES + off);
      crc = crc32cUpdate(crc, chunk, 0, n);
    }
    if (crc !== readU32(head, 0)) throw new CorruptionError(pos, 'value entry checksum mismatch');
    this.markVerified(pos, len);
  }
}

/**
 * A new fd for the store's open file: dup(2) through the addon, else a fresh open of the same
 * path, checked to be the same inode (a path could name a different file after a rename).
 */
export function duplicateFd(log: FileLog): number {
  if (addon !== null) {
    const fd = addon.dup(log.fd);
    if (fd < 0) throw new Error(`dup(${log.fd}) failed: errno ${-fd}`);
    return fd;
  }
  const fd = fs.openSync(log.path, 'r');
  const a = fs.fstatSync(fd);
  const b = fs.fstatSync(log.fd);
  if (a.ino !== b.ino || a.dev !== b.dev) {
    fs.closeSync(fd);
    throw new Error(`${log.path} now names another file; cannot hand out a location`);
  }
  return fd;
}

export async function sendSource(socket: net.Socket, src: ValueSource, opts: SendValueOptions): Promise<SendValueResult> {
  const prefixed = (opts.lengthPrefix ?? 'u32le') === 'u32le';
  switch (src.kind) {
    case 'notFound':
      return { found: false, bytes: 0 };
    case 'value': {
      const out = Buffer.allocUnsafe((prefixed ? 4 : 0) + src.value.length);
      if (prefixed) out.writeUInt32LE(src.value.length, 0);
      src.value.copy(out, prefixed ? 4 : 0);
      // Through send-file.ts, not a bare write: an inline value must be refused while a Location
      // streams on this socket, and fail like one when the socket is destroyed under it.
      await sendBytes(socket, out);
      return { found: true, bytes: src.value.length };
    }
    case 'location': {
      let prefix: Buffer | undefined;
      if (prefixed) {
        prefix = Buffer.allocUnsafe(4);
        prefix.writeUInt32LE(src.length, 0);
      }
      const r = await sendFileRegion(socket, src.fd, src.offset, src.length, { prefix, mode: opts.mode });
      return { found: true, bytes: r.bytes };
    }
    default: {
      const never: never = src;
      throw new Error(`unknown value source ${String(never)}`);
    }
  }
}
