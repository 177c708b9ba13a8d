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
import { AssertionError, assert } from './errors.js';
import type { BinKey } from './keys.js';
import type { WriteValue } from './codec.js';
import { ValueRef } from './node.js';
import type { StoreTree } from './store-tree.js';
import type { TreeRoot } from './wasm-tree-cursor.js';
import type { TreeSavepoint, WasmTreeWriter } from './wasm-tree-writer.js';
import { PendingValues } from './pending-values.js';
import type { StagedSets, StagedValue } from './staged-sets.js';

/** A transaction's starting point: the tree's, and how many pending ids the batch had given then. */
export interface BatchSavepoint {
  readonly tree: TreeSavepoint;
  readonly pendingIds: number;
  /** Where the batch's staged records ended (all made): an undo drops those after. */
  readonly staged: number;
}

/**
 * Most sets a batch holds back (setLater). A batch of up to this many sets is logged before its
 * tree changes (Db.commit: those run while its sync does). A bigger one changes the tree first,
 * since whether its commit also writes the tree depends on what the change dirtied: a sorted
 * load's 1,000-key batches write their leaves at once instead of logging them
 * (checkpointTreeOverLogMax). Groups of 100 sets hold back; 1,000-key loads do not. A bigger
 * batch's sets are still made in groups of up to this many, each in one call (staged-sets.ts),
 * the last before the commit's append (changesFirst).
 */
export const SET_LATER_MAX = 128;

export class BatchWriter {
  private readonly w: WasmTreeWriter;
  /** The sets held back, as records in the instance (the store's, one batch at a time). */
  private readonly staged: StagedSets;
  /** Set once the writer took SET_LATER_MAX sets: from then on its tree changes before its append. */
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
    this.staged = tree.staged;
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
    if (this.staged.count !== 0) this.applyLater();
    return this.tree.resolve(this.w.get(key));
  }

  /**
   * A set made later: by the next call that reads or changes the tree, by applyLater(), or after
   * the commit's append. Every SET_LATER_MAX sets are made together, and the batch then changes
   * its tree before its append (changesFirst).
   */
  setLater(key: BinKey, val: WriteValue): ValueRef | StagedValue {
    const staged = this.staged;
    if (staged.owner !== this) {
      if (staged.bytes !== 0) throw new AssertionError('two batches staging sets at once');
      staged.owner = this;
    }
    this.givePendingId(val);
    const named = staged.add(key, val);
    if (staged.count >= SET_LATER_MAX) {
      this.laterOff = true;
      this.applyLater();
    }
    // What the batch's actions log: an inline value by its record (copied once, into the
    // instance), a Value entry's reference as it is.
    return val instanceof ValueRef ? val : named;
  }

  /** Sets taken by setLater and not made yet. */
  get setsLater(): number {
    return this.staged.owner === this ? this.staged.count : 0;
  }

  /** Whether the batch took more than SET_LATER_MAX sets: its commit makes them all before its append. */
  get changesFirst(): boolean {
    return this.laterOff;
  }

  /** Makes the sets taken by setLater, in order, in one call. */
  applyLater(): void {
    const staged = this.staged;
    if (staged.owner !== this || staged.count === 0) return;
    // Marked made after, made or not: after a throw none is left for a later call to make again.
    // The failure is kept (throwLaterFailure), and the transaction or batch that held them fails.
    try {
      this.w.putStaged(staged);
    } catch (error) {
      this.laterError ??= { error };
      throw error;
    } finally {
      staged.allMade();
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
    if (this.staged.count !== 0) this.applyLater();
    this.givePendingId(val);
    return this.w.set(key, val);
  }

  /** A value not in the file yet goes into the tree under an id until its slab is appended. */
  private givePendingId(val: WriteValue): void {
    if (val instanceof ValueRef && val.pos === -1) {
      this.tree.pending.add(val);
      this.pendingIds.push(PendingValues.idOf(val.pos));
    }
  }

  /** Removes a key; false (and nothing changed) when it is absent. */
  delete(key: BinKey): boolean {
    if (this.staged.count !== 0) this.applyLater();
    return this.w.delete(key);
  }

  /** A transaction's starting point (the sets held before it are made first: they are not its own). */
  savepoint(): BatchSavepoint {
    this.applyLater();
    return { tree: this.w.savepoint(), pendingIds: this.pendingIds.length, staged: this.staged.owner === this ? this.staged.bytes : 0 };
  }

  /** Back to a savepoint: the changes since, held-back sets among them, are dropped. */
  restore(s: BatchSavepoint): void {
    if (this.staged.owner === this) this.staged.truncate(s.staged);
    this.laterError = null;
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
    assert(this.setsLater === 0, 'a batch published with sets held back');
    const changesInPlace = this.w.changesInPlace;
    const root = this.w.publish();
    this.end();
    return { root, changesInPlace };
  }

  /** Ends the batch without its changes. */
  abort(): void {
    this.laterError = null;
    this.w.abort();
    this.forgetPendingFrom(0);
    this.end();
  }

  /**
   * Releases the roots frozen for cursors (they throw ClosedError from then on: views.ts) and the
   * staged records (the batch's actions, which named values by them, are written or dropped).
   */
  private end(): void {
    this.isEnded = true;
    if (this.staged.owner === this) {
      this.staged.clear();
      this.staged.owner = null;
    }
    for (const r of this.frozen) this.tree.release(r);
    this.frozen.length = 0;
  }
}
