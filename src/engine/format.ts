//! The on-disk format, version 2 (reads 1): constants, integer codecs, superblocks and entry framing.
//!
//! Follows Baardskeerder's Flog design (spec/baardskeerder-and-arakoon.md §A.4–A.5, A.9) with
//! its known gaps closed: every entry and every slab is covered by a CRC32C, the superblock has a
//! magic, a version and a CRC, and recovery truncates a torn tail (recovery.ts).
//!
//! File layout (all integers little-endian):
//!
//!     [0, 4096)        superblock copy A
//!     [4096, 8192)     superblock copy B
//!     [8192, end)      slabs, back to back; each slab is entries closed by one Commit entry
//!
//! Superblock (first SUPERBLOCK_BYTES of its 4 KiB block, rest zero):
//!
//!     0   magic "SOLIFUGE"             8 bytes
//!     8   formatVersion u32            = 1
//!     12  blockSize u32                = 4096
//!     16  counter u64                  the copy with the higher counter (and a valid CRC) wins
//!     24  lastCommitPos u64            0 = empty store
//!     32  lastCommitLen u32
//!     36  dataEnd u64                  end of the last slab known durable when this was written
//!     44  liveStart u64                first byte still in use: online compaction reclaimed
//!                                      (punched) [8192, liveStart); slabs are read from here on
//!     52  crc32c u32                   over bytes [0, 52)
//!
//! Entry (a Value, Leaf, Index or Commit; positions in the file are "Outer" positions):
//!
//!     0   crc32c u32                   over bytes [4, 9 + bodyLen): length, kind and body
//!     4   bodyLen u32
//!     8   kind u8                      1 Value, 2 Leaf, 3 Index, 4 Commit, 5 Actions
//!     9   body                         see codec.ts; a Value's body is the raw value bytes, so a
//!                                      value lies contiguous at entryPos + 9 (what getWith hands out)
//!
//! Slab contents. Every commit's slab holds its new Value entries, one Actions entry (the commit's
//! sets and deletes in order, Baardskeerder's `cactions`) and the Commit. The tree's nodes are
//! written lazily: a *checkpoint* slab also carries every Leaf and Index changed since the previous
//! checkpoint, and from then on commits name that tree root. The tree of the last commit is
//! therefore "checkpoint root + the actions of the commits after it", which recovery replays.
//! This is Baardskeerder's `pos` versus `lookup` root split (§A.7) made systematic: a random
//! 1,000-key batch writes ~120 KB of actions instead of ~1,000 copied leaves, and many batches'
//! changes to a leaf coalesce into one copy at the next checkpoint (design.md §2 on bytes per key).
//!
//! Baardskeerder's "Inner" positions (references into the slab being built) exist only while a slab
//! is encoded: the slab builder's plan refers to a child or value written in the same slab by its
//! entry index, and the encoder (asm/slab.ts) resolves it to the Outer position, so the bytes on
//! disk hold only Outer positions and reads never relocate anything.
import { Buffer } from 'node:buffer';

/**
 * The format this build writes. Version 2 adds Commits that record no key count (codec.ts,
 * commit version 2); version 3 adds Commits that record they were appended while bytes before
 * them were not known durable (commit versions 3 and 4). Older files are read as they are; a
 * writable open rewrites a superblock as this version before writing anything else (Db.open),
 * so that an older build refuses the file (UnsupportedVersionError) instead of cutting commits
 * it cannot read beyond its superblock's durable mark as a torn tail.
 */
export const FORMAT_VERSION = 3;
/** The oldest format this build reads. */
export const FORMAT_VERSION_MIN = 1;
export const BLOCK_BYTES = 4096;
export const SUPERBLOCK_A_POS = 0;
export const SUPERBLOCK_B_POS = BLOCK_BYTES;
export const DATA_START_POS = 2 * BLOCK_BYTES;
export const SUPERBLOCK_BYTES = 56;
export const MAGIC = Buffer.from('SOLIFUGE', 'latin1');

export const ENTRY_HEADER_BYTES = 9;
/**
 * Largest entry body this engine writes or reads: bounds allocations driven by a length field on
 * disk. Values are capped below it (maxValueBytes ≤ 1 GiB), and a checkpoint's leaves and indexes
 * are separate entries of at most a few nodes' size.
 */
export const ENTRY_BODY_BYTES_MAX = 1 << 30;

export const enum Kind {
  Value = 1,
  Leaf = 2,
  Index = 3,
  Commit = 4,
  Actions = 5,
}

