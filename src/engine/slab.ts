//! Building a slab: the new entries of one commit, written with one append.
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
//! itself (fixed layout, codec.ts) is written last, after the encoded entries.
import type { Buffer } from 'node:buffer';
import { core } from '../wasm/module.js';
import { COMMIT_ENTRY_BYTES, encodeCommitBody, type Action, type CommitRecord } from './codec.js';
import { assert } from './errors.js';
import { ENTRY_HEADER_BYTES, Kind } from './format.js';
import { DiskRef, IndexNode, LeafNode, T, ValueRef, type Child, type TreeNode } from './node.js';
import { PlanWriter, type PlanRef } from './plan.js';

export interface SlabInput {
  /** This commit's changes (at most one per key). */
  actions: readonly Action[];
  /** Live keys after this commit. */
  keyCount: number;
  tag: number | undefined;
  prev: CommitRecord | null;
  /** File position the slab will be appended at. */
  start: number;
  /** When set, the slab also carries the tree's changed nodes and becomes a checkpoint. */
  checkpoint: { root: Child | null; keyCount: number } | null;
}

export interface BuiltSlab {
  /**
   * The slab, a view on the core instance's linear memory: valid until the next build, or
   * anything else that allocates there. Append it and hand its nodes to the caches first.
   */
  bytes: Buffer;
  len: number;
  commit: CommitRecord;
  /** Nodes that now have positions, for the cache. */
  written: TreeNode[];
  /** The checkpointed root (when this slab is a checkpoint). */
  rootRef: DiskRef | null;
  /**
   * Undoes what building did to shared objects (positions, values' bytes, children swapped for
   * DiskRefs), for when the append fails: the published tree shares those objects and must keep
   * pointing at bytes that exist (in memory), not at a slab that was never written.
   */
  rollback(): void;
}

export class SlabBuilder {
  private readonly plan = new PlanWriter();
  /** Staged nodes and values with their entry indexes, for positions once encoded. */
  private nodes: TreeNode[] = [];
  private nodeEntries: number[] = [];
  private values: ValueRef[] = [];
  private valueEntries: number[] = [];
  private indexes: IndexNode[] = [];

