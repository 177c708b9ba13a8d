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
//!     0  commitVersion u8 = 1
//!     1  treeRootKind u8                    root of the last checkpointed tree: 0 empty, 2 leaf, 3 index
//!     2  treeRootPos u64, 10 treeRootLen u32
//!     14 prevCommitPos u64                  0 for the first commit
//!     22 seq u64                            1, 2, 3, … one per commit
//!     30 hasTag u8, 31 tag u64              the caller's opaque number (Baardskeerder's "time")
//!     39 keyCount u64                       live keys after this commit, so count() is O(1)
//!     47 slabStart u64                      first byte of this slab
//!     55 slabCrc u32                        CRC32C over the 4-byte CRCs of the slab's other entries,
//!                                           in order: each covers its entry, so this covers the slab
//!     59 treeSeq u64                        seq of the commit whose slab holds the tree (0: none yet)
//!     67 treeCommitPos u64                  that commit's position (0: none); replay starts after it
//!     75 treeKeyCount u64                   keys in the checkpointed tree
//!
//! Varints are LEB128 (7 bits a byte, low group first), as Baardskeerder's Flog0 (§A.4).
import { Buffer } from 'node:buffer';
import { CorruptionError } from './errors.js';
import { Kind, readU32, readU64, writeU64 } from './format.js';
import type { BinKey } from './keys.js';
import { DiskRef, IndexNode, LeafNode, ValueRef, leafItemBytes, indexItemBytes, NODE_OVERHEAD_BYTES, INDEX_CHILD0_BYTES, type Child, type LeafValue } from './node.js';

export const COMMIT_BODY_BYTES = 83;
export const COMMIT_ENTRY_BYTES = 9 + COMMIT_BODY_BYTES;

/** A growable output buffer for building slabs. */
export class ByteWriter {
  buf: Buffer;
  off = 0;
  constructor(initialBytes = 1 << 16) {
    this.buf = Buffer.allocUnsafe(initialBytes);
  }
  ensure(n: number): void {
    if (this.off + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.off + n) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.off);
    this.buf = next;
  }
  u8(v: number): void {
    this.buf[this.off++] = v;
  }
  varint(v: number): void {
    const b = this.buf;
    let o = this.off;
    while (v >= 0x80) {
      b[o++] = (v % 128) | 0x80;
      v = Math.floor(v / 128);
    }
    b[o++] = v;
    this.off = o;
  }
  bytes(src: Uint8Array): void {
    this.buf.set(src, this.off);
    this.off += src.length;
  }
}

/** Writes `s.slice(start)` as bytes (a JS loop for short keys: cheaper than a call into C++). */
function writeSuffix(w: ByteWriter, s: string, start: number): void {
  const n = s.length - start;
  w.varint(n);
  if (n <= 0) return;
  if (n <= 32) {
    const b = w.buf;
    const o = w.off - start;
    for (let i = start; i < s.length; i++) b[o + i] = s.charCodeAt(i);
    w.off += n;
  } else {
    w.off += w.buf.write(start === 0 ? s : s.slice(start), w.off, n, 'latin1');
  }
}

function commonPrefixLength(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a.charCodeAt(i) === b.charCodeAt(i)) i++;
  return i;
}

/** Upper bound of a leaf body's encoded size (for ensure()). */
function leafBodyBound(leaf: LeafNode): number {
  let n = 32;
  for (let i = 0; i < leaf.keys.length; i++) {
    const v = leaf.vals[i];
    n += leaf.keys[i].length + 5 + 1 + (v instanceof ValueRef ? 16 : v.length + 5);
  }
  return n;
}

export function encodeLeafBody(w: ByteWriter, leaf: LeafNode): void {
  const { keys, vals } = leaf;
  w.ensure(leafBodyBound(leaf));
  const count = keys.length;
  const prefixLen = count > 1 ? commonPrefixLength(keys[0], keys[count - 1]) : 0;
  w.varint(count);
  w.varint(prefixLen);
  if (prefixLen > 0) w.off += w.buf.write(keys[0], w.off, prefixLen, 'latin1');
  for (let i = 0; i < count; i++) {
    writeSuffix(w, keys[i], prefixLen);
    const v = vals[i];
    if (v instanceof ValueRef) {
      if (v.pos < 0) throw new Error('encodeLeafBody: value entry without a position');
      w.u8(1);
      w.varint(v.pos);
      w.varint(v.len);
    } else {
      w.u8(0);
      w.varint(v.length);
      w.bytes(v);
    }
  }
}

