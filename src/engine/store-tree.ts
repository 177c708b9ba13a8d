//! The store's tree in WebAssembly: one instance per open store holding the node cache (clean
//! nodes by file position), the writer's dirty nodes (asm/dirty.ts), the table of values not in
//! the file yet (pending-values.ts) and the slab plans (tree-slab.ts).
//!
//! Owns: that instance, and answering reads against any root of it (a published tree, a
//! snapshot's, a transaction's). The caller owns the roots: a dirty root is held by reference
//! (`retain`, `release`) for as long as anything reads it.
//! Invariant: everything that allocates in the instance tells it (`memoryGrown`), so the views of
//! its memory that the cache, cursors and writers read are made again before the next use.
import { StagedSets } from './staged-sets.js';
import { Buffer } from 'node:buffer';
import type { CacheExports } from '../wasm/module.js';
import type { FileLog } from './log-file.js';
import type { BinKey, InlineValue } from './keys.js';
import { DiskRef, ValueRef, T, type Child, type LeafValue } from './node.js';
import { PendingValues } from './pending-values.js';
import { TreeSlabBuilder } from './tree-slab.js';
import { WasmNodeCache } from './wasm-cache.js';
import { WasmTreeCursor, type ByteBounds, type TreeRoot } from './wasm-tree-cursor.js';
import { WasmTreeWriter, findIn, type TreeHost, type TreeKey } from './wasm-tree-writer.js';
import { AssertionError } from './errors.js';

export interface StoreTreeOptions {
  /** The node cache's ring (clean nodes). */
  cacheBytes: number;
  /** The writer's region for dirty nodes. */
  dirtyBytes: number;
  hugePages: boolean;
  nodeBytesMax: number;
  /** The largest node body the tree may hold (keys up to maxKeyBytes make a node pass nodeBytesMax). */
  nodeBodyBytesMax: number;
}

export const EMPTY_ROOT: TreeRoot = Object.freeze({ addr: 0, pos: 0, len: 0 });

export class StoreTree implements TreeHost {
  readonly cache: WasmNodeCache;
  readonly ex: CacheExports;
  readonly probe: number;
  readonly input: number;
  readonly result: number;
  readonly pending: PendingValues;
  /** The sets the running batch holds back (batch-writer.ts). */
  readonly staged: StagedSets;
  /** The slab builder (one at a time: a background checkpoint builds holding the store's writer). */
  readonly slabs: TreeSlabBuilder;

  constructor(
    log: FileLog,
    private readonly options: StoreTreeOptions,
  ) {
    this.cache = new WasmNodeCache(log, options.cacheBytes, options.hugePages, options.dirtyBytes, Math.max(1 << 20, options.nodeBodyBytesMax));
    this.ex = this.cache.instance;
    const a = this.cache.areas;
    this.probe = a.probe;
    this.input = a.input;
    this.result = a.result;
    const grown = () => this.cache.refreshViews();
    this.pending = new PendingValues(this.ex, grown);
    this.staged = new StagedSets(this.ex, () => this.cache.buffer, grown);
    this.slabs = new TreeSlabBuilder(this.ex, this.pending, this.staged, grown, () => this.cache.prefaultAhead());
  }

  // --- TreeHost ---

  mem(): Buffer {
    return this.cache.buffer;
  }

  load(pos: number, len: number): void {
    this.cache.nodeAt(pos, len);
  }

  // --- roots ---

  retain(root: TreeRoot): void {
    if (root.addr !== 0) this.ex.wtreeRetain(root.addr);
  }

  release(root: TreeRoot): void {
    if (root.addr !== 0) this.ex.wtreeRelease(root.addr);
  }

  /** Bytes of the changed nodes' region in use (their blocks). */
  get dirtyRegionBytesInUse(): number {
    return this.ex.dirtyBytesInUse();
  }

  /**
   * The most bytes of the region in use since the last call (all of it if a node could not be
   * had meanwhile); the next call counts from now (asm/dirty.ts dirtyPeakTake).
   */
  takeDirtyRegionPeakBytes(): number {
    return this.ex.dirtyPeakTake();
  }

  /** Gives the changed nodes' region back to the kernel if no node is in it; bytes given back (WasmNodeCache.trimDirtyRegion). */
  trimDirtyRegion(): number {
    return this.cache.trimDirtyRegion();
  }

  /**
   * Gives the pages of the slab builder's buffers back to the kernel, between builds: after a
   * big checkpoint they keep its plan and encoded slab (~120 MB after a 1M-key random load).
   * Returns the bytes of the buffers given back.
   */
  trimSlabBuffers(): number {
    let bytes = 0;
    this.slabs.discardScratch((ptr, len) => {
      if (this.cache.discardPages(ptr, len)) bytes += len;
    });
    return bytes;
  }

