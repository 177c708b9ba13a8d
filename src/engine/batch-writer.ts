//! One batch's writer as the store drives it: the WebAssembly tree's writer (wasm-tree-writer.ts)
//! with keys and values as the store holds them (keys.ts binary strings, node.ts LeafValue), sets
//! held back until the commit (setLater), and values too big to be inline given ids until their
//! slab is appended (pending-values.ts).
//!
//! Owns: the sets held back, and the roots frozen for the batch's cursors (released at `end`).
//! Held-back sets: a small batch's sets are logged and their sync started before the tree changes,
//! and the tree then changes while the disk works (db.ts commit). Every other call that reads or
//! changes the tree makes them first, so nothing but their timing changes; `root` and `count` leave
//! them out until then (callers reading those call applyLater() first).
import type { Buffer } from 'node:buffer';
import { assert } from './errors.js';
import type { BinKey } from './keys.js';
import { ValueRef } from './node.js';
import type { WriteValue } from './codec.js';
import type { StoreTree } from './store-tree.js';
import type { TreeRoot } from './wasm-tree-cursor.js';
import type { TreeSavepoint, WasmTreeWriter } from './wasm-tree-writer.js';
import { PendingValues } from './pending-values.js';

/** A transaction's starting point: the tree's, and how many pending ids the batch had given then. */
export interface BatchSavepoint {
  readonly tree: TreeSavepoint;
  readonly pendingIds: number;
}

/**
 * Most sets a batch holds back (setLater). A batch of up to this many sets is logged before its
 * tree changes (Db.commit: those run while its sync does). A bigger one changes the tree first,
 * since whether its commit also writes the tree depends on what the change dirtied: a sorted
 * load's 1,000-key batches write their leaves at once instead of logging them
 * (checkpointTreeOverLogMax). Groups of 100 sets hold back; 1,000-key loads do not.
 */
export const SET_LATER_MAX = 128;

export class BatchWriter {
  private readonly w: WasmTreeWriter;
  private readonly laterKeys: BinKey[] = [];
  private readonly laterVals: WriteValue[] = [];
  /** Set once the writer took SET_LATER_MAX sets: from then on every set is made at once. */
  private laterOff = false;
  /** The first error making held sets threw (see throwLaterFailure). */
  private laterError: { error: unknown } | null = null;
  /** Roots frozen for cursors over this batch's tree, each held until `end()`. */
  private readonly frozen: TreeRoot[] = [];
  private isEnded = false;
  /** Ids this batch gave values not in the file yet (pending-values.ts), in order: an undo forgets those after its point. */
  private readonly pendingIds: number[] = [];

  constructor(
    private readonly tree: StoreTree,
    published: TreeRoot,
    count: number,
    inPlace: boolean,
  ) {
    this.w = tree.writer(published, count, inPlace);
  }

  /** The writer's tree (without sets still held back). */
  get root(): TreeRoot {
    return this.w.root;
  }

  get count(): number {
    return this.w.count;
  }

  /** Whether the batch was published or aborted. */
  get ended(): boolean {
    return this.isEnded;
  }

  /** A checkpoint wrote this batch's tree: the writer's reference moved to `root` (WasmTreeWriter.rootWritten). */
  rootWritten(root: TreeRoot): void {
    this.w.rootWritten(root);
  }

  /** Whether the batch still changes the published tree in place. */
  get inPlace(): boolean {
    return this.w.inPlace;
  }

  /** The value under `key` with the batch's own changes: inline bytes, a Value entry's reference, or undefined. */
  get(key: BinKey): Buffer | ValueRef | undefined {
    if (this.laterKeys.length !== 0) this.applyLater();
    return this.tree.resolve(this.w.get(key));
  }

  /**
   * A set made later: by the next call that reads or changes the tree, by applyLater(), or after
   * the commit's append. Past SET_LATER_MAX sets they are made at once.
   */
  setLater(key: BinKey, val: WriteValue): void {
    if (this.laterOff || this.laterKeys.length >= SET_LATER_MAX) {
      this.laterOff = true;
      this.set(key, val);
      return;
    }
    this.laterKeys.push(key);
    this.laterVals.push(val);
  }