export function encodeIndexBody(w: ByteWriter, node: IndexNode, childPos: (c: Child) => DiskRef): void {
  const { keys, kids } = node;
  let bound = 32 + 20 * kids.length;
  for (const k of keys) bound += k.length + 5;
  w.ensure(bound);
  const count = kids.length;
  const prefixLen = keys.length > 1 ? commonPrefixLength(keys[0], keys[keys.length - 1]) : 0;
  w.varint(count);
  w.varint(prefixLen);
  if (prefixLen > 0) w.off += w.buf.write(keys[0], w.off, prefixLen, 'latin1');
  let ref = childPos(kids[0]);
  w.varint(ref.pos);
  w.varint(ref.len);
  for (let i = 1; i < count; i++) {
    writeSuffix(w, keys[i - 1], prefixLen);
    ref = childPos(kids[i]);
    w.varint(ref.pos);
    w.varint(ref.len);
  }
}

/** Reads LEB128 varints from a body, failing with a CorruptionError on overrun. */
class ByteReader {
  constructor(
    readonly b: Buffer,
    public off: number,
    readonly end: number,
    readonly entryPos: number,
  ) {}
  fail(detail: string): never {
    throw new CorruptionError(this.entryPos, detail);
  }
  u8(): number {
    if (this.off >= this.end) this.fail('entry body ends early');
    return this.b[this.off++];
  }
  varint(): number {
    let v = 0;
    let mul = 1;
    for (let i = 0; i < 8; i++) {
      if (this.off >= this.end) this.fail('entry body ends inside a number');
      const x = this.b[this.off++];
      v += (x & 0x7f) * mul;
      if (x < 0x80) return v;
      mul *= 128;
    }
    return this.fail('number too long');
  }
  str(n: number): string {
    if (n > this.end - this.off) this.fail('string runs past the entry');
    const s = this.b.toString('latin1', this.off, this.off + n);
    this.off += n;
    return s;
  }
  slice(n: number): Buffer {
    if (n > this.end - this.off) this.fail('value runs past the entry');
    const s = this.b.subarray(this.off, this.off + n);
    this.off += n;
    return s;
  }
}

/** Decodes a leaf body at [start, end) of `b`; inline values are views into `b`. */
export function decodeLeafBody(b: Buffer, start: number, end: number, entryPos: number): LeafNode {
  const r = new ByteReader(b, start, end, entryPos);
  const count = r.varint();
  if (count > end - start) r.fail('leaf item count exceeds its size');
  const prefix = r.str(r.varint());
  const keys: BinKey[] = new Array(count);
  const vals: LeafValue[] = new Array(count);
  let bytes = NODE_OVERHEAD_BYTES;
  for (let i = 0; i < count; i++) {
    const suffix = r.str(r.varint());
    const key = (prefix.length === 0 ? suffix : prefix + suffix) as BinKey;
    const vk = r.u8();
    let v: LeafValue = undefined as unknown as LeafValue;
    if (vk === 0) v = r.slice(r.varint());
    else if (vk === 1) {
      const pos = r.varint();
      v = new ValueRef(pos, r.varint(), undefined);
    } else r.fail(`unknown value kind ${vk}`);
    keys[i] = key;
    vals[i] = v;
    bytes += leafItemBytes(key, v);
  }
  if (r.off !== end) r.fail('leaf has trailing bytes');
  return new LeafNode(0, keys, vals, bytes);
}

export function decodeIndexBody(b: Buffer, start: number, end: number, entryPos: number): IndexNode {
  const r = new ByteReader(b, start, end, entryPos);
  const count = r.varint();
  if (count < 1 || count > end - start) r.fail(`index child count ${count} out of range`);
  const prefix = r.str(r.varint());
  const keys: BinKey[] = new Array(count - 1);
  const kids: Child[] = new Array(count);
  let bytes = NODE_OVERHEAD_BYTES + INDEX_CHILD0_BYTES;
  kids[0] = new DiskRef(r.varint(), r.varint());
  for (let i = 1; i < count; i++) {
    const suffix = r.str(r.varint());
    const key = (prefix.length === 0 ? suffix : prefix + suffix) as BinKey;
    keys[i - 1] = key;
    kids[i] = new DiskRef(r.varint(), r.varint());
    bytes += indexItemBytes(key);
  }
  if (r.off !== end) r.fail('index has trailing bytes');
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
  keyCount: number;
  slabStart: number;
  slabCrc: number;
  treeSeq: number;
  treeCommitPos: number;
  treeKeyCount: number;
}

