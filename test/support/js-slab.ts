//! Building a slab from the JS tree (js-tree.ts): the new entries of one commit, written with one
//! append. The store's builder until round 27 (now src/engine/tree-slab.ts); the tests' reference.
//!
//! Every slab: the commit's new Value entries, its Actions entry, then the Commit. A checkpoint
//! slab also walks the dirty part of the tree (nodes with pos -1) children first, so every
//! reference is encoded as its final Outer position: leaves, then indexes up to the root. Only
//! nodes reachable from the root are visited, so copies made and replaced since the previous
//! checkpoint are never written: that is Baardskeerder's slab compaction (§A.7), done exactly
//! instead of by its one-pass approximation, and across many commits instead of one.
//! Serialization runs in WebAssembly (asm/slab.ts): this module stages the entries in a plan
//! (plan.ts), with Inner references (entry indexes) for what this slab itself writes, and the
//! encoder writes the entries, resolves those references to Outer positions and checksums each
//! entry, then the slab (CRC32C over the entry CRCs in order: each covers its entry, and
//! checksumming the bytes twice cost 5% of a bulk load), which the Commit carries. The Commit
//! itself (fixed layout, codec.ts) is written last, after the encoded entries. A big checkpoint is
//! staged and encoded in slices (buildSliced), and its objects get their positions only once the
//! whole slab is appended (apply), so a failed or half-done append leaves the tree as it was.
import { Buffer } from 'node:buffer';
import { core, type CoreExports } from '../../src/wasm/module.js';
import { COMMIT_ENTRY_BYTES, type Action, type CommitRecord } from '../../src/engine/codec.js';
import { assert } from '../../src/engine/errors.js';
import { Kind } from '../../src/engine/format.js';
import { DiskRef, IndexNode, LeafNode, T, ValueRef, type Child, type TreeNode } from '../../src/engine/node.js';
import { PlanWriter, type EncodedSlab, type PlanRef } from '../../src/engine/plan.js';
import { kindOfDiskRoot, sealCommit } from '../../src/engine/commit-seal.js';

/** Output bytes per part of a sliced encode (~7 ms at the ~0.6 GB/s measured here). */
const ENCODE_SLICE_BYTES = 4 * 1024 * 1024;

export interface SlabInput {
  /** This commit's changes (at most one per key). */
  actions: readonly Action[];
  /** Live keys after this commit; null: not known yet (the sets change the tree after the append). */
  keyCount: number | null;
  tag: number | undefined;
  prev: CommitRecord | null;
  /** File position the slab will be appended at. */
  start: number;
  /** Whether every byte before `start` is durable (CommitRecord.afterDurable); true if absent. */
  afterDurable?: boolean;
  /** When set, the slab also carries the tree's changed nodes and becomes a checkpoint. */
  checkpoint: SlabCheckpoint | null;
}

export interface SlabCheckpoint {
  root: Child | null;
  /** Keys in that tree. */
  keyCount: number;
  /**
   * The commit whose tree `root` is, when it is an earlier one (a background checkpoint, db.ts):
   * replay then starts after that commit, and the commits between it and this slab are replayed
   * onto the tree. Absent: this slab's own commit.
   */
  of?: CommitRecord;
}

/** Where and after what a staged slab goes: known only when it is encoded (StagedSlab). */
export type SlabPlacement = Pick<SlabInput, 'keyCount' | 'tag' | 'prev' | 'start'>;

/** A slab staged but not yet encoded: its position in the file is not fixed yet. */
export interface StagedSlab {
  /** Encodes it for `placement`, in slices of ENCODE_SLICE_BYTES with `pause()` between them. */
  encodeSliced(placement: SlabPlacement, pause: () => Promise<void>): Promise<BuiltSlab>;
}

