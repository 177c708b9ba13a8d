//! The copy-on-write B+tree in JS objects: lookup, insert, delete and ordered cursors over a root.
//! The store's writer until round 27 (now asm/wtree.ts through src/engine/wasm-tree-writer.ts);
//! kept here as the tests' reference.
//!
//! Owns: the tree algorithms, written once, synchronously, over a `NodeSource` that loads
//! on-disk nodes (Baardskeerder's functor over LOG, style.md §2). No I/O here.
//! Invariants (checked by check.ts): keys strictly ascending in every node; separator i of an
//! index bounds child i (all keys < sep) and child i + 1 (all keys >= sep); all leaves at one
//! depth; no empty leaf except an empty root, which is represented as "no root".
//! The writer never changes a node that is on disk or older than its generation; it copies it.
import type { NodeSource as StoreNodeSource } from '../../src/engine/check.js';
import type { Bounds } from '../../src/engine/views.js';
import { assert, childNotOlder } from '../../src/engine/errors.js';
import type { Buffer } from 'node:buffer';
import { binKeyToBuffer, type BinKey } from '../../src/engine/keys.js';
import {
  DiskRef, IndexNode, LeafNode, T, ValueRef,
  indexBytes, indexItemBytes, keyPrefix, keyPrefixes, leafBytes, leafItemBytes,
  type Child, type LeafValue, type TreeNode,
} from '../../src/engine/node.js';

/** Where the tree's on-disk nodes come from (the store's, as check.ts walks them). */
export type NodeSource = StoreNodeSource;

export function resolve(src: NodeSource, c: Child): TreeNode {
  return c.t === T.Disk ? src.load(c) : c;
}

/*
 * Descents refuse an on-disk index node that refers to an on-disk child at or after its own
 * position (errors.ts childNotOlder). Copy-on-write appends children before their parents, so
 * in a sound file every step down from an on-disk node goes to a lower position, and a descent
 * ends within the file's size. Only damaged or hostile bytes break that (checksums can be recomputed), and following
 * them could go round a cycle forever: every descent that loads a child from disk refuses it.
 * (Dirty nodes, at -1, may hold any on-disk child.) Each step down from `node` to `c` below tests
 * `c.pos >= node.pos && node.pos >= 0 && c.t === T.Disk`, in that order so that a sound step
 * from an on-disk node costs one comparison. The WASM cache's descent checks the same.
 */