export function encodeCommitBody(w: ByteWriter, c: Omit<CommitRecord, 'pos' | 'len'>): void {
  w.ensure(COMMIT_BODY_BYTES);
  const b = w.buf;
  const o = w.off;
  b[o] = 1;
  b[o + 1] = c.rootKind;
  writeU64(b, o + 2, c.rootPos);
  b.writeUInt32LE(c.rootLen, o + 10);
  writeU64(b, o + 14, c.prevCommitPos);
  writeU64(b, o + 22, c.seq);
  b[o + 30] = c.tag === undefined ? 0 : 1;
  writeU64(b, o + 31, c.tag ?? 0);
  writeU64(b, o + 39, c.keyCount);
  writeU64(b, o + 47, c.slabStart);
  b.writeUInt32LE(c.slabCrc >>> 0, o + 55);
  writeU64(b, o + 59, c.treeSeq);
  writeU64(b, o + 67, c.treeCommitPos);
  writeU64(b, o + 75, c.treeKeyCount);
  w.off += COMMIT_BODY_BYTES;
}

export function decodeCommitBody(b: Uint8Array, start: number, end: number, pos: number, len: number): CommitRecord {
  if (end - start !== COMMIT_BODY_BYTES) throw new CorruptionError(pos, `commit body of ${end - start} bytes`);
  if (b[start] !== 1) throw new CorruptionError(pos, `unknown commit version ${b[start]}`);
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
    keyCount: readU64(b, start + 39),
    slabStart: readU64(b, start + 47),
    slabCrc: readU32(b, start + 55),
    treeSeq: readU64(b, start + 59),
    treeCommitPos: readU64(b, start + 67),
    treeKeyCount: readU64(b, start + 75),
  };
  for (const k of ['rootPos', 'prevCommitPos', 'seq', 'keyCount', 'slabStart', 'treeSeq', 'treeCommitPos', 'treeKeyCount'] as const) {
    if (!Number.isFinite(c[k])) throw new CorruptionError(pos, `commit field ${k} out of range`);
  }
  if (c.tag !== undefined && !Number.isFinite(c.tag)) throw new CorruptionError(pos, 'commit tag out of range');
  if (c.treeSeq > c.seq || (c.treeSeq === 0) !== (c.treeCommitPos === 0)) throw new CorruptionError(pos, 'commit names an impossible checkpoint');
  return c;
}

/** One change of a commit: a set (inline bytes or a Value entry) or a delete (`val` null). */
export interface Action {
  key: BinKey;
  val: LeafValue | null;
}

export function encodeActionsBody(w: ByteWriter, actions: readonly Action[]): void {
  let bound = 16;
  for (const a of actions) bound += a.key.length + 24 + (a.val === null || a.val instanceof ValueRef ? 0 : a.val.length);
  w.ensure(bound);
  w.varint(actions.length);
  for (const a of actions) {
    const v = a.val;
    if (v === null) w.u8(0);
    else if (v instanceof ValueRef) w.u8(2);
    else w.u8(1);
    writeSuffix(w, a.key, 0);
    if (v === null) continue;
    if (v instanceof ValueRef) {
      if (v.pos < 0) throw new Error('encodeActionsBody: value entry without a position');
      w.varint(v.pos);
      w.varint(v.len);
    } else {
      w.varint(v.length);
      w.bytes(v);
    }
  }
}

/** Decodes an actions body; inline values are views into `b`. */
export function decodeActionsBody(b: Buffer, start: number, end: number, entryPos: number): Action[] {
  const r = new ByteReader(b, start, end, entryPos);
  const count = r.varint();
  if (count > end - start) r.fail('action count exceeds its size');
  const out: Action[] = new Array(count);
  for (let i = 0; i < count; i++) {
    const op = r.u8();
    const key = r.str(r.varint()) as BinKey;
    if (op === 0) out[i] = { key, val: null };
    else if (op === 1) out[i] = { key, val: r.slice(r.varint()) };
    else if (op === 2) {
      const pos = r.varint();
      out[i] = { key, val: new ValueRef(pos, r.varint(), undefined) };
    } else r.fail(`unknown action ${op}`);
  }
  if (r.off !== end) r.fail('actions have trailing bytes');
  return out;
}