export interface BuiltSlab {
  /**
   * The slab, a view on its builder's instance's linear memory: valid until the next build, or
   * anything else that allocates there. Call again after any pause (another store's work may
   * have grown the memory, which detaches older views); append it before `apply`.
   */
  bytes(): Buffer;
  len: number;
  commit: CommitRecord;
  /** The checkpointed root (when this slab is a checkpoint). */
  rootRef: DiskRef | null;
  /**
   * Gives the slab's nodes and values their positions and swaps written children for DiskRefs;
   * returns the nodes written, for the caches. Only once the slab is appended: the published
   * tree shares these objects, so until then they keep pointing at bytes in memory, and a failed
   * append leaves nothing to undo.
   */
  apply(): TreeNode[];
  /**
   * apply() in slices of about `sliceMs`, awaiting `pause()` in between. Safe to pause because
   * the slab is already appended: a reader that meets a written child by position in between
   * finds its bytes in the file.
   */
  applySliced(sliceMs: number, pause: () => Promise<void>): Promise<TreeNode[]>;
  /**
   * Empties the lists of staged nodes and values (the array `apply` returned among them), once
   * the caller is done with them. Nothing reaches them after the commit, but V8's scavenger also
   * counts pointers from dead objects in the old generation; measured in a sorted load, every
   * written leaf, with its keys and values, survived its first scavenge that way (half of all
   * allocation: 4.5 MB of 9 MB per scavenge; 0.23 MB with the lists emptied, bench/RESULTS.md
   * round 15).
   */
  release(): void;
}

export class SlabBuilder {
  private readonly plan: PlanWriter;
  /** Staged nodes and values with their entry indexes, for positions once encoded. */
  private nodes: TreeNode[] = [];
  private nodeEntries: number[] = [];
  private values: ValueRef[] = [];
  private valueEntries: number[] = [];
  private indexes: IndexNode[] = [];
  /** performance.now() at which a sliced build pauses; 0 while building in one go. */
  private pauseAt = 0;

  /** Builds in `ex`'s linear memory (PlanWriter: the core instance unless given another). */
  constructor(
    private readonly ex: CoreExports = core,
    memoryGrown?: () => void,
  ) {
    this.plan = new PlanWriter(ex, memoryGrown);
  }

  /**
   * Frees the plan's buffers in the process-wide linear memory (PlanWriter.dispose); for the
   * store's close. Safe to call twice; building (or reading a BuiltSlab's bytes) afterwards fails
   * an assertion.
   */
  dispose(): void {
    this.plan.dispose();
    this.dropStaged();
  }

  /** Starts new lists of staged nodes and values (a built slab keeps the old ones until release). */
  private dropStaged(): void {
    this.nodes = [];
    this.nodeEntries = [];
    this.values = [];
    this.valueEntries = [];
    this.indexes = [];
  }

  /** Builds the slab in one go (the tree's changed nodes are small, or there is no checkpoint). */
  build(input: SlabInput): BuiltSlab {
    const r = this.stage(input).next();
    assert(r.done === true, 'an unsliced build paused');
    return this.finish(input, r.value, this.plan.encode(input.start, COMMIT_ENTRY_BYTES));
  }

  /**
   * Builds the slab in slices of about `sliceMs`, awaiting `pause()` between them, so a big
   * checkpoint does not hold the event loop for seconds (staging 565k scattered keys and values
   * took 1.6–3.3 s, bench/RESULTS.md round 12). The caller must not change the tree meanwhile:
   * the store's writer is held by the commit; readers may run, and change nothing staging reads.
   */
  async buildSliced(input: SlabInput, sliceMs: number, pause: () => Promise<void>): Promise<BuiltSlab> {
    const staged = await this.stageSliced(input, sliceMs, pause);
    assert(staged !== null, 'a build stopped without being cancelled');
    return staged.encodeSliced(input, pause);
  }

