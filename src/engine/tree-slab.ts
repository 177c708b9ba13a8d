//! Building a slab of the writer's tree in WebAssembly (asm/wtree.ts): what slab.ts SlabBuilder
//! does for decoded JS nodes, for the tree in the store's own instance.
//!
//! Every slab: the Value entries of the commit's values not in the file yet, its Actions entry
//! (unless the slab is a checkpoint), then, for a checkpoint, a Node record for every unwritten
//! dirty node the tree reaches (asm/wcheckpoint.ts wtreePlan, children first), then the Commit
//! (slab.ts sealCommit). The plan is built and encoded in the instance the tree lives in, so the
//! encoder reads the nodes where they are (asm/slab.ts, the Node plan record). Once the slab is
//! appended, `written()` gives the values their positions and switches the checkpointed tree to
//! its written nodes (wtreeWritten); if it is not, `abandon()` takes every position back.
//! Values: a ValueRef whose pos is -1 has not been in the tree (a held-back set: the tree gets its
//! position after the append); one whose pos is -(id + 1) is in the tree under that id
//! (pending-values.ts), and its entry is this slab's entry for the encoder to resolve leaves by.
import { Buffer } from 'node:buffer';
import type { CacheExports } from '../wasm/module.js';
import { COMMIT_ENTRY_BYTES, type CommitRecord } from './codec.js';
import type { BatchAction } from './actions.js';
import type { StagedSets } from './staged-sets.js';
import { assert } from './errors.js';
import { Kind } from './format.js';
import { ValueRef } from './node.js';
import { PendingValues } from './pending-values.js';
import { PlanWriter, type EncodedSlab, type PlanRef } from './plan.js';
import { kindOfDiskRoot, sealCommit, type CommitRoot } from './commit-seal.js';
import type { TreeRoot } from './wasm-tree-cursor.js';

/** asm/slab.ts PLAN_NODE_BYTES: one Node record. */
const PLAN_NODE_BYTES = 5;

export interface TreeSlabInput {
  /** This commit's changes (at most one per key). */
  actions: readonly BatchAction[];
  /** Live keys after this commit; null: not known yet (sets held back until after the append). */
  keyCount: number | null;
  tag: number | undefined;
  prev: CommitRecord | null;
  /** File position the slab will be appended at. */
  start: number;
  /** Whether every byte of the log before `start` is durable (CommitRecord.afterDurable). */
  afterDurable: boolean;
  /** When set, the slab also writes the tree's unwritten nodes and is a checkpoint. */
  checkpoint: TreeSlabCheckpoint | null;
}

export interface TreeSlabCheckpoint {
  /** The tree to write (held by the caller until `written()` or `abandon()`). */
  root: TreeRoot;
  keyCount: number;
  /** The commit whose tree it is, when an earlier one (slab.ts SlabCheckpoint.of). */
  of?: CommitRecord;
}

export interface BuiltTreeSlab {
  /** The slab, a view on the instance's memory: call again after anything that allocates there. */
  bytes(): Buffer;
  len: number;
  commit: CommitRecord;
  /**
   * Once the slab is appended: the values get their positions, and the checkpointed tree (if any)
   * refers to its written nodes by position. Returns the tree the caller's reference on the
   * checkpoint's root moved to (the root itself, still dirty, or its written position), or null
   * when the slab is no checkpoint.
   */
  written(): TreeRoot | null;
  /**
   * written() with the checkpointed tree switched in steps of about `budgetBytes` of nodes,
   * awaiting `pause()` between them (asm/wcheckpoint.ts wtreeWrittenStep): readers may run
   * between steps, nothing may change the tree.
   */
  writtenSliced(budgetBytes: number, pause: () => Promise<void>): Promise<TreeRoot | null>;
  /** The slab was not appended: every position it gave is taken back. */
  abandon(): void;
}

export class TreeSlabBuilder {
  private readonly plan: PlanWriter;

  constructor(
    private readonly ex: CacheExports,
    private readonly pending: PendingValues,
    /** The running batch's staged sets, whose records its actions' inline values name. */
    private readonly staged: StagedSets,
    memoryGrown: () => void,
    /** Told after a switch copied written nodes into the cache's ring (wasm-cache.ts prefaultAhead). */
    private readonly nodesCached: () => void,
  ) {
    this.plan = new PlanWriter(ex, memoryGrown);
  }

  /** Frees the plan's buffers (the store's close). */
  dispose(): void {
    this.plan.dispose();
  }

  /** Hands the plan's buffers to `discard`, between builds (PlanWriter.discardContents). */
  discardScratch(discard: (ptr: number, len: number) => void): void {
    this.plan.discardContents(discard);
  }

  build(input: TreeSlabInput): BuiltTreeSlab {
    const staged = this.stage(input);
    return this.finish(input, staged, this.plan.encode(input.start, COMMIT_ENTRY_BYTES));
  }

  /** build() with the encode in parts of about `sliceBytes` of output, awaiting `pause()` between them (a big checkpoint). */
  async buildSliced(input: TreeSlabInput, sliceBytes: number, pause: () => Promise<void>): Promise<BuiltTreeSlab> {
    const staged = this.stage(input);
    const enc = await this.plan.encodeSliced(input.start, COMMIT_ENTRY_BYTES, sliceBytes, async () => {
      await pause();
      this.pending.register();
    });
    return this.finish(input, staged, enc);
  }