  build(input: SlabInput): BuiltSlab {
    const plan = this.plan;
    plan.reset();
    this.nodes = [];
    this.nodeEntries = [];
    this.values = [];
    this.valueEntries = [];
    this.indexes = [];
    // A checkpoint's tree already holds this commit's changes (and the tree walk writes their
    // values), so it logs no actions: replay starts after it anyway.
    const logged = input.checkpoint === null ? input.actions : [];
    let actionRefs: PlanRef[] | null = null;
    for (let i = 0; i < logged.length; i++) {
      const v = logged[i].val;
      if (v instanceof ValueRef) (actionRefs ??= [])[i] = this.stageValue(v);
    }
    plan.actions(logged, actionRefs);

    let rootRef: PlanRef | null = null;
    if (input.checkpoint !== null && input.checkpoint.root !== null) rootRef = this.stageChild(input.checkpoint.root);

    const prev = input.prev;
    const start = input.start;
    const enc = plan.encode(start, COMMIT_ENTRY_BYTES);
    // Positions for everything written; parents now refer to written children by DiskRef.
    const undoValues: Array<ValueRef | Buffer> = [];
    const undoKids: Array<IndexNode | Child[]> = [];
    for (let i = 0; i < this.values.length; i++) {
      const v = this.values[i];
      undoValues.push(v, v.bytes as Buffer);
      v.pos = start + plan.entryOffset(this.valueEntries[i]);
      v.bytes = undefined;
    }
    for (let i = 0; i < this.nodes.length; i++) {
      const n = this.nodes[i];
      const e = this.nodeEntries[i];
      n.pos = start + plan.entryOffset(e);
      n.len = plan.entryLength(e);
    }
    for (const node of this.indexes) {
      undoKids.push(node, node.kids.slice());
      for (let i = 0; i < node.kids.length; i++) {
        const k = node.kids[i];
        if (k.t !== T.Disk) node.kids[i] = new DiskRef(k.pos, k.len);
      }
    }

    // One CommitRecord literal with every field, no spreads: object spread here measured ~7 µs
    // per durable commit (bench/RESULTS.md round 9), on a CPU just back from an fdatasync.
    const commitPos = start + enc.len;
    const commit: CommitRecord = {
      pos: commitPos,
      len: COMMIT_ENTRY_BYTES,
      seq: (prev?.seq ?? 0) + 1,
      rootKind: 0,
      rootPos: 0,
      rootLen: 0,
      prevCommitPos: prev?.pos ?? 0,
      tag: input.tag,
      keyCount: input.keyCount,
      slabStart: start,
      slabCrc: enc.slabCrc,
      treeSeq: 0,
      treeCommitPos: 0,
      treeKeyCount: 0,
    };
    let root: DiskRef | null = null;
    if (input.checkpoint !== null) {
      const c = input.checkpoint.root;
      if (c !== null && rootRef !== null) {
        root = c.t === T.Disk ? c : new DiskRef(c.pos, c.len);
        commit.rootKind = c.t === T.Disk ? this.kindOfDiskRoot(prev) : c.t === T.Leaf ? Kind.Leaf : Kind.Index;
        commit.rootPos = root.pos;
        commit.rootLen = root.len;
      }
      commit.treeSeq = commit.seq;
      commit.treeCommitPos = commitPos;
      commit.treeKeyCount = input.checkpoint.keyCount;
    } else if (prev !== null) {
      commit.rootKind = prev.rootKind;
      commit.rootPos = prev.rootPos;
      commit.rootLen = prev.rootLen;
      commit.treeSeq = prev.treeSeq;
      commit.treeCommitPos = prev.treeCommitPos;
      commit.treeKeyCount = prev.treeKeyCount;
    }
    const out = enc.out;
    const off = enc.len;
    encodeCommitBody(out, off + ENTRY_HEADER_BYTES, commit);
    out.writeUInt32LE(COMMIT_ENTRY_BYTES - ENTRY_HEADER_BYTES, off + 4);
    out[off + 8] = Kind.Commit;
    out.writeUInt32LE(core.crc32c(enc.outPtr + off + 4, COMMIT_ENTRY_BYTES - 4) >>> 0, off);
    const written = this.nodes;
    return {
      bytes: out,
      len: off + COMMIT_ENTRY_BYTES,
      commit,
      written,
      rootRef: root,
      rollback: () => {
        for (const n of written) {
          n.pos = -1;
          n.len = 0;
        }
        for (let i = 0; i < undoValues.length; i += 2) {
          const v = undoValues[i] as ValueRef;
          v.pos = -1;
          v.bytes = undoValues[i + 1] as Buffer;
        }
        for (let i = 0; i < undoKids.length; i += 2) (undoKids[i] as IndexNode).kids = undoKids[i + 1] as Child[];
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

  /** The root is unchanged and on disk: its kind is the previous commit's. */
  private kindOfDiskRoot(prev: CommitRecord | null): CommitRecord['rootKind'] {
    assert(prev !== null && prev.rootKind !== 0, 'a disk root without a previous commit');
    return prev.rootKind;
  }

  /** Stages a changed node (children first); returns how its parent refers to it. */
  private stageChild(c: Child): PlanRef {
    if (c.t === T.Disk) return { inner: false, at: c.pos, len: c.len };
    if (c.pos >= 0) return { inner: false, at: c.pos, len: c.len };
    const e = c.t === T.Leaf ? this.stageLeaf(c) : this.stageIndex(c);
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

  private stageIndex(node: IndexNode): number {
    const kids = node.kids.map((k) => this.stageChild(k));
    this.indexes.push(node);
    return this.plan.index(node.keys, kids);
  }
}