  /**
   * Stages the slab in slices of about `sliceMs` (as buildSliced), without fixing its position:
   * the caller encodes it once it knows where it goes. `input`'s placement fields are not read.
   * Between slices, `cancelled()` is asked; when true, staging stops and this returns null. A
   * background checkpoint (db.ts) stages while later batches change the tree, which is safe
   * because they copy every node of the tree it stages instead of changing it.
   */
  async stageSliced(input: SlabInput, sliceMs: number, pause: () => Promise<void>, cancelled: () => boolean = () => false): Promise<StagedSlab | null> {
    const steps = this.stage(input);
    let rootRef: PlanRef | null;
    try {
      for (;;) {
        this.pauseAt = performance.now() + sliceMs;
        const r = steps.next();
        this.pauseAt = 0;
        if (r.done === true) {
          rootRef = r.value;
          break;
        }
        await pause();
        if (cancelled()) return null;
        this.plan.refresh(); // views on linear memory may have been detached meanwhile
      }
    } finally {
      this.pauseAt = 0;
    }
    return {
      encodeSliced: async (placement, pauseEncode) => {
        this.plan.refresh();
        const enc = await this.plan.encodeSliced(placement.start, COMMIT_ENTRY_BYTES, ENCODE_SLICE_BYTES, pauseEncode);
        return this.finish({ ...input, ...placement }, rootRef, enc);
      },
    };
  }

  /** Stages the actions (unless a checkpoint) and the changed nodes; returns the root's reference. */
  private *stage(input: SlabInput): Generator<void, PlanRef | null> {
    const plan = this.plan;
    plan.reset();
    this.dropStaged();
    // A checkpoint's tree already holds this commit's changes (and the tree walk writes their
    // values), so it logs no actions: replay starts after it anyway.
    const logged = input.checkpoint === null ? input.actions : [];
    let actionRefs: PlanRef[] | null = null;
    for (let i = 0; i < logged.length; i++) {
      const v = logged[i].val;
      if (v instanceof ValueRef) (actionRefs ??= [])[i] = this.stageValue(v);
    }
    plan.actions(logged, actionRefs);
    if (input.checkpoint === null || input.checkpoint.root === null) return null;
    return yield* this.stageChild(input.checkpoint.root);
  }

  private finish(input: SlabInput, rootRef: PlanRef | null, enc: EncodedSlab): BuiltSlab {
    const plan = this.plan;
    const start = input.start;
    let root: DiskRef | null = null;
    let rootKind: Kind.Leaf | Kind.Index = Kind.Leaf;
    const c = input.checkpoint?.root ?? null;
    if (c !== null && rootRef !== null) {
      if (c.t === T.Disk) root = c;
      else if (rootRef.inner) root = new DiskRef(start + plan.entryOffset(rootRef.at), plan.entryLength(rootRef.at));
      else root = new DiskRef(rootRef.at, rootRef.len);
      rootKind = c.t === T.Disk ? kindOfDiskRoot(input.prev) : c.t === T.Leaf ? Kind.Leaf : Kind.Index;
    }
    const commit = sealCommit(this.ex, { ...input, afterDurable: input.afterDurable ?? true }, enc, root === null ? null : { pos: root.pos, len: root.len, kind: rootKind });
    const off = enc.len;
    const nodes = this.nodes;
    const nodeEntries = this.nodeEntries;
    const values = this.values;
    const valueEntries = this.valueEntries;
    const indexes = this.indexes;
    const outPtr = enc.outPtr;
    const outLen = off + COMMIT_ENTRY_BYTES;
    const ex = this.ex;
    let applied = false;
    // Yields every 1,024 items once the slice's `sliceMs` are up (Infinity: never).
    function* applySteps(sliceMs: number): Generator<void, TreeNode[]> {
      assert(!applied, 'a slab applied twice');
      applied = true;
      let until = performance.now() + sliceMs;
      let work = 0;
      function* pauseIfDue(): Generator<void, void> {
        if ((++work & 1023) !== 0 || performance.now() < until) return;
        yield;
        until = performance.now() + sliceMs;
      }
      for (let i = 0; i < values.length; i++) {
        const v = values[i];
        v.pos = start + plan.entryOffset(valueEntries[i]);
        v.bytes = undefined;
        yield* pauseIfDue();
      }
      for (let i = 0; i < nodes.length; i++) {
        const n = nodes[i];
        const e = nodeEntries[i];
        n.pos = start + plan.entryOffset(e);
        n.len = plan.entryLength(e);
        yield* pauseIfDue();
      }
      // Parents now refer to written children by DiskRef.
      for (const node of indexes) {
        for (let i = 0; i < node.kids.length; i++) {
          const k = node.kids[i];
          if (k.t !== T.Disk) node.kids[i] = new DiskRef(k.pos, k.len);
        }
        yield* pauseIfDue();
      }
      return nodes;
    }
    return {
      bytes: () => {
        assert(!plan.disposed, "a slab's bytes read after its builder was disposed");
        return Buffer.from(ex.memory.buffer, outPtr, outLen);
      },
      len: outLen,
      commit,
      rootRef: root,
      apply: () => {
        plan.refresh();
        const r = applySteps(Infinity).next();
        assert(r.done === true, 'an unsliced apply paused');
        return r.value;
      },
      applySliced: async (sliceMs, pause) => {
        const steps = applySteps(sliceMs);
        for (;;) {
          plan.refresh(); // the row table is read through views on linear memory
          const r = steps.next();
          if (r.done === true) return r.value;
          await pause();
        }
      },
      release: () => {
        nodes.length = 0;
        nodeEntries.length = 0;
        values.length = 0;
        valueEntries.length = 0;
        indexes.length = 0;
      },
    };
  }