  /** Sets taken by setLater and not made yet. */
  get setsLater(): number {
    return this.laterKeys.length;
  }

  /** Makes the sets taken by setLater, in order. */
  applyLater(): void {
    const n = this.laterKeys.length;
    if (n === 0) return;
    // Emptied first: after a throw none is left for a later call to make again. The failure is
    // kept (throwLaterFailure), and the transaction or batch that held them fails.
    const ks = this.laterKeys.splice(0, n);
    const vs = this.laterVals.splice(0, n);
    try {
      for (let i = 0; i < n; i++) this.put(ks[i], vs[i]);
    } catch (error) {
      this.laterError ??= { error };
      throw error;
    }
  }

  /**
   * Throws what making held sets threw, if it did since the last restore(): a transaction whose
   * sets could not all be made must not commit, even if its callback caught the error.
   */
  throwLaterFailure(): void {
    if (this.laterError !== null) throw this.laterError.error;
  }

  /** Inserts or replaces; true when the key is new. */
  set(key: BinKey, val: WriteValue): boolean {
    if (this.laterKeys.length !== 0) this.applyLater();
    return this.put(key, val);
  }

  private put(key: BinKey, val: WriteValue): boolean {
    // A value not in the file yet goes into the tree under an id until its slab is appended.
    if (val instanceof ValueRef && val.pos === -1) {
      this.tree.pending.add(val);
      this.pendingIds.push(PendingValues.idOf(val.pos));
    }
    return this.w.set(key, val);
  }

  /** Removes a key; false (and nothing changed) when it is absent. */
  delete(key: BinKey): boolean {
    if (this.laterKeys.length !== 0) this.applyLater();
    return this.w.delete(key);
  }

  /** A transaction's starting point (the sets held before it are made first: they are not its own). */
  savepoint(): BatchSavepoint {
    this.applyLater();
    return { tree: this.w.savepoint(), pendingIds: this.pendingIds.length };
  }

  /** Back to a savepoint: the changes since, held-back sets among them, are dropped. */
  restore(s: BatchSavepoint): void {
    this.dropLater();
    this.w.restore(s.tree);
    this.forgetPendingFrom(s.pendingIds);
  }

  drop(s: BatchSavepoint): void {
    this.w.drop(s.tree);
  }

  /** The values the undone sets gave ids to are written by no slab. */
  private forgetPendingFrom(mark: number): void {
    for (let i = mark; i < this.pendingIds.length; i++) this.tree.pending.forget(this.pendingIds[i]);
    this.pendingIds.length = mark;
  }

  /** The current tree, held for a cursor until `end()` (or `unfreeze`). */
  freeze(): TreeRoot {
    this.applyLater();
    const root = this.w.freeze();
    this.frozen.push(root);
    return root;
  }

  /** Gives back a root `freeze` held (a cursor finished early). */
  unfreeze(root: TreeRoot): void {
    const i = this.frozen.indexOf(root);
    if (i < 0) return;
    this.frozen.splice(i, 1);
    this.tree.release(root);
  }

  /** Gives the published tree its contents back (a reader wants it); returns whether changes in place were sealed off. */
  seal(): boolean {
    if (!this.w.inPlace) return false;
    const changed = this.w.changesInPlace > 0;
    this.w.seal();
    return changed;
  }

  /**
   * Ends the batch with its changes: the tree to publish (one reference for the caller, who then
   * releases the old published root) and how many changes were made in place.
   */
  publish(): { root: TreeRoot; changesInPlace: number } {
    assert(this.laterKeys.length === 0, 'a batch published with sets held back');
    const changesInPlace = this.w.changesInPlace;
    const root = this.w.publish();
    this.end();
    return { root, changesInPlace };
  }

  /** Ends the batch without its changes. */
  abort(): void {
    this.dropLater();
    this.w.abort();
    this.forgetPendingFrom(0);
    this.end();
  }

  /** Releases the roots frozen for cursors (they throw ClosedError from then on: views.ts). */
  private end(): void {
    this.isEnded = true;
    for (const r of this.frozen) this.tree.release(r);
    this.frozen.length = 0;
  }

  private dropLater(): void {
    this.laterKeys.length = 0;
    this.laterVals.length = 0;
    this.laterError = null;
  }
}
