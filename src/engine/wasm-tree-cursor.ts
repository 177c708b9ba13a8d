//! Range cursors over the writer's tree in linear memory (asm/wtree.ts; step 4 of bench/RESULTS.md
//! round 25's plan): keys in order between bounds, over nodes that are dirty (the writer's, by
//! address) or clean (the node cache's, by file position), in the cache's node layout.
//!
//! Owns: the walk. Like tree.ts Cursor it keeps a path of index levels from the root (copy-on-write
//! trees keep no sibling links), and reads keys and values in place, copying out only what it
//! gives. Keys are bytes, compared unsigned (memcmp, then length), as everywhere in the store.
//! Invariant: an address is used only while it is known valid. A clean node's address holds while
//! the cache's eviction epoch stands (loading another node may evict it): the path keeps each clean
//! node's position and finds it again, loading it if it must. A dirty node's address holds while
//! the tree epoch stands: a checkpoint's switch (asm/wcheckpoint.ts) frees written nodes, and
//! then the cursor seeks again from its root to the key it last gave. What the tree holds cannot
//! have changed meanwhile: the caller holds a reference on the root (wtreeRetain), so no change
//! reaches its nodes, and a switch changes only how nodes are referred to.
//!
//! Node layout (asm/cache.ts documents it; node-layout.ts): header u32 kind at 4, u32 count at 16,
//! u32 prefix length at 24, then the prefix and the slots (u32 word, u32 record offset). Leaf
//! record: u32 key length | REF_FLAG, u32 value length, the key and the value inline, or f64 the
//! Value entry's position and the key at 16. Index record: u32 key length (entry 0: none), u32
//! child entry length, f64 child position (negative: a dirty child), u32 at 16 the dirty child's
//! address, key at 24.
import { Buffer } from 'node:buffer';
import { AssertionError, assert, childNotOlder } from './errors.js';
import { Kind } from './format.js';
import { ValueRef } from './node.js';
import { INDEX_KEY_AT, REF_FLAG, copyOut, leafKeyAt, slotsAt } from './node-layout.js';

/** The instance's memory as the cursor reads it. */
export interface TreeMemory {
  readonly u8: Uint8Array;
  readonly u32: Uint32Array;
  readonly f64: Float64Array;
  /** Moves whenever a clean node may have left the cache (asm/cache.ts RESULT + 16). */
  readonly epoch: number;
  /** Moves whenever a dirty node may have been freed by a switch (asm/cache.ts RESULT + 20). */
  readonly treeEpoch: number;
  /** The address of the clean node at `pos` (entry length `len`) in the cache, loading it if missing. */
  nodeAt(pos: number, len: number): number;
}

/** A tree's root: a dirty node (`addr`), else a clean one at `pos` (`len`), else (`pos` 0) empty. */
export interface TreeRoot {
  addr: number;
  pos: number;
  len: number;
}

/** Bounds as tree.ts Bounds, with keys as bytes. */
export interface ByteBounds {
  low?: Uint8Array;
  lowInclusive?: boolean;
  high?: Uint8Array;
  highInclusive?: boolean;
  /** Only keys starting with this (besides the bounds). */
  prefix?: Uint8Array;
  reverse?: boolean;
}

/** Sign of (a − b), unsigned bytes then length. */
function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}

/** Sign of (u8[at, at + n) − b), unsigned bytes then length, read in place (no view made). */
function compareAt(u8: Uint8Array, at: number, n: number, b: Uint8Array): number {
  const m = Math.min(n, b.length);
  for (let i = 0; i < m; i++) if (u8[at + i] !== b[i]) return u8[at + i] - b[i];
  return n - b.length;
}

/** The least key after every key starting with `prefix`, or null (all bytes 0xff). */
function prefixSuccessor(prefix: Uint8Array): Uint8Array | null {
  let end = prefix.length;
  while (end > 0 && prefix[end - 1] === 0xff) end--;
  if (end === 0) return null;
  const s = Uint8Array.from(prefix.subarray(0, end));
  s[end - 1]++;
  return s;
}

