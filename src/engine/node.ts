//! In-memory B-tree nodes, shared by readers (decoded from disk, immutable) and the writer
//! (dirty copies inside a transaction).
//!
//! A node with `pos >= 0` is on disk and immutable: anything that changes it copies it first.
//! A dirty node (`pos === -1`) belongs to the writer; it may be changed in place only while
//! `gen` equals the writer's current generation (test/support/js-tree.ts, the JS writer the tests
//! keep as the reference), which is how savepoints (aborted
//! transactions) and live iterators stay correct without copying on every write.
//!
//! Children are referenced by object while dirty (Baardskeerder's Inner positions) and by
//! `DiskRef` (Outer position plus entry length, so one pread reads the whole child) once written.
import type { Buffer } from 'node:buffer';
import type { BinKey, InlineValue } from './keys.js';

export const enum T {
  Disk = 0,
  Leaf = 1,
  Index = 2,
}

export class DiskRef {
  readonly t = T.Disk;
  constructor(
    /** Outer position of the entry header. */
    readonly pos: number,
    /** Whole entry length in bytes, header included. */
    readonly len: number,
  ) {}
}

/** A value kept as its own Value entry, because it is larger than the inline limit. */
export class ValueRef {
  constructor(
    /** Outer position of the Value entry; -1 while it waits in a slab. */
    public pos: number,
    /** Value length in bytes (the entry body). */
    readonly len: number,
    /** The bytes, held only until the slab is written. */
    public bytes: Buffer | undefined,
  ) {}
}

/** An inline value as a latin1 string of its bytes (like BinKey), or a reference to a Value entry. */
export type LeafValue = InlineValue | ValueRef;

// Encoded-size estimates (codec.ts is exact; these only decide splits and merges).
export const NODE_OVERHEAD_BYTES = 16;
export function leafItemBytes(key: BinKey, v: LeafValue): number {
  return key.length + 2 + (v instanceof ValueRef ? 12 : v.length + 3);
}
export function indexItemBytes(key: BinKey): number {
  return key.length + 2 + 12;
}
export const INDEX_CHILD0_BYTES = 12;

export class LeafNode {
  readonly t = T.Leaf;
  pos = -1;
  len = 0;
  /** Where the writer last inserted into this copy (in memory only): detects ascending runs. */
  lastInsertAt = -2;
  /**
   * Search accelerator (see keyPrefixes): null, or exactly keyPrefixes(keys). Built by lookups,
   * by the writer for index nodes it can no longer change, and from bytes when decoded from the
   * WASM cache; copies share it (it is never written after it is built); a key change nulls it.
   */
  pfx: Float64Array | null = null;
  constructor(
    public gen: number,
    public keys: BinKey[],
    public vals: LeafValue[],
    /** Encoded size estimate. */
    public bytes: number,
  ) {}
}

export class IndexNode {
  readonly t = T.Index;
  pos = -1;
  len = 0;
  /**
   * Search accelerator (see keyPrefixes): null, or exactly keyPrefixes(keys). Built by lookups,
   * by the writer for index nodes it can no longer change, and from bytes when decoded from the
   * WASM cache; copies share it (it is never written after it is built); a key change nulls it.
   */
  pfx: Float64Array | null = null;
  constructor(
    public gen: number,
    /** Separators: keys[i] <= every key under kids[i + 1], and > every key under kids[i]. */
    public keys: BinKey[],
    public kids: Child[],
    public bytes: number,
  ) {}
}

export type TreeNode = LeafNode | IndexNode;
export type Child = TreeNode | DiskRef;

export function leafBytes(keys: BinKey[], vals: LeafValue[]): number {
  let n = NODE_OVERHEAD_BYTES;
  for (let i = 0; i < keys.length; i++) n += leafItemBytes(keys[i], vals[i]);
  return n;
}

export function indexBytes(keys: BinKey[]): number {
  let n = NODE_OVERHEAD_BYTES + INDEX_CHILD0_BYTES;
  for (let i = 0; i < keys.length; i++) n += indexItemBytes(keys[i]);
  return n;
}

/**
 * The first 6 bytes of a key as a number (big-endian, zero-padded): k1 <= k2 implies
 * prefix(k1) <= prefix(k2), so unequal prefixes decide a comparison and only ties need the
 * strings. Lookups binary-search a node's prefixes, which sit contiguous in one Float64Array,
 * instead of touching one heap string per step: each step was a cache miss.
 */
export function keyPrefix(k: string): number {
  const n = k.length;
  return (
    (n > 0 ? k.charCodeAt(0) * 0x100_0000_0000 : 0) +
    (n > 1 ? k.charCodeAt(1) * 0x1_0000_0000 : 0) +
    (n > 2 ? k.charCodeAt(2) * 0x100_0000 : 0) +
    (n > 3 ? k.charCodeAt(3) * 0x1_0000 : 0) +
    (n > 4 ? k.charCodeAt(4) * 0x100 : 0) +
    (n > 5 ? k.charCodeAt(5) : 0)
  );
}

/** keyPrefix of the key stored as bytes `b[o, o + n)`. */
export function keyPrefixAt(b: Uint8Array, o: number, n: number): number {
  return (
    (n > 0 ? b[o] * 0x100_0000_0000 : 0) +
    (n > 1 ? b[o + 1] * 0x1_0000_0000 : 0) +
    (n > 2 ? b[o + 2] * 0x100_0000 : 0) +
    (n > 3 ? b[o + 3] * 0x1_0000 : 0) +
    (n > 4 ? b[o + 4] * 0x100 : 0) +
    (n > 5 ? b[o + 5] : 0)
  );
}

export function keyPrefixes(keys: readonly string[]): Float64Array {
  const p = new Float64Array(keys.length);
  for (let i = 0; i < keys.length; i++) p[i] = keyPrefix(keys[i]);
  return p;
}
