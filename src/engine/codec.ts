//! Entry bodies: Leaf, Index and Commit (format version 1). The framing is in format.ts.
//!
//! Leaf body:
//!
//!     count varint
//!     prefixLen varint, prefix bytes        shared prefix of every key in the node
//!     count × item:
//!       suffixLen varint, suffix bytes
//!       valueKind u8                        0 inline: len varint, bytes
//!                                           1 entry:  pos varint (Value entry), len varint (value bytes)
//!
//! Index body (`count` children, `count - 1` separators; separator i bounds child i + 1 below):
//!
//!     count varint                          >= 1
//!     prefixLen varint, prefix bytes        shared prefix of every separator
//!     child0: pos varint, len varint        len = whole entry length, so one pread reads it
//!     (count - 1) × (suffixLen varint, suffix bytes, pos varint, len varint)
//!
//! Actions body (a commit's changes, in the order they were made):
//!
//!     count varint
//!     count × action:
//!       op u8                               0 delete, 1 set with inline value, 2 set with Value entry
//!       keyLen varint, key bytes
//!       op 1: len varint, bytes             op 2: pos varint (Value entry), len varint (value bytes)
//!
//! Commit body (fixed 83 bytes):
//!
//!     0  commitVersion u8                   1; 2: the same, but keyCount is not recorded (0);
//!                                           3 and 4: as 1 and 2, but appended while bytes of the
//!                                           log before slabStart were not known durable yet (no
//!                                           fdatasync that covered them had returned: durable:
//!                                           false, the store's or a transaction's). Recovery
//!                                           takes only a commit of version 1 or 2 found after
//!                                           damage as proof that the damage hit durable bytes
//!     1  treeRootKind u8                    root of the last checkpointed tree: 0 empty, 2 leaf, 3 index
//!     2  treeRootPos u64, 10 treeRootLen u32
//!     14 prevCommitPos u64                  0 for the first commit
//!     22 seq u64                            1, 2, 3, … one per commit
//!     30 hasTag u8, 31 tag u64              the caller's opaque number (Baardskeerder's "time")
//!     39 keyCount u64                       live keys after this commit (version 1; replay
//!                                           checks the last commit's); a version-2 commit's sets
//!                                           changed the tree after the record was written
//!                                           (Db.commit), and replay alone counts its keys
//!     47 slabStart u64                      first byte of this slab
//!     55 slabCrc u32                        CRC32C over the 4-byte CRCs of the slab's other entries,
//!                                           in order: each covers its entry, so this covers the slab
//!     59 treeSeq u64                        seq of the commit whose tree is checkpointed (0: none yet):
//!                                           its own slab holds the tree, or a later one does (a
//!                                           background checkpoint, db.ts: the commits between are
//!                                           replayed onto it; root* then point into that slab)
//!     67 treeCommitPos u64                  that commit's position (0: none); replay starts after it
//!     75 treeKeyCount u64                   keys in the checkpointed tree
//!
//! Varints are LEB128 (7 bits a byte, low group first), as Baardskeerder's Flog0 (§A.4).
//!
//! Leaf, Index and Actions bodies are encoded and parsed in WebAssembly (asm/slab.ts; slab.ts and
//! plan.ts stage what it encodes). Decoding here turns its row tables into JS nodes: strings for
//! keys and for inline values (keys.ts InlineValue: copies, not views). The Commit body is
//! fixed-width and stays in JS. test/support/reference-codec.ts is a plain-JS encoder and decoder
//! of the same layouts, which the codec tests compare byte for byte.
import type { Buffer } from 'node:buffer';
import { core, scratch } from '../wasm/module.js';
import { AssertionError, CorruptionError } from './errors.js';
import { Kind, readU32, readU64, writeU64 } from './format.js';
import { inlineValueAt, latin1At, type BinKey } from './keys.js';
import { DiskRef, IndexNode, LeafNode, ValueRef, leafItemBytes, indexItemBytes, NODE_OVERHEAD_BYTES, INDEX_CHILD0_BYTES, type Child, type LeafValue } from './node.js';

export const COMMIT_BODY_BYTES = 83;
export const COMMIT_ENTRY_BYTES = 9 + COMMIT_BODY_BYTES;

/** asm/slab.ts parseBody's error codes, as the messages a CorruptionError carries. */
const PARSE_ERRORS: Record<number, string> = {
  [-1]: 'entry body ends early',
  [-2]: 'number too long',
  [-3]: 'item count exceeds its size',
  [-4]: 'string or value runs past the entry',
  [-5]: 'unknown value kind',
  [-6]: 'unknown action',
  [-7]: 'trailing bytes after the last item',
};
const ROW_F64S = 5;

/**
 * Body bytes every item takes at least, and the body bytes besides its items (the count varint
 * and the prefix length, one byte each at least), per kind (the layouts above): a leaf item has
 * a suffix length, a value kind and a value length or two varints; an index child after child0 a
 * suffix length and two varints (child0 two varints, which with the prefix length is three
 * bytes too); an action an op and a key length.
 */