/** A node on the cursor's path: dirty by address, or clean by position (its address, once found, valid in `ringEpoch`). */
interface NodeRef {
  dirty: boolean;
  addr: number;
  pos: number;
  len: number;
  ringEpoch: number;
}

interface Level extends NodeRef {
  /** The child the walk is under. */
  idx: number;
}

/**
 * Walks the keys of one tree between bounds. `next()` moves to the next key (false at the end);
 * then `key()` and `value()` give it. The caller holds a reference on a dirty root for as long as
 * the cursor is used.
 */
export class WasmTreeCursor {
  private readonly low: Uint8Array | undefined;
  private readonly lowInc: boolean;
  private readonly high: Uint8Array | undefined;
  private readonly highInc: boolean;
  private readonly prefix: Uint8Array | undefined;
  private readonly reverse: boolean;
  /** Where a backward walk starts: the high bound or the prefix's successor, whichever is lower. */
  private readonly seekHigh: Uint8Array | undefined;
  private readonly seekHighInc: boolean;
  private readonly path: Level[] = [];
  /** The current leaf (null: the tree is empty). */
  private leaf: NodeRef | null = null;
  /** The tree epoch the path's and leaf's dirty addresses were read in. */
  private treeEpoch = -1;
  private i = 0;
  private started = false;
  private done = false;
  /**
   * The key last given (a copy): where to seek again from after a switch. Kept only over a dirty
   * root: a clean tree's nodes are all found again by position, which a switch does not change.
   */
  private last: Buffer | null = null;
  /** Whether the cursor stands on a key (next() said true). */
  private onKey = false;
  /** Whether a switch can free nodes of this cursor's tree (its root is dirty). */
  private readonly dirty: boolean;

  constructor(
    private readonly mem: TreeMemory,
    private readonly root: TreeRoot,
    b: ByteBounds = {},
  ) {
    let low = b.low;
    let lowInc = b.lowInclusive ?? true;
    this.high = b.high;
    this.highInc = b.highInclusive ?? true;
    this.prefix = b.prefix !== undefined && b.prefix.length > 0 ? b.prefix : undefined;
    this.reverse = b.reverse ?? false;
    let seekHigh = this.high;
    let seekHighInc = this.highInc;
    if (this.prefix !== undefined) {
      if (low === undefined || compareBytes(low, this.prefix) < 0) {
        low = this.prefix;
        lowInc = true;
      }
      const succ = prefixSuccessor(this.prefix);
      if (succ !== null && (seekHigh === undefined || compareBytes(succ, seekHigh) <= 0)) {
        seekHigh = succ;
        seekHighInc = false;
      }
    }
    this.low = low;
    this.lowInc = lowInc;
    this.seekHigh = seekHigh;
    this.seekHighInc = seekHighInc;
    this.dirty = root.addr !== 0;
  }

  /** Whether a switch freed nodes this cursor may stand on since its last seek. */
  private switched(): boolean {
    return this.dirty && this.mem.treeEpoch !== this.treeEpoch;
  }

  /** The current key (a fresh Buffer each call). */
  key(): Buffer {
    assert(this.onKey, 'a cursor read before next() or after its end');
    if (this.last !== null) return Buffer.from(this.last);
    const rec = this.record(this.at(this.leaf!), this.i);
    const kw = this.mem.u32[rec >>> 2];
    return copyOut(this.mem.u8, leafKeyAt(rec, kw), kw & ~REF_FLAG);
  }

  /**
   * The current value: an inline one as a fresh Buffer, else the reference to its Value entry,
   * whose position is negative for a value not in the file yet: -(id + 1), the id in the caller's
   * table of pending values (asm/pending.ts), which the caller resolves.
   */
  value(): Buffer | ValueRef {
    assert(this.onKey, 'a cursor read before next() or after its end');
    if (this.switched()) this.seek(this.last!, true); // back onto the same key
    const { u8, u32, f64 } = this.mem;
    const rec = this.record(this.at(this.leaf!), this.i);
    const kw = u32[rec >>> 2];
    const vl = u32[(rec + 4) >>> 2];
    if ((kw & REF_FLAG) !== 0) return new ValueRef(f64[(rec + 8) >>> 3], vl, undefined);
    return copyOut(u8, rec + 8 + kw, vl);
  }

