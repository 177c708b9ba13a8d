//! A batch's logical changes (the Actions entry of its slab) and the tree operations that record
//! or replay them.
import type { Action, WriteValue } from './codec.js';
import type { StagedSets, StagedValue } from './staged-sets.js';
import { assert } from './errors.js';
import type { BinKey } from './keys.js';
import { Buffer } from 'node:buffer';
import type { BatchWriter } from './batch-writer.js';
import { ValueRef } from './node.js';
import { TreeRangeCursor, type StoreTree } from './store-tree.js';

/**
 * An action a running batch logs: as codec.ts Action, with an inline value also named by its
 * staged record (staged-sets.ts; valid until the batch ends).
 */
export interface BatchAction {
  key: BinKey;
  val: WriteValue | StagedValue | null;
}

/** Deletes every key starting with `prefix` from the batch's tree, logging each; returns how many. */
export function deletePrefixIn(tree: StoreTree, w: BatchWriter, prefix: BinKey, actions: BatchAction[]): number {
  const root = w.freeze();
  const keys: BinKey[] = [];
  try {
    const c = new TreeRangeCursor(tree, root, { prefix: Buffer.from(prefix, 'latin1') });
    while (c.next()) keys.push(c.binKey());
  } finally {
    w.unfreeze(root);
  }
  for (const k of keys) {
    assert(w.delete(k), 'deletePrefix lost a key it had just listed');
    actions.push({ key: k, val: null });
  }
  return keys.length;
}

/** Keeps only the last action for each key: the final state of a batch is all that is logged. */
export function lastPerKey<A extends { key: BinKey }>(actions: A[]): A[] {
  if (actions.length < 2) return actions;
  // Strictly ascending keys (sorted loads, compaction-like batches) cannot repeat: skip the set.
  let ascending = true;
  for (let i = 1; i < actions.length && ascending; i++) ascending = actions[i - 1].key < actions[i].key;
  if (ascending) return actions;
  const seen = new Set<BinKey>();
  const out: A[] = [];
  for (let i = actions.length - 1; i >= 0; i--) {
    const a = actions[i];
    if (seen.has(a.key)) continue;
    seen.add(a.key);
    out.push(a);
  }
  if (out.length === actions.length) return actions;
  return out.reverse();
}

/** Replays logged actions onto a tree. */
export function applyActions(w: BatchWriter, actions: readonly Action[]): void {
  for (const a of actions) {
    if (a.val === null) w.delete(a.key);
    else w.set(a.key, a.val);
  }
}

/**
 * About how many bytes an Actions entry for `actions` takes (inline values; entries by reference).
 * A commit whose changed nodes are at most `checkpointTreeOverLogMax` times this writes them
 * itself (a checkpoint) instead of its actions: sorted loads and other clustered batches dirty
 * about as many node bytes as they log, so writing the tree once beats logging now and writing
 * the same bytes again at the next checkpoint (a sorted 1M-key load wrote 186 MB, 1.4× lmdb's
 * file, and now writes 123 MB); scattered batches dirty a node per key and keep logging.
 */
export function actionLogBytes(actions: readonly BatchAction[], staged: StagedSets): number {
  let n = 0;
  for (const a of actions) {
    const v = a.val;
    n += a.key.length + 4 + (v === null ? 0 : v instanceof ValueRef ? 12 : (typeof v === 'number' ? staged.valueLength(v) : v.length) + 2);
  }
  return n;
}