  private stage(input: TreeSlabInput): Staged {
    const plan = this.plan;
    plan.reset();
    const values: ValueRef[] = [];
    const entries: number[] = [];
    /** Pending ids staged for the actions; and those staged for the tree alone. */
    const staged = new Set<number>();
    const pendingOnly: Array<{ id: number; entry: number }> = [];
    let refs: PlanRef[] | null = null;
    const actions = input.actions;
    for (let i = 0; i < actions.length; i++) {
      const v = actions[i].val;
      if (!(v instanceof ValueRef)) continue;
      if (v.pos >= 0) {
        (refs ??= [])[i] = { inner: false, at: v.pos, len: v.len };
        continue;
      }
      assert(v.bytes !== undefined && v.bytes.length === v.len, 'a value not in the file without its bytes');
      const e = plan.value(v.bytes);
      const id = PendingValues.idOf(v.pos);
      if (id !== 0) {
        this.pending.stage(id, e);
        staged.add(id);
      }
      values.push(v);
      entries.push(e);
      (refs ??= [])[i] = { inner: true, at: e, len: v.len };
    }
    // A checkpoint's tree holds this commit's changes, and replay starts after it: its Actions
    // entry (every slab has one) is empty. Its leaves may name any value not placed yet, logged
    // or not (compaction's copies are not): each gets its entry here.
    if (input.checkpoint === null) plan.actions(actions, refs, this.staged);
    else {
      plan.actions([], null);
      for (const { id, bytes } of this.pending.unplacedValues()) {
        if (staged.has(id)) continue;
        const e = plan.value(bytes);
        this.pending.stage(id, e);
        pendingOnly.push({ id, entry: e });
      }
    }
    let nodesAt = 0;
    let nodeCount = 0;
    const root = input.checkpoint?.root;
    if (root !== undefined && root.addr !== 0) {
      const s = plan.staged(PLAN_NODE_BYTES, (at, cap) => this.ex.wtreePlan(root.addr, at, cap));
      nodesAt = s.at;
      nodeCount = s.count;
    }
    this.pending.register();
    return { values, entries, pendingOnly, nodesAt, nodeCount };
  }

  private finish(input: TreeSlabInput, staged: Staged, enc: EncodedSlab): BuiltTreeSlab {
    const ex = this.ex;
    const plan = this.plan;
    const start = input.start;
    const cp = input.checkpoint;
    let root: CommitRoot | null = null;
    if (cp !== null) {
      const r = cp.root;
      if (r.addr !== 0) {
        // Its header holds where the encode (or an earlier checkpoint) wrote it.
        const m = new DataView(ex.memory.buffer);
        const pos = m.getFloat64(r.addr + 8, true);
        const kind = m.getUint32(r.addr + 4, true);
        assert(pos >= 0 && (kind === Kind.Leaf || kind === Kind.Index), 'a checkpoint whose root was not written');
        root = { pos, len: m.getUint32(r.addr + 20, true), kind };
      } else if (r.pos > 0) {
        root = { pos: r.pos, len: r.len, kind: kindOfDiskRoot(input.prev) };
      }
    }
    const commit = sealCommit(ex, input, enc, root);
    const outPtr = enc.outPtr;
    const len = enc.len + COMMIT_ENTRY_BYTES;
    let settled = false;
    const settle = (): void => {
      assert(!settled, 'a slab settled twice');
      settled = true;
    };
    // written(), up to the switch: the values' positions; then null (no checkpoint), the clean
    // root as it was (nothing dirty to switch), or undefined with the switch started.
    const placed = (): TreeRoot | null | undefined => {
      settle();
      plan.refresh();
      for (let i = 0; i < staged.values.length; i++) {
        const v = staged.values[i];
        const pos = start + plan.entryOffset(staged.entries[i]);
        const id = PendingValues.idOf(v.pos);
        if (id !== 0) this.pending.place(id, pos);
        v.pos = pos;
        v.bytes = undefined;
      }
      for (const { id, entry } of staged.pendingOnly) this.pending.place(id, start + plan.entryOffset(entry));
      if (cp === null) return null;
      const r = cp.root;
      if (r.addr === 0) return { ...r };
      this.pending.register();
      ex.wtreeWrittenStart(r.addr);
      return undefined;
    };
    // After the switch's last step: the root the caller's reference moved to (RESULT).
    const switched = (): TreeRoot => {
      this.nodesCached();
      const m = Buffer.from(ex.memory.buffer);
      const result = ex.resultAddress() >>> 0;
      const addr = m.readUInt32LE(result);
      return addr !== 0 ? { addr, pos: 0, len: 0 } : { addr: 0, pos: m.readDoubleLE(result + 8), len: m.readUInt32LE(result + 4) };
    };
    return {
      bytes: () => {
        assert(!plan.disposed, "a slab's bytes read after its builder was disposed");
        return Buffer.from(ex.memory.buffer, outPtr, len);
      },
      len,
      commit,
      written: () => {
        const r = placed();
        if (r !== undefined) return r;
        while (ex.wtreeWrittenStep(0xffffffff) !== 0);
        return switched();
      },
      writtenSliced: async (budgetBytes, pause) => {
        const r = placed();
        if (r !== undefined) return r;
        while (ex.wtreeWrittenStep(budgetBytes) !== 0) await pause();
        return switched();
      },
      abandon: () => {
        settle();
        for (const v of staged.values) {
          const id = PendingValues.idOf(v.pos);
          if (id !== 0) this.pending.unstage(id);
        }
        for (const { id } of staged.pendingOnly) this.pending.unstage(id);
        if (staged.nodeCount > 0) ex.wtreePlanAbandon(staged.nodesAt, staged.nodeCount * PLAN_NODE_BYTES);
      },
    };
  }
}

interface Staged {
  /** Values this slab writes for its actions, and their entries. */
  values: ValueRef[];
  entries: number[];
  /** Pending values it writes for the tree alone (a checkpoint's), by id. */
  pendingOnly: Array<{ id: number; entry: number }>;
  /** Where the Node records are in the plan, and how many. */
  nodesAt: number;
  nodeCount: number;
}
