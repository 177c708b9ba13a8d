// A plain-JS encoder and decoder of the Leaf, Index and Actions body layouts (src/engine/codec.ts
// documents them). This was the engine's own codec before serialization moved to WebAssembly
// (asm/slab.ts); the codec tests now check the WebAssembly one against it, byte for byte.
import { Buffer } from 'node:buffer';
import { CorruptionError } from '../../src/engine/errors.js';
import type { BinKey, InlineValue } from '../../src/engine/keys.js';
import { DiskRef, IndexNode, LeafNode, ValueRef, leafItemBytes, indexItemBytes, NODE_OVERHEAD_BYTES, INDEX_CHILD0_BYTES, type Child, type LeafValue } from '../../src/engine/node.js';
import type { Action } from '../../src/engine/codec.js';

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

/** A LEB128 varint's bytes, for tests that build bodies and entries by hand. */
export function varintBytesOf(v: number): number[] {
  const out: number[] = [];
  while (v >= 0x80) {
    out.push((v % 128) | 0x80);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return out;
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
      w.bytes(Buffer.from(v, 'latin1'));
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

/** Decodes a leaf body at [start, end) of `b`; inline values are binary strings (keys.ts InlineValue). */
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
    if (vk === 0) v = r.slice(r.varint()).toString('latin1') as InlineValue;
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
      w.bytes(typeof v === 'string' ? Buffer.from(v, 'latin1') : v);
    }
  }
}

/** Decodes an actions body; inline values are binary strings (keys.ts InlineValue). */
export function decodeActionsBody(b: Buffer, start: number, end: number, entryPos: number): Action[] {
  const r = new ByteReader(b, start, end, entryPos);
  const count = r.varint();
  if (count > end - start) r.fail('action count exceeds its size');
  const out: Action[] = new Array(count);
  for (let i = 0; i < count; i++) {
    const op = r.u8();
    const key = r.str(r.varint()) as BinKey;
    if (op === 0) out[i] = { key, val: null };
    else if (op === 1) out[i] = { key, val: r.slice(r.varint()).toString('latin1') as InlineValue };
    else if (op === 2) {
      const pos = r.varint();
      out[i] = { key, val: new ValueRef(pos, r.varint(), undefined) };
    } else r.fail(`unknown action ${op}`);
  }
  if (r.off !== end) r.fail('actions have trailing bytes');
  return out;
}