function itemBytesMin(kind: Kind): number {
  return kind === Kind.Actions ? 2 : 3;
}
function bodyOverheadMin(kind: Kind): number {
  return kind === Kind.Leaf ? 2 : 1;
}

/**
 * The count varint at `start`, for sizing the row table (the parser validates it again); 0 when
 * it is cut off or too long, which the parser then reports.
 */
function peekCount(b: Uint8Array, start: number, end: number): number {
  let v = 0;
  let mul = 1;
  for (let i = start; i < end && i < start + 8; i++) {
    v += (b[i] & 0x7f) * mul;
    if (b[i] < 0x80) return v;
    mul *= 128;
  }
  return 0;
}

/**
 * Parses the body at [start, end) of `b` in WebAssembly; returns its rows (asm/slab.ts parseBody),
 * valid until the next call into the core instance.
 */
function parseRows(kind: Kind, b: Uint8Array, start: number, end: number, entryPos: number, what: string): Float64Array {
  const len = end - start;
  // The row table takes 40 bytes per claimed item, sized before the parser has checked the count
  // against the body: a count the body cannot hold is corruption, refused here before it sizes an
  // allocation (up to 40× the body, which once took the whole allocator and broke every store).
  const count = peekCount(b, start, end);
  if (count > 0 && count * itemBytesMin(kind) > len - bodyOverheadMin(kind)) {
    throw new CorruptionError(entryPos, `${what}: ${PARSE_ERRORS[-3]} (${count} items in ${len} bytes)`);
  }
  const maxRows = count + 2;
  const bodyBytes = (len + 7) & ~7;
  const { ptr, view } = scratch(bodyBytes + maxRows * ROW_F64S * 8);
  view.set(b.subarray(start, end), 0);
  const n = core.parseBody(kind, ptr, len, ptr + bodyBytes, maxRows);
  if (n < 0) {
    const detail = PARSE_ERRORS[n];
    if (detail === undefined) throw new AssertionError(`body parser failed (${n})`);
    throw new CorruptionError(entryPos, `${what}: ${detail}`);
  }
  return new Float64Array(core.memory.buffer, ptr + bodyBytes, (n + 1) * ROW_F64S);
}

/** Decodes a leaf body at [start, end) of `b`; inline values are copied out (keys.ts InlineValue). */
export function decodeLeafBody(b: Buffer, start: number, end: number, entryPos: number): LeafNode {
  const rows = parseRows(Kind.Leaf, b, start, end, entryPos, 'leaf');
  const count = rows[0];
  const prefix = latin1At(b, start + rows[1], rows[2]);
  const keys: BinKey[] = new Array(count);
  const vals: LeafValue[] = new Array(count);
  let bytes = NODE_OVERHEAD_BYTES;
  for (let i = 0, r = ROW_F64S; i < count; i++, r += ROW_F64S) {
    const suffix = latin1At(b, start + rows[r], rows[r + 1]);
    const key = (prefix.length === 0 ? suffix : prefix + suffix) as BinKey;
    const a = rows[r + 3];
    const v: LeafValue = rows[r + 2] === 0 ? inlineValueAt(b, start + a, rows[r + 4]) : new ValueRef(a, rows[r + 4], undefined);
    keys[i] = key;
    vals[i] = v;
    bytes += leafItemBytes(key, v);
  }
  return new LeafNode(0, keys, vals, bytes);
}

export function decodeIndexBody(b: Buffer, start: number, end: number, entryPos: number): IndexNode {
  const rows = parseRows(Kind.Index, b, start, end, entryPos, 'index');
  const count = rows[0];
  const prefix = latin1At(b, start + rows[1], rows[2]);
  const keys: BinKey[] = new Array(count - 1);
  const kids: Child[] = new Array(count);
  let bytes = NODE_OVERHEAD_BYTES + INDEX_CHILD0_BYTES;
  kids[0] = new DiskRef(rows[ROW_F64S + 3], rows[ROW_F64S + 4]);
  for (let i = 1, r = 2 * ROW_F64S; i < count; i++, r += ROW_F64S) {
    const suffix = latin1At(b, start + rows[r], rows[r + 1]);
    const key = (prefix.length === 0 ? suffix : prefix + suffix) as BinKey;
    keys[i - 1] = key;
    kids[i] = new DiskRef(rows[r + 3], rows[r + 4]);
    bytes += indexItemBytes(key);
  }
  return new IndexNode(0, keys, kids, bytes);
}

export interface CommitRecord {
  /** Position and whole length of the commit entry itself. */
  pos: number;
  len: number;
  seq: number;
  /** Root of the last checkpointed tree. */
  rootKind: Kind.Leaf | Kind.Index | 0;
  rootPos: number;
  rootLen: number;
  prevCommitPos: number;
  tag: number | undefined;
  /** Live keys after this commit; null where the record does not say (commit versions 2 and 4). */
  keyCount: number | null;
  /**
   * Whether every byte of the log before `slabStart` was durable (covered by an fdatasync that had
   * returned) when this slab was built: commit versions 1 and 2; false: 3 and 4 (recovery.ts).
   */
  afterDurable: boolean;
  slabStart: number;
  slabCrc: number;
  treeSeq: number;
  treeCommitPos: number;
  treeKeyCount: number;
}