  /** Stages a pending value's Value entry; returns how a leaf or action refers to the value. */
  private stageValue(v: ValueRef): PlanRef {
    if (v.pos >= 0) return { inner: false, at: v.pos, len: v.len };
    const bytes = v.bytes;
    assert(bytes !== undefined && bytes.length === v.len, 'pending value without its bytes');
    const e = this.plan.value(bytes);
    this.values.push(v);
    this.valueEntries.push(e);
    return { inner: true, at: e, len: v.len };
  }

  /** Stages a changed node (children first); returns how its parent refers to it. */
  private *stageChild(c: Child): Generator<void, PlanRef> {
    if (c.t === T.Disk) return { inner: false, at: c.pos, len: c.len };
    if (c.pos >= 0) return { inner: false, at: c.pos, len: c.len };
    let e: number;
    if (c.t === T.Leaf) {
      e = this.stageLeaf(c);
      if (this.pauseAt !== 0 && performance.now() >= this.pauseAt) yield;
    } else {
      e = yield* this.stageIndex(c);
    }
    this.nodes.push(c);
    this.nodeEntries.push(e);
    return { inner: true, at: e, len: 0 };
  }

  private stageLeaf(leaf: LeafNode): number {
    const vals = leaf.vals;
    let refs: PlanRef[] | null = null;
    for (let i = 0; i < vals.length; i++) {
      const v = vals[i];
      if (v instanceof ValueRef) (refs ??= [])[i] = this.stageValue(v);
    }
    return this.plan.leaf(leaf.keys, vals, refs);
  }

  private *stageIndex(node: IndexNode): Generator<void, number> {
    const kids: PlanRef[] = new Array<PlanRef>(node.kids.length);
    for (let i = 0; i < node.kids.length; i++) {
      const c = node.kids[i];
      // Children already in the file (most of a big index node's) are referred to where they
      // are, without a generator: a sorted load restages the right edge's index nodes every
      // commit, and their generators were a tenth of what its writer allocated.
      kids[i] = c.t === T.Disk || c.pos >= 0 ? { inner: false, at: c.pos, len: c.len } : yield* this.stageChild(c);
    }
    this.indexes.push(node);
    return this.plan.index(node.keys, kids);
  }
}