/** Index of the first key >= probe. */
export function lowerBound(keys: readonly string[], probe: string): number {
  let lo = 0;
  let hi = keys.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (keys[mid] < probe) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Index of the first key > probe. */
export function upperBound(keys: readonly string[], probe: string): number {
  let lo = 0;
  let hi = keys.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (keys[mid] <= probe) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** `a.splice(i, 0, x)`, by push at the end: splice builds a result array every call. */
function insertAt<X>(a: X[], i: number, x: X): void {
  if (i === a.length) a.push(x);
  else a.splice(i, 0, x);
}

/** lowerBound over a node's keys, deciding by the prefix numbers and comparing strings on ties. */
function lowerBoundP(keys: readonly string[], pfx: Float64Array, probe: string, pp: number): number {
  let lo = 0;
  let hi = pfx.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const x = pfx[mid];
    if (x < pp || (x === pp && keys[mid] < probe)) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** upperBound over a node's keys, deciding by the prefix numbers and comparing strings on ties. */
function upperBoundP(keys: readonly string[], pfx: Float64Array, probe: string, pp: number): number {
  let lo = 0;
  let hi = pfx.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const x = pfx[mid];
    if (x < pp || (x === pp && keys[mid] <= probe)) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** The value under `key` (a leaf's), or undefined if absent. */
export function lookup(src: NodeSource, root: Child | null, key: BinKey): LeafValue | Buffer | undefined {
  if (root === null) return undefined;
  const pp = keyPrefix(key);
  let c: Child = root;
  for (;;) {
    if (c.t === T.Disk) c = src.load(c);
    const node: TreeNode = c;
    const pfx = node.pfx ?? (node.pfx = keyPrefixes(node.keys));
    if (node.t === T.Index) {
      c = node.kids[upperBoundP(node.keys, pfx, key, pp)];
      if (c.pos >= node.pos && node.pos >= 0 && c.t === T.Disk) throw childNotOlder(node.pos, c.pos);
      continue;
    }
    const i = upperBoundP(node.keys, pfx, key, pp) - 1;
    return i >= 0 && pfx[i] === pp && node.keys[i] === key ? node.vals[i] : undefined;
  }
}

/** The shortest key s with left < s <= right (suffix truncation keeps index nodes small). */
function shortestSeparator(left: string, right: string): BinKey {
  const n = Math.min(left.length, right.length);
  let i = 0;
  while (i < n && left.charCodeAt(i) === right.charCodeAt(i)) i++;
  return right.slice(0, i + 1) as BinKey;
}

export interface TreeState {
  root: Child | null;
  count: number;
}

/**
 * Generations `[fromGen, belowGen)` whose dirty nodes a batch may change in place: the store's
 * own copies from earlier batches, which the published tree holds but no snapshot, cursor or
 * savepoint does (db.ts, "In-place batches").
 */
export interface SharedGens {
  fromGen: number;
  belowGen: number;
}

/** One change made in place to a shared node: what seal() and abortInPlace() put back. */
class JournalEntry {
  constructor(
    readonly node: TreeNode,
    /** kids index (index node) or vals index (leaf). */
    readonly slot: number,
    /** The child or value replaced at `slot`; null: a key was inserted at `slot`. */
    readonly old: Child | LeafValue | null,
    readonly oldBytes: number,
    readonly oldPfx: Float64Array | null,
    /** The key whose write made the change: seal() finds the node's path by it. */
    readonly key: BinKey,
  ) {}
}

/** Whether `n` is a dirty node of the shared generations `s` (TreeWriter, in-place mode). */
function inShared(n: TreeNode, s: SharedGens): boolean {
  return n.pos === -1 && n.gen >= s.fromGen && n.gen < s.belowGen;
}

/**
 * Applies sets and deletes to a tree, producing new dirty nodes. One writer at a time.
 * `gen` is bumped by `freeze()` (savepoints, live cursors); nodes of older generations are copied.
 *
 * In-place mode (`shared` given): a node of a shared generation is changed in place where that
 * is one slot (a child replaced under an index node; a value replaced, or a key inserted, in a
 * leaf that stays within maxNodeBytes), and the change is journaled; any other change to it
 * (splits, merges, deletes) copies it as usual. So a batch of overwrites copies only the nodes
 * it reaches for the first time since they were written, instead of every leaf and index node
 * on every path. Until `settleInPlace()`, the
 * published tree shares those nodes: `seal()` gives readers their published contents back
 * (copying the writer's paths), `abortInPlace()` undoes the changes.
 */
export class TreeWriter {
  root: Child | null;
  count: number;
  gen: number;
  private splitKey: BinKey | null = null;
  private splitRight: TreeNode | null = null;
  private inserted = false;
  /**
   * keyPrefix of the key being put, for put's searches. A field, not an argument: the prefix is
   * rarely a small integer, and passed to the recursive put it was boxed anew for every key (17 B
   * a key, a sixth of what a sorted load's writer allocated); a double field is updated in place.
   */
  private putPfx = 0;
  /**
   * Estimated bytes this writer made dirty: clean nodes it copied plus the items it put. The store
   * compares it with a commit's log record to decide whether writing the tree now is cheaper.
   */
  dirtyBytes = 0;
  /**
   * Unwritten nodes of generations below this one count as newly dirty when copied, as on-disk
   * ones do: a background checkpoint is writing them (db.ts startBackgroundCheckpoint), so their
   * copies are what the next checkpoint writes. 0: none.
   */
  dirtyBelowGen = 0;
  /**
   * Positions of on-disk nodes this writer copied or dropped: once its tree is published, the
   * decoded-node cache can forget those versions (only older snapshots still reach them, and
   * a miss just loads them again). Kept, every checkpoint's replaced index nodes stayed for good.
   */
  readonly replaced: number[] = [];

  private shared: SharedGens | null;
  private readonly journal: JournalEntry[] = [];
  constructor(
    private readonly src: NodeSource,
    state: TreeState,
    gen: number,
    readonly maxNodeBytes: number,
    shared: SharedGens | null = null,
  ) {
    assert(maxNodeBytes >= 256, 'maxNodeBytes too small');
    assert(shared === null || (shared.fromGen <= shared.belowGen && shared.belowGen <= gen), 'shared generations must precede the writer');
    this.root = state.root;
    this.count = state.count;
    this.gen = gen;
    this.shared = shared;
  }

  /**
   * From now on, nodes built so far are immutable (copied on their next change): for a cursor
   * over the writer's tree. Seals first, so the frozen tree holds no node changed in place.
   */
  freeze(): TreeState {
    this.seal();
    this.gen++;
    return { root: this.root, count: this.count };
  }

  /**
   * A transaction's starting point: `restore()` brings the tree back to it. Changes in place
   * before it are sealed first, so an abort undoes only the transaction's own.
   */
  savepoint(): TreeState {
    // A seal inside the transaction (for a reader or a cursor) undoes every change in place,
    // which would take those made before the savepoint with it: so there are none, and every
    // change in the journal from here on is the transaction's.
    if (this.journal.length > 0) this.seal();
    this.gen++;
    return { root: this.root, count: this.count };
  }

  /** Back to a savepoint: the transaction's changes in place are undone, its copies dropped. */
  restore(s: TreeState): void {
    this.undo();
    this.root = s.root;
    this.count = s.count;
    this.gen++;
  }

  private isShared(n: TreeNode): boolean {
    return this.shared !== null && inShared(n, this.shared);
  }

  /**
   * Ends in-place changes for the rest of the batch, so the published tree can be read: every
   * shared node on the path to a change is copied into the writer's tree (which keeps its
   * contents), then the shared nodes get their published contents back. Costs what copying on
   * write would have cost in the first place. Returns whether there was anything to seal.
   */
  seal(): boolean {
    const s = this.shared;
    this.shared = null;
    if (s === null || this.journal.length === 0) return false;
    for (const e of this.journal) this.root = this.copySharedPath(this.root, e.key, s);
    this.undo();
    return true;
  }

  /** The batch failed or was dropped: shared nodes get their published contents back. */
  abortInPlace(): void {
    this.undo();
    this.shared = null;
  }

  /** The batch's tree is published: the changes in place are now its contents. Returns how many. */
  settleInPlace(): number {
    const n = this.journal.length;
    this.journal.length = 0;
    this.shared = null;
    return n;
  }

  /** Undoes every journaled change, newest first. */
  private undo(): void {
    const j = this.journal;
    for (let k = j.length - 1; k >= 0; k--) {
      const e = j[k];
      const n = e.node;
      if (n.t === T.Index) n.kids[e.slot] = e.old as Child;
      else if (e.old !== null) n.vals[e.slot] = e.old as LeafValue;
      else {
        n.keys.splice(e.slot, 1);
        n.vals.splice(e.slot, 1);
      }
      n.bytes = e.oldBytes;
      n.pfx = e.oldPfx;
    }
    j.length = 0;
  }

  /** Copies the shared nodes on `key`'s path (their current contents) into the writer's tree. */
  private copySharedPath(c: Child | null, key: BinKey, s: SharedGens): Child | null {
    if (c === null || c.t === T.Disk) return c;
    const shared = inShared(c, s);
    if (c.t === T.Leaf) return shared ? this.copyLeaf(c) : c;
    const i = upperBound(c.keys, key);
    const kid = c.kids[i];
    const below = this.copySharedPath(kid, key, s);
    // A shared node is copied; so is a frozen one above a change (a transaction's savepoint
    // holds the nodes that an earlier job of the batch made, and its writes changed shared nodes
    // below them in place): the savepoint keeps the original, the writer takes the copy.
    const writable = c.pos === -1 && c.gen === this.gen;
    if (!shared && (writable || below === kid)) {
      if (below !== kid) c.kids[i] = below as Child;
      return c;
    }
    const copy = this.copyIndex(c);
    copy.kids[i] = below as Child;
    return copy;
  }

  get(key: BinKey): LeafValue | Buffer | undefined {
    return lookup(this.src, this.root, key);
  }

  /** Inserts or replaces; returns true when the key is new. */
  set(key: BinKey, val: LeafValue): boolean {
    return this.put1(key, val);
  }

  private put1(key: BinKey, val: LeafValue): boolean {
    this.inserted = false;
    if (this.root === null) {
      this.root = new LeafNode(this.gen, [key], [val], leafBytes([key], [val]));
      this.count++;
      return true;
    }
    this.putPfx = keyPrefix(key);
    const node = this.put(this.root, key, val);
    if (this.splitRight !== null) {
      const right = this.splitRight;
      const sep = this.splitKey as BinKey;
      this.splitRight = null;
      this.splitKey = null;
      this.root = new IndexNode(this.gen, [sep], [node, right], indexBytes([sep]));
    } else {
      this.root = node;
    }
    if (this.inserted) this.count++;
    return this.inserted;
  }

  /** Removes a key; returns false (and changes nothing) when it is absent. */
  delete(key: BinKey): boolean {
    if (this.root === null) return false;
    const node = this.del(this.root, key);
    if (node === null) return false;
    this.count--;
    let root: TreeNode = node;
    // Collapse: an index with one child is replaced by the child; an empty leaf means no root.
    while (root.t === T.Index && root.kids.length === 1) {
      this.retire(root);
      const only = root.kids[0];
      if (only.pos >= root.pos && root.pos >= 0 && only.t === T.Disk) throw childNotOlder(root.pos, only.pos);
      root = resolve(this.src, only);
    }
    this.root = root.t === T.Leaf && root.keys.length === 0 ? null : root;
    return true;
  }

  // A node's `pfx` (the search accelerator) must match its keys: copies below carry it over (same
  // keys), and every change to a writable node's keys sets it to null right there.

  private leafW(n: LeafNode): LeafNode {
    if (n.pos === -1 && n.gen === this.gen) return n;
    this.copying(n);
    return this.copyLeaf(n);
  }

  private indexW(n: IndexNode): IndexNode {
    if (n.pos === -1 && n.gen === this.gen) return n;
    this.copying(n);
    return this.copyIndex(n);
  }

  /** A node about to be copied for writing: an on-disk one is newly dirty, and its version replaced. */
  private copying(n: TreeNode): void {
    if (n.pos === -1) {
      if (n.gen < this.dirtyBelowGen) this.dirtyBytes += n.bytes;
      return;
    }
    this.dirtyBytes += n.bytes;
    this.retire(n);
  }

  /** A node this writer's tree drops (a merged sibling, a collapsed root): its position, if any. */
  private retire(n: TreeNode): void {
    if (n.pos !== -1) this.replaced.push(n.pos);
  }

  /** A copy of the writer's generation, same keys (so the same search accelerator). */
  private copyLeaf(n: LeafNode): LeafNode {
    const c = new LeafNode(this.gen, n.keys.slice(), n.vals.slice(), n.bytes);
    c.pfx = n.pfx;
    return c;
  }

  private copyIndex(n: IndexNode): IndexNode {
    const c = new IndexNode(this.gen, n.keys.slice(), n.kids.slice(), n.bytes);
    c.pfx = n.pfx;
    return c;
  }

  /**
   * `pp` is keyPrefix(key) (putPfx). Searches use a node's prefix numbers when it has them: binary
   * search over one Float64Array instead of strings scattered over the heap (each step a cache
   * miss; the two searches were ~75% of put's time at 1M keys, bench/RESULTS.md round 9). Index
   * nodes that can't change any more get them built here; they are few and searched by every put.
   */
  private put(c: Child, key: BinKey, val: LeafValue): TreeNode {
    const node = resolve(this.src, c);
    const pp = this.putPfx;
    if (node.t === T.Leaf) {
      const lp = node.pfx;
      const nk = node.keys.length;
      // A sorted load appends: after an insert at the end, one comparison with the last key
      // instead of a search (whose every step may be a cache miss on a heap string).
      const i = node.lastInsertAt === nk - 1 && nk > 0 && key > node.keys[nk - 1] ? nk
        : lp !== null ? lowerBoundP(node.keys, lp, key, pp) : lowerBound(node.keys, key);
      this.dirtyBytes += leafItemBytes(key, val);
      if (this.isShared(node)) {
        const found = i < node.keys.length && node.keys[i] === key;
        const bytes = node.bytes + leafItemBytes(key, val) - (found ? leafItemBytes(key, node.vals[i]) : 0);
        if (bytes <= this.maxNodeBytes) {
          this.journal.push(new JournalEntry(node, i, found ? node.vals[i] : null, node.bytes, node.pfx, key));
          if (found) node.vals[i] = val;
          else {
            insertAt(node.keys, i, key);
            insertAt(node.vals, i, val);
            node.pfx = null;
            node.lastInsertAt = i; // a heuristic for the next split: not journaled
            this.inserted = true;
          }
          node.bytes = bytes;
          return node;
        }
      }
      const w = this.leafW(node);
      if (i < w.keys.length && w.keys[i] === key) {
        w.bytes += leafItemBytes(key, val) - leafItemBytes(key, w.vals[i]);
        w.vals[i] = val;
      } else {
        insertAt(w.keys, i, key);
        insertAt(w.vals, i, val);
        w.pfx = null;
        w.bytes += leafItemBytes(key, val);
        this.inserted = true;
      }
      const ascendingRun = i === w.lastInsertAt + 1;
      w.lastInsertAt = i;
      if (w.bytes > this.maxNodeBytes && w.keys.length > 1) this.splitLeaf(w, i, ascendingRun);
      return w;
    }
    let ip = node.pfx;
    if (ip === null && !(node.pos === -1 && node.gen === this.gen)) ip = node.pfx = keyPrefixes(node.keys);
    // The writer's own index nodes have no prefix numbers; in a sorted load every put takes their
    // last child, so try that first (one comparison instead of a search over heap strings).
    const nk = node.keys.length;
    const i = ip !== null ? upperBoundP(node.keys, ip, key, pp)
      : nk > 0 && node.keys[nk - 1] <= key ? nk : upperBound(node.keys, key);
    const old = node.kids[i];
    if (old.pos >= node.pos && node.pos >= 0 && old.t === T.Disk) throw childNotOlder(node.pos, old.pos);
    const child = this.put(old, key, val);
    if (this.splitRight === null) {
      if (child === old) return node; // changed in place below (or already the writer's)
      if (this.isShared(node)) {
        this.journal.push(new JournalEntry(node, i, old, node.bytes, node.pfx, key));
        node.kids[i] = child;
        return node;
      }
    }
    const w = this.indexW(node);
    w.kids[i] = child;
    if (this.splitRight !== null) {
      const sep = this.splitKey as BinKey;
      insertAt(w.keys, i, sep);
      w.pfx = null;
      insertAt(w.kids, i + 1, this.splitRight);
      w.bytes += indexItemBytes(sep);
      this.splitRight = null;
      this.splitKey = null;
      if (w.bytes > this.maxNodeBytes && w.kids.length > 3) this.splitIndex(w, i);
    }
    return w;
  }

  /**
   * Splits a leaf that grew past the limit. Appends keep the left node full (sorted loads), and so
   * does an ascending run of inserts in the middle of a leaf (split right after the new key): both
   * would otherwise leave a trail of half-full leaves (online compaction re-inserts in key order).
   */
  private splitLeaf(w: LeafNode, insertedAt: number, ascendingRun: boolean): void {
    const n = w.keys.length;
    let mid: number;
    if (insertedAt === n - 1) mid = n - 1;
    else if (ascendingRun && insertedAt > 0) mid = insertedAt + 1;
    else if (insertedAt === 0) mid = 1;
    else mid = splitPointByBytes(w.keys, w.vals);
    const right = new LeafNode(this.gen, w.keys.slice(mid), w.vals.slice(mid), 0);
    w.keys.length = mid;
    w.pfx = null;
    w.vals.length = mid;
    w.bytes = leafBytes(w.keys, w.vals);
    right.bytes = leafBytes(right.keys, right.vals);
    if (insertedAt >= mid) right.lastInsertAt = insertedAt - mid;
    // A split at the end starts a new last leaf for keys appended in order (a sorted load), which
    // the writer does not come back to once it is full. Any other split shares out keys that
    // were there, and the writer may come back to either half.
    this.splitKey = shortestSeparator(w.keys[mid - 1], right.keys[0]);
    this.splitRight = right;
  }

  private splitIndex(w: IndexNode, insertedAt: number): void {
    const nk = w.keys.length;
    const m = insertedAt >= nk - 1 ? nk - 1 : insertedAt === 0 ? 1 : nk >>> 1;
    const up = w.keys[m];
    const right = new IndexNode(this.gen, w.keys.slice(m + 1), w.kids.slice(m + 1), 0);
    w.keys.length = m;
    w.pfx = null;
    w.kids.length = m + 1;
    w.bytes = indexBytes(w.keys);
    right.bytes = indexBytes(right.keys);
    this.splitKey = up;
    this.splitRight = right;
  }

  private del(c: Child, key: BinKey): TreeNode | null {
    const node = resolve(this.src, c);
    if (node.t === T.Leaf) {
      const i = lowerBound(node.keys, key);
      if (i >= node.keys.length || node.keys[i] !== key) return null;
      const w = this.leafW(node);
      w.bytes -= leafItemBytes(key, w.vals[i]);
      w.keys.splice(i, 1);
      w.vals.splice(i, 1);
      w.pfx = null;
      return w;
    }
    const i = upperBound(node.keys, key);
    const kid = node.kids[i];
    if (kid.pos >= node.pos && node.pos >= 0 && kid.t === T.Disk) throw childNotOlder(node.pos, kid.pos);
    const child = this.del(kid, key);
    if (child === null) return null;
    const w = this.indexW(node);
    w.kids[i] = child;
    this.rebalance(w, i, child);
    return w;
  }

  private underfull(n: TreeNode): boolean {
    if (n.t === T.Leaf) return n.keys.length === 0 || n.bytes < this.maxNodeBytes >>> 2;
    return n.kids.length < 2 || n.bytes < this.maxNodeBytes >>> 2;
  }

  /** Merges child i of w with a sibling when it became underfull, re-splitting if too big. */
  private rebalance(w: IndexNode, i: number, child: TreeNode): void {
    if (!this.underfull(child) || w.kids.length < 2) return;
    const a = i > 0 ? i - 1 : i;
    const left = a === i ? child : resolve(this.src, w.kids[a]);
    const right = a === i ? resolve(this.src, w.kids[a + 1]) : child;
    const sep = w.keys[a];
    this.retire(left);
    this.retire(right);
    w.pfx = null; // its separators change below
    if (left.t === T.Leaf) {
      assert(right.t === T.Leaf, 'siblings at different depths');
      const keys = left.keys.concat(right.keys);
      const vals = left.vals.concat(right.vals);
      const bytes = leafBytes(keys, vals);
      if (bytes <= this.maxNodeBytes || keys.length < 2) {
        const merged = new LeafNode(this.gen, keys, vals, bytes);
        w.kids.splice(a, 2, merged);
        w.keys.splice(a, 1);
      } else {
        const mid = splitPointByBytes(keys, vals);
        const l = new LeafNode(this.gen, keys.slice(0, mid), vals.slice(0, mid), 0);
        const r = new LeafNode(this.gen, keys.slice(mid), vals.slice(mid), 0);
        l.bytes = leafBytes(l.keys, l.vals);
        r.bytes = leafBytes(r.keys, r.vals);
        w.kids.splice(a, 2, l, r);
        w.keys[a] = shortestSeparator(l.keys[mid - 1], r.keys[0]);
      }
    } else {
      assert(right.t === T.Index, 'siblings at different depths');
      const keys = left.keys.concat([sep], right.keys);
      const kids = left.kids.concat(right.kids);
      const bytes = indexBytes(keys);
      if (bytes <= this.maxNodeBytes || kids.length < 4) {
        w.kids.splice(a, 2, new IndexNode(this.gen, keys, kids, bytes));
        w.keys.splice(a, 1);
      } else {
        const m = keys.length >>> 1;
        const l = new IndexNode(this.gen, keys.slice(0, m), kids.slice(0, m + 1), 0);
        const r = new IndexNode(this.gen, keys.slice(m + 1), kids.slice(m + 1), 0);
        l.bytes = indexBytes(l.keys);
        r.bytes = indexBytes(r.keys);
        w.kids.splice(a, 2, l, r);
        w.keys[a] = keys[m];
      }
    }
    w.bytes = indexBytes(w.keys);
  }
}

function splitPointByBytes(keys: BinKey[], vals: LeafValue[]): number {
  let total = 0;
  for (let i = 0; i < keys.length; i++) total += leafItemBytes(keys[i], vals[i]);
  let acc = 0;
  for (let i = 0; i < keys.length - 1; i++) {
    acc += leafItemBytes(keys[i], vals[i]);
    if (acc * 2 >= total) return i + 1;
  }
  return keys.length - 1;
}

// --- cursors ----------------------------------------------------------------------------------


/**
 * A cursor's window onto on-disk leaves held outside the JS heap (the WASM node cache's
 * WasmLeafView until round 28): entries are read in place and come out as fresh Buffers. `open` answers false for
 * an index node or a node the view can't hold; the cursor then resolves it as a decoded node.
 * Anything may evict the node between two calls: `revalidate()` makes it readable again.
 */
export interface LeafView {
  open(ref: DiskRef): boolean;
  readonly count: number;
  revalidate(): void;
  /** Sign of (key i − key), unsigned-byte order. */
  compare(i: number, key: BinKey): number;
  startsWith(i: number, prefix: BinKey): boolean;
  keyBuffer(i: number): Buffer;
  /** An inline value as a fresh Buffer, or the reference to its Value entry. */
  value(i: number): Buffer | ValueRef;
}

/** Which child Cursor.descend takes at each index node. */
const enum Toward {
  First,
  Last,
  /** The child that may hold the cursor's seek key (forward: upper bound of the low key). */
  SeekForward,
  SeekBackward,
}

/**
 * Walks keys in order between bounds. Holds a path from the root, so no sibling links are needed
 * (copy-on-write trees cannot keep them). Call `next()`; on true, `keyBuffer()` and
 * `valueBuffer()` give the entry. Without a LeafView, `key` and `val` hold it too; with one they
 * are only meaningful for entries of in-memory leaves, so a cursor given a view must be read
 * through the two methods alone (the iterators in views.ts). The tree it walks must not change
 * under it: callers pass an immutable root (a snapshot) or freeze the writer first.
 */
export class Cursor {
  key: BinKey = '' as BinKey;
  val: LeafValue = undefined as unknown as LeafValue;
  private readonly stackNodes: IndexNode[] = [];
  private readonly stackIdx: number[] = [];
  private leaf: LeafNode | null = null;
  /** The current leaf is the view's (an on-disk leaf read in place), not `leaf`. */
  private inView = false;
  /** In the view's leaf: the first index past the bounds (forward) or the last before them (reverse). */
  private viewStop = 0;
  private i = 0;
  private started = false;
  private done = false;
  private readonly low: BinKey | undefined;
  private readonly lowInc: boolean;
  private readonly high: BinKey | undefined;
  private readonly highInc: boolean;
  private readonly prefix: BinKey | undefined;
  private readonly reverse: boolean;
  /** The backward seek key and whether it is included (high, or the prefix's successor). */
  private readonly seekHigh: BinKey | undefined;
  private readonly seekHighInc: boolean;

  constructor(
    private readonly src: NodeSource,
    private readonly root: Child | null,
    b: Bounds,
    private readonly view: LeafView | null = null,
  ) {
    this.low = b.low;
    this.lowInc = b.lowInclusive ?? true;
    this.high = b.high;
    this.highInc = b.highInclusive ?? true;
    this.prefix = b.prefix;
    this.reverse = b.reverse ?? false;
    if (this.prefix !== undefined && this.prefix.length > 0) {
      // Narrow the bounds to the prefix range so the seek starts in the right place.
      if (this.low === undefined || this.low < this.prefix) {
        this.low = this.prefix;
        this.lowInc = true;
      }
    }
    let k = this.high;
    let inc = this.highInc;
    if (this.prefix !== undefined && this.prefix.length > 0) {
      const succ = prefixSucc(this.prefix);
      if (succ !== null && (k === undefined || succ <= k)) {
        k = succ;
        inc = false;
      }
    }
    this.seekHigh = k;
    this.seekHighInc = inc;
  }

  /** The current key as a fresh Buffer. */
  keyBuffer(): Buffer {
    if (!this.inView) return binKeyToBuffer(this.key);
    const v = this.view as LeafView;
    v.revalidate(); // anything since next() may have evicted the leaf (one compare when not)
    return v.keyBuffer(this.i);
  }

  /** The current value as a fresh Buffer; stored values and Value entries go through `materialize`. */
  valueBuffer(materialize: (v: LeafValue) => Buffer): Buffer {
    if (!this.inView) return materialize(this.val);
    const view = this.view as LeafView;
    view.revalidate();
    const v = view.value(this.i);
    return v instanceof ValueRef ? materialize(v) : v;
  }

  /**
   * Descends from `c` to a leaf, pushing the index nodes passed; `toward` chooses each child. An
   * on-disk leaf the view can hold is read through it; everything else is resolved as a node.
   * `above` is the position of `c`'s parent (-1: none, or a dirty one).
   */
  private descend(c: Child, toward: Toward, above: number): void {
    for (;;) {
      if (c.pos >= above && above >= 0 && c.t === T.Disk) throw childNotOlder(above, c.pos);
      if (c.t === T.Disk && this.view !== null && this.view.open(c)) {
        this.inView = true;
        this.leaf = null;
        return;
      }
      const node = resolve(this.src, c);
      if (node.t === T.Leaf) {
        this.inView = false;
        this.leaf = node;
        return;
      }
      let idx: number;
      switch (toward) {
        case Toward.First:
          idx = 0;
          break;
        case Toward.Last:
          idx = node.kids.length - 1;
          break;
        case Toward.SeekForward:
          idx = this.low === undefined ? 0 : upperBound(node.keys, this.low);
          break;
        case Toward.SeekBackward: {
          const k = this.seekHigh;
          idx = k === undefined ? node.kids.length - 1 : this.seekHighInc ? upperBound(node.keys, k) : lowerBound(node.keys, k);
          break;
        }
      }
      this.stackNodes.push(node);
      this.stackIdx.push(idx);
      above = node.pos;
      c = node.kids[idx];
    }
  }

  /** Number of entries in the current leaf. */
  private leafCount(): number {
    return this.inView ? (this.view as LeafView).count : (this.leaf as LeafNode).keys.length;
  }

  /** Index of the first key >= k (or > k when `after`) in the current leaf. */
  private boundIn(k: BinKey, after: boolean): number {
    if (!this.inView) return after ? upperBound((this.leaf as LeafNode).keys, k) : lowerBound((this.leaf as LeafNode).keys, k);
    const v = this.view as LeafView;
    let lo = 0;
    let hi = v.count;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const c = v.compare(mid, k);
      if (c < 0 || (after && c === 0)) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  private seekForward(): void {
    if (this.root === null) {
      this.done = true;
      return;
    }
    this.descend(this.root, Toward.SeekForward, -1);
    const k = this.low;
    this.i = k === undefined ? 0 : this.boundIn(k, !this.lowInc);
    this.setViewStop();
  }

  private seekBackward(): void {
    if (this.root === null) {
      this.done = true;
      return;
    }
    this.descend(this.root, Toward.SeekBackward, -1);
    const k = this.seekHigh;
    this.i = (k === undefined ? this.leafCount() : this.boundIn(k, this.seekHighInc)) - 1;
    this.setViewStop();
  }

  /**
   * For a leaf read through the view, where the bounds end inside it (keys ascend, so the entries
   * past the high bound or the prefix, walking forward from `i`, form a suffix; walking backward,
   * those before the low bound or the prefix form a prefix): found once per leaf by binary search,
   * so stepping compares nothing.
   */
  private setViewStop(): void {
    if (!this.inView) return;
    const v = this.view as LeafView;
    if (!this.reverse) {
      let lo = Math.max(this.i, 0);
      let hi = v.count;
      if (this.high === undefined && this.prefix === undefined) {
        this.viewStop = hi;
        return;
      }
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (this.pastForward(v, mid)) hi = mid;
        else lo = mid + 1;
      }
      this.viewStop = lo;
    } else {
      if (this.low === undefined && this.prefix === undefined) {
        this.viewStop = -1;
        return;
      }
      // The first index in [0, i] that is inside the bounds; everything below it is past them.
      let lo = 0;
      let hi = Math.min(this.i + 1, v.count);
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (this.pastBackward(v, mid)) lo = mid + 1;
        else hi = mid;
      }
      this.viewStop = lo - 1;
    }
  }

  private pastForward(v: LeafView, i: number): boolean {
    if (this.high !== undefined) {
      const c = v.compare(i, this.high);
      if (this.highInc ? c > 0 : c >= 0) return true;
    }
    return this.prefix !== undefined && !v.startsWith(i, this.prefix);
  }

  private pastBackward(v: LeafView, i: number): boolean {
    if (this.low !== undefined) {
      const c = v.compare(i, this.low);
      if (this.lowInc ? c < 0 : c <= 0) return true;
    }
    return this.prefix !== undefined && !v.startsWith(i, this.prefix);
  }

  /** Moves to the next leaf in walk order; false at the end of the tree. */
  private nextLeaf(): boolean {
    const nodes = this.stackNodes;
    const idxs = this.stackIdx;
    let depth = nodes.length - 1;
    while (depth >= 0) {
      const n = nodes[depth];
      const idx = idxs[depth] + (this.reverse ? -1 : 1);
      if (idx >= 0 && idx < n.kids.length) {
        idxs[depth] = idx;
        nodes.length = depth + 1;
        idxs.length = depth + 1;
        this.descend(n.kids[idx], this.reverse ? Toward.Last : Toward.First, n.pos);
        this.i = this.reverse ? this.leafCount() - 1 : 0;
        this.setViewStop();
        return true;
      }
      depth--;
    }
    return false;
  }

  next(): boolean {
    if (this.done) return false;
    if (!this.started) {
      this.started = true;
      if (this.reverse) this.seekBackward();
      else this.seekForward();
      if (this.done) return false;
    } else {
      this.i += this.reverse ? -1 : 1;
    }
    for (;;) {
      if (this.inView) {
        const v = this.view as LeafView;
        if (this.i < 0 || this.i >= v.count) {
          if (!this.nextLeaf()) return this.stop();
          continue;
        }
        if (this.reverse ? this.i <= this.viewStop : this.i >= this.viewStop) return this.stop();
        return true;
      }
      const leaf = this.leaf as LeafNode;
      if (this.i < 0 || this.i >= leaf.keys.length) {
        if (!this.nextLeaf()) return this.stop();
        continue;
      }
      const key = leaf.keys[this.i];
      if (!this.reverse) {
        if (this.high !== undefined && (this.highInc ? key > this.high : key >= this.high)) return this.stop();
        if (this.prefix !== undefined && !key.startsWith(this.prefix)) return this.stop();
      } else {
        if (this.low !== undefined && (this.lowInc ? key < this.low : key <= this.low)) return this.stop();
        if (this.prefix !== undefined && !key.startsWith(this.prefix)) return this.stop();
      }
      this.key = key;
      this.val = leaf.vals[this.i];
      return true;
    }
  }

  private stop(): false {
    this.done = true;
    return false;
  }
}

function prefixSucc(prefix: BinKey): BinKey | null {
  let end = prefix.length;
  while (end > 0 && prefix.charCodeAt(end - 1) === 0xff) end--;
  if (end === 0) return null;
  return (prefix.slice(0, end - 1) + String.fromCharCode(prefix.charCodeAt(end - 1) + 1)) as BinKey;
}

export { ValueRef };