export function isKind(k: number): k is Kind {
  return k >= Kind.Value && k <= Kind.Actions;
}

export function kindName(k: number): string {
  return ['?', 'value', 'leaf', 'index', 'commit', 'actions'][k] ?? `kind ${k}`;
}

// --- integers -------------------------------------------------------------------------------

const TWO_32 = 0x1_0000_0000;

/** Writes a non-negative safe integer as u64 LE. */
export function writeU64(b: Buffer, off: number, v: number): void {
  b.writeUInt32LE(v % TWO_32, off);
  b.writeUInt32LE(Math.floor(v / TWO_32), off + 4);
}

/** Reads u64 LE; values beyond 2^53 cannot occur in a valid file and are reported as NaN. */
export function readU64(b: Uint8Array, off: number): number {
  const lo = (b[off] | (b[off + 1] << 8) | (b[off + 2] << 16)) + b[off + 3] * 0x100_0000;
  const hi = (b[off + 4] | (b[off + 5] << 8) | (b[off + 6] << 16)) + b[off + 7] * 0x100_0000;
  if (hi >= 0x20_0000) return Number.NaN;
  return hi * TWO_32 + lo;
}

export function readU32(b: Uint8Array, off: number): number {
  return (b[off] | (b[off + 1] << 8) | (b[off + 2] << 16)) + b[off + 3] * 0x100_0000;
}

/** LEB128 size of a non-negative safe integer. */
export function varintBytes(v: number): number {
  let n = 1;
  while (v >= 0x80) {
    v = Math.floor(v / 128);
    n++;
  }
  return n;
}

// --- superblock -----------------------------------------------------------------------------

export interface Superblock {
  /** The format version it was written with (FORMAT_VERSION_MIN .. FORMAT_VERSION). */
  version: number;
  counter: number;
  lastCommitPos: number;
  lastCommitLen: number;
  dataEnd: number;
  liveStart: number;
}

export function encodeSuperblock(sb: Superblock, crc32c: (b: Uint8Array, s: number, e: number) => number): Buffer {
  const b = Buffer.alloc(BLOCK_BYTES);
  MAGIC.copy(b, 0);
  b.writeUInt32LE(sb.version, 8);
  b.writeUInt32LE(BLOCK_BYTES, 12);
  writeU64(b, 16, sb.counter);
  writeU64(b, 24, sb.lastCommitPos);
  b.writeUInt32LE(sb.lastCommitLen, 32);
  writeU64(b, 36, sb.dataEnd);
  writeU64(b, 44, sb.liveStart);
  b.writeUInt32LE(crc32c(b, 0, 52), 52);
  return b;
}

export type SuperblockRead =
  | { kind: 'valid'; sb: Superblock }
  | { kind: 'foreign' } // no magic: not ours (or never written)
  | { kind: 'badVersion'; version: number }
  | { kind: 'corrupt'; detail: string };

export function decodeSuperblock(b: Uint8Array, crc32c: (b: Uint8Array, s: number, e: number) => number): SuperblockRead {
  if (b.length < SUPERBLOCK_BYTES) return { kind: 'foreign' };
  for (let i = 0; i < MAGIC.length; i++) if (b[i] !== MAGIC[i]) return { kind: 'foreign' };
  if (readU32(b, 52) !== crc32c(b, 0, 52)) return { kind: 'corrupt', detail: 'superblock checksum mismatch' };
  const version = readU32(b, 8);
  if (version < FORMAT_VERSION_MIN || version > FORMAT_VERSION) return { kind: 'badVersion', version };
  const sb: Superblock = {
    version,
    counter: readU64(b, 16),
    lastCommitPos: readU64(b, 24),
    lastCommitLen: readU32(b, 32),
    dataEnd: readU64(b, 36),
    liveStart: readU64(b, 44),
  };
  if (readU32(b, 12) !== BLOCK_BYTES || !Number.isFinite(sb.counter) || !Number.isFinite(sb.dataEnd) ||
      sb.dataEnd < DATA_START_POS || !Number.isFinite(sb.lastCommitPos) ||
      !(sb.liveStart >= DATA_START_POS && sb.liveStart <= sb.dataEnd) ||
      (sb.lastCommitPos !== 0 && sb.lastCommitPos < sb.liveStart)) {
    return { kind: 'corrupt', detail: 'superblock fields out of range' };
  }
  return { kind: 'valid', sb };
}