  next(): boolean {
    if (this.done) return false;
    if (!this.started) {
      this.started = true;
      if (this.reverse) this.seek(this.seekHigh, this.seekHighInc);
      else this.seek(this.low, this.lowInc);
    } else if (this.switched()) {
      this.seek(this.last!, false); // a switch freed nodes: to the key after the one last given
    } else {
      this.i += this.reverse ? -1 : 1;
    }
    for (;;) {
      if (this.leaf === null) return this.stop();
      const leaf = this.at(this.leaf);
      const count = this.mem.u32[(leaf + 16) >>> 2];
      if (this.i < 0 || this.i >= count) {
        if (!this.nextLeaf()) return this.stop();
        continue;
      }
      if (this.past(leaf)) return this.stop();
      if (this.dirty) this.last = Buffer.from(this.keyAt(leaf, this.i));
      this.onKey = true;
      return true;
    }
  }

  private stop(): false {
    this.done = true;
    this.last = null;
    this.onKey = false;
    return false;
  }

  /** Whether entry i of `leaf` lies past the bounds in the walk's direction. */
  private past(leaf: number): boolean {
    const u8 = this.mem.u8;
    const rec = this.record(leaf, this.i);
    const kw = this.mem.u32[rec >>> 2];
    const at = leafKeyAt(rec, kw);
    const n = kw & ~REF_FLAG;
    if (!this.reverse) {
      if (this.high !== undefined) {
        const c = compareAt(u8, at, n, this.high);
        if (this.highInc ? c > 0 : c >= 0) return true;
      }
    } else if (this.low !== undefined) {
      const c = compareAt(u8, at, n, this.low);
      if (this.lowInc ? c < 0 : c <= 0) return true;
    }
    if (this.prefix === undefined) return false;
    if (n < this.prefix.length) return true;
    for (let j = 0; j < this.prefix.length; j++) if (u8[at + j] !== this.prefix[j]) return true;
    return false;
  }

  /**
   * Positions the cursor (path, leaf, i) for a walk from `k`: forward at the first key >= k (> k
   * unless `inclusive`), backward at the last key <= k (< k); from the first or last key without k.
   */
  private seek(k: Uint8Array | undefined, inclusive: boolean): void {
    this.path.length = 0;
    this.treeEpoch = this.mem.treeEpoch;
    const r = this.root;
    if (r.addr === 0 && !(r.pos > 0)) {
      this.leaf = null;
      return;
    }
    let ref = this.ref(r.addr !== 0, r.addr, r.pos, r.len);
    let node = this.at(ref);
    const u32 = this.mem.u32;
    while (u32[(node + 4) >>> 2] === Kind.Index) {
      const count = u32[(node + 16) >>> 2];
      let idx: number;
      if (k === undefined) idx = this.reverse ? count - 1 : 0;
      // Forward, or backward to keys <= k: the child k falls in. Backward to keys < k: the child
      // before a separator equal to k.
      else idx = this.sepBound(node, k, !this.reverse || inclusive);
      this.path.push({ ...ref, idx });
      ref = this.childRef(ref, node, idx);
      node = this.at(ref);
    }
    this.placeLeaf(ref, node);
    if (k === undefined) this.i = this.reverse ? u32[(node + 16) >>> 2] - 1 : 0;
    else if (!this.reverse) this.i = this.leafBound(node, k, !inclusive);
    else this.i = this.leafBound(node, k, inclusive) - 1;
  }