/** Writes a commit body (COMMIT_BODY_BYTES) into `b` at `o`. */
export function encodeCommitBody(b: Buffer, o: number, c: Omit<CommitRecord, 'pos' | 'len'>): void {
  b[o] = (c.keyCount === null ? 2 : 1) + (c.afterDurable ? 0 : 2);
  b[o + 1] = c.rootKind;
  writeU64(b, o + 2, c.rootPos);
  b.writeUInt32LE(c.rootLen, o + 10);
  writeU64(b, o + 14, c.prevCommitPos);
  writeU64(b, o + 22, c.seq);
  b[o + 30] = c.tag === undefined ? 0 : 1;
  writeU64(b, o + 31, c.tag ?? 0);
  writeU64(b, o + 39, c.keyCount ?? 0);
  writeU64(b, o + 47, c.slabStart);
  b.writeUInt32LE(c.slabCrc >>> 0, o + 55);
  writeU64(b, o + 59, c.treeSeq);
  writeU64(b, o + 67, c.treeCommitPos);
  writeU64(b, o + 75, c.treeKeyCount);
}

export function decodeCommitBody(b: Uint8Array, start: number, end: number, pos: number, len: number): CommitRecord {
  if (end - start !== COMMIT_BODY_BYTES) throw new CorruptionError(pos, `commit body of ${end - start} bytes`);
  const version = b[start];
  if (version < 1 || version > 4) throw new CorruptionError(pos, `unknown commit version ${version}`);
  const counted = version === 1 || version === 3;
  const rootKind = b[start + 1];
  if (rootKind !== 0 && rootKind !== Kind.Leaf && rootKind !== Kind.Index) {
    throw new CorruptionError(pos, `commit root kind ${rootKind}`);
  }
  const c: CommitRecord = {
    pos,
    len,
    rootKind: rootKind as CommitRecord['rootKind'],
    rootPos: readU64(b, start + 2),
    rootLen: readU32(b, start + 10),
    prevCommitPos: readU64(b, start + 14),
    seq: readU64(b, start + 22),
    tag: b[start + 30] === 1 ? readU64(b, start + 31) : undefined,
    keyCount: counted ? readU64(b, start + 39) : null,
    afterDurable: version <= 2,
    slabStart: readU64(b, start + 47),
    slabCrc: readU32(b, start + 55),
    treeSeq: readU64(b, start + 59),
    treeCommitPos: readU64(b, start + 67),
    treeKeyCount: readU64(b, start + 75),
  };
  for (const k of ['rootPos', 'prevCommitPos', 'seq', 'keyCount', 'slabStart', 'treeSeq', 'treeCommitPos', 'treeKeyCount'] as const) {
    const v = c[k];
    if (v !== null && !Number.isFinite(v)) throw new CorruptionError(pos, `commit field ${k} out of range`);
  }
  if (!counted && readU64(b, start + 39) !== 0) throw new CorruptionError(pos, `a version-${version} commit records a key count`);
  if (!counted && c.treeSeq === c.seq) throw new CorruptionError(pos, `a version-${version} commit holds a checkpoint`);
  if (c.tag !== undefined && !Number.isFinite(c.tag)) throw new CorruptionError(pos, 'commit tag out of range');
  if (c.treeSeq > c.seq || (c.treeSeq === 0) !== (c.treeCommitPos === 0)) throw new CorruptionError(pos, 'commit names an impossible checkpoint');
  return c;
}

/**
 * One change of a commit: a set (inline bytes, or a Value entry) or a delete (`val` null). Inline
 * bytes are a binary string when read back from the log (keys.ts InlineValue), and a Buffer the
 * store copied from its caller when written (db.ts makeValue): the tree takes either.
 */
export interface Action {
  key: BinKey;
  val: WriteValue | null;
}

/** A value as a write carries it: inline bytes (a binary string or a Buffer), or a Value entry. */
export type WriteValue = LeafValue | Uint8Array;

/** Decodes an actions body; inline values are copied out (keys.ts InlineValue). */
export function decodeActionsBody(b: Buffer, start: number, end: number, entryPos: number): Action[] {
  const rows = parseRows(Kind.Actions, b, start, end, entryPos, 'actions');
  const count = rows[0];
  const out: Action[] = new Array(count);
  for (let i = 0, r = ROW_F64S; i < count; i++, r += ROW_F64S) {
    const key = latin1At(b, start + rows[r], rows[r + 1]) as BinKey;
    const op = rows[r + 2];
    const a = rows[r + 3];
    if (op === 0) out[i] = { key, val: null };
    else if (op === 1) out[i] = { key, val: inlineValueAt(b, start + a, rows[r + 4]) };
    else out[i] = { key, val: new ValueRef(a, rows[r + 4], undefined) };
  }
  return out;
}