  /** The changed nodes' estimated encoded bytes (asm/wleaf.ts dirtyEstimateBytes). */
  get dirtyEstimateBytes(): number {
    return this.ex.dirtyEstimateBytes();
  }

  /**
   * After a checkpoint freed the nodes it wrote: the ids of values that were pending are forgotten
   * once no dirty node exists to name one (nothing else holds an older tree beside), and the
   * region's free blocks are merged (asm/dirty.ts dirtyCoalesce: the next interval's nodes then
   * find whole blocks, not the last interval's scattered ones).
   */
  checkpointed(): void {
    if (this.pending.count > 0 && this.dirtyEstimateBytes === 0) this.pending.reset();
    this.ex.dirtyCoalesce();
  }

  // --- reads ---

  /** The value under `key` in the tree at `root`: inline bytes, a Value entry's reference (pending ones resolved), or undefined. */
  get(root: TreeRoot, key: TreeKey): Buffer | ValueRef | undefined {
    return this.resolve(findIn(this, root, key));
  }

  /** A value read from a tree, with a pending value's id turned into its position or its bytes. */
  resolve<V extends Buffer | ValueRef | undefined>(v: V): V {
    if (!(v instanceof ValueRef) || v.pos >= 0) return v;
    return this.pending.resolve(v.pos, v.len) as V;
  }

  /** A cursor over `root` (held by the caller while the cursor is used). */
  cursor(root: TreeRoot, bounds: ByteBounds): WasmTreeCursor {
    return new WasmTreeCursor(this.cache, root, bounds);
  }

  /**
   * The tree at `root` for a walk in JS (check.ts, compaction's postcondition): its dirty nodes
   * decoded (position -1, or where a checkpoint wrote them), its clean subtrees as DiskRefs, and
   * values pending resolved. Costs a decode of every dirty node: for checks, not for reads.
   */
  jsTree(root: TreeRoot): Child | null {
    if (root.addr === 0) return root.pos > 0 ? new DiskRef(root.pos, root.len) : null;
    this.cache.refreshViews();
    const m = this.cache.buffer;
    const kids: number[] = [];
    const pos = m.readDoubleLE(root.addr + 8);
    const n = this.cache.decodedAt(root.addr, pos >= 0 ? pos : -1, pos >= 0 ? m.readUInt32LE(root.addr + 20) : 0, kids);
    if (n.t === T.Index) {
      for (let i = 0; i < n.kids.length; i++) {
        const k = kids[i];
        if (k !== undefined) n.kids[i] = this.jsTree({ addr: k, pos: 0, len: 0 }) as Child;
      }
    } else {
      for (let i = 0; i < n.vals.length; i++) {
        const v = n.vals[i];
        if (v instanceof ValueRef && v.pos < 0) n.vals[i] = this.pending.resolve(v.pos, v.len);
      }
    }
    return n;
  }

  /** A writer for one batch from `published` (see WasmTreeWriter). */
  writer(published: TreeRoot, count: number, inPlace: boolean): WasmTreeWriter {
    return new WasmTreeWriter(this, published, count, this.options.nodeBytesMax, inPlace);
  }

  dispose(): void {
    this.slabs.dispose();
    this.pending.dispose();
  }
}

/**
 * A range cursor as the store's iterators use it (views.ts): a WasmTreeCursor with values as the
 * store reads them (pending ones resolved), and keys as bytes or as binary strings.
 */
export class TreeRangeCursor {
  private readonly c: WasmTreeCursor;

  constructor(
    private readonly tree: StoreTree,
    root: TreeRoot,
    bounds: ByteBounds,
  ) {
    this.c = tree.cursor(root, bounds);
  }

  next(): boolean {
    return this.c.next();
  }

  keyBuffer(): Buffer {
    return this.c.key();
  }

  valueBuffer(materialize: (v: Buffer | ValueRef) => Buffer): Buffer {
    return materialize(this.tree.resolve(this.c.value()));
  }

  /** The key as a binary string (keys.ts BinKey). */
  binKey(): BinKey {
    return this.c.key().toString('latin1') as BinKey;
  }

  /** The value as a tree leaf holds it (an inline one as a binary string, keys.ts InlineValue). */
  leafValue(): LeafValue {
    const v = this.tree.resolve(this.c.value());
    return v instanceof ValueRef ? v : (v.toString('latin1') as InlineValue);
  }
}

/**
 * What a closed store holds instead of its tree: the instance's memory (the node cache's ring and
 * the changed nodes' region, ~1 GB resident after a 1M-key load) is then garbage as soon as no
 * iterator holds it, even while the application still holds the closed Db object. Every call
 * that could reach the tree checks that the store is open first, so any use is a broken invariant.
 */
export const CLOSED_TREE: StoreTree = new Proxy(Object.create(null) as StoreTree, {
  get(_target, prop) {
    throw new AssertionError(`a closed store's tree was used (${String(prop)})`);
  },
});