  /** Moves to the next leaf in the walk's direction: up to the first level with a next child, then down its edge. */
  private nextLeaf(): boolean {
    const dir = this.reverse ? -1 : 1;
    const u32 = this.mem.u32;
    for (let depth = this.path.length - 1; depth >= 0; depth--) {
      const level = this.path[depth];
      const parent = this.at(level);
      const idx = level.idx + dir;
      if (idx < 0 || idx >= u32[(parent + 16) >>> 2]) continue;
      level.idx = idx;
      this.path.length = depth + 1;
      let ref = this.childRef(level, parent, idx);
      let node = this.at(ref);
      while (u32[(node + 4) >>> 2] === Kind.Index) {
        const edge = this.reverse ? u32[(node + 16) >>> 2] - 1 : 0;
        this.path.push({ ...ref, idx: edge });
        ref = this.childRef(ref, node, edge);
        node = this.at(ref);
      }
      this.placeLeaf(ref, node);
      this.i = this.reverse ? u32[(node + 16) >>> 2] - 1 : 0;
      return true;
    }
    return false;
  }

  private placeLeaf(ref: NodeRef, node: number): void {
    const kind = this.mem.u32[(node + 4) >>> 2];
    if (kind !== Kind.Leaf) throw new AssertionError(`a cursor reached node ${node} of kind ${kind}, not a leaf`);
    this.leaf = ref;
  }

  private ref(dirty: boolean, addr: number, pos: number, len: number): NodeRef {
    return { dirty, addr, pos, len, ringEpoch: -1 };
  }

  /**
   * Child `idx` of index node `node` (`parent` its reference): a dirty one by address, a clean one
   * by position. A clean node's children were written before it: one that is not (itself, or an
   * ancestor: a damaged or hostile file) is corruption, reported instead of walked in a circle.
   */
  private childRef(parent: NodeRef, node: number, idx: number): NodeRef {
    const rec = this.record(node, idx);
    const pos = this.mem.f64[(rec + 8) >>> 3];
    if (pos < 0) return this.ref(true, this.mem.u32[(rec + 16) >>> 2], -1, 0);
    if (!parent.dirty && pos >= parent.pos) throw childNotOlder(parent.pos, pos);
    return this.ref(false, 0, pos, this.mem.u32[(rec + 4) >>> 2]);
  }

  /** The node's address now: a dirty one's own; a clean one's found again if the cache may have moved it. */
  private at(ref: NodeRef): number {
    if (ref.dirty) return ref.addr;
    if (ref.ringEpoch === this.mem.epoch) return ref.addr;
    const n = this.mem.nodeAt(ref.pos, ref.len);
    if (n === 0) throw new AssertionError(`the node cache cannot hold node ${ref.pos} (${ref.len} bytes) for a cursor`);
    ref.addr = n;
    ref.ringEpoch = this.mem.epoch; // after the load: it may have moved the epoch itself
    return n;
  }

  private record(node: number, i: number): number {
    const u32 = this.mem.u32;
    const slots = node + slotsAt(u32[(node + 24) >>> 2]);
    return node + u32[(slots + i * 8 + 4) >>> 2];
  }

  /** Key i of leaf `node`, as a view on linear memory. */
  private keyAt(node: number, i: number): Uint8Array {
    const rec = this.record(node, i);
    const kw = this.mem.u32[rec >>> 2];
    const at = leafKeyAt(rec, kw);
    return this.mem.u8.subarray(at, at + (kw & ~REF_FLAG));
  }

  /** The first leaf slot whose key is > k (`after`) or >= k. */
  private leafBound(node: number, k: Uint8Array, after: boolean): number {
    let lo = 0;
    let hi = this.mem.u32[(node + 16) >>> 2];
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const c = compareBytes(this.keyAt(node, mid), k);
      if (c < 0 || (after && c === 0)) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /**
   * The child of index node `node` for k: the number of separators <= k (`after`), or < k. Entry
   * i >= 1 holds separator i, the least key under child i.
   */
  private sepBound(node: number, k: Uint8Array, after: boolean): number {
    const { u8, u32 } = this.mem;
    let lo = 1;
    let hi = u32[(node + 16) >>> 2];
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const rec = this.record(node, mid);
      const at = rec + INDEX_KEY_AT;
      const c = compareBytes(u8.subarray(at, at + u32[rec >>> 2]), k);
      if (c < 0 || (after && c === 0)) lo = mid + 1;
      else hi = mid;
    }
    return lo - 1;
  }
}
