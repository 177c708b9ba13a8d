//! Building a slab: the new entries of one commit, written with one append.
//!
//! Every slab: the commit's new Value entries, its Actions entry, then the Commit. A checkpoint
//! slab also walks the dirty part of the tree (nodes with pos -1) children first, so every
//! reference is encoded as its final Outer position: leaves, then indexes up to the root. Only
//! nodes reachable from the root are visited, so copies made and replaced since the previous
//! checkpoint are never written: that is Baardskeerder's slab compaction (§A.7), done exactly
//! instead of by its one-pass approximation, and across many commits instead of one.
//! Checksums are computed last, over the finished bytes in WebAssembly memory: each entry's CRC,
//! then the slab CRC over those entry CRCs in order (each covers its entry; checksumming the bytes
//! twice cost 5% of a bulk load), which the Commit carries.
import { core, scratch } from '../wasm/module.js';
import { ByteWriter, encodeActionsBody, encodeCommitBody, encodeIndexBody, encodeLeafBody, type Action, type CommitRecord } from './codec.js';
import { assert } from './errors.js';
import { ENTRY_HEADER_BYTES, Kind } from './format.js';
import { DiskRef, IndexNode, LeafNode, T, ValueRef, type Child, type TreeNode } from './node.js';

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
  private readonly w = new ByteWriter(1 << 20);
  private entryOffsets: number[] = [];
  private written: TreeNode[] = [];
  private start = 0;
  private undoValues: Array<ValueRef | Buffer> = [];
  private undoKids: Array<IndexNode | Child[]> = [];

  build(input: SlabInput): BuiltSlab {
    this.w.off = 0;
    this.entryOffsets = [];
    this.written = [];
    this.undoValues = [];
    this.undoKids = [];
    this.start = input.start;
    // A checkpoint's tree already holds this commit's changes (and the tree walk writes their
    // values), so it logs no actions: replay starts after it anyway.
    const logged = input.checkpoint === null ? input.actions : [];
    for (const a of logged) if (a.val instanceof ValueRef && a.val.pos < 0) this.writeValue(a.val);
    const aoff = this.beginEntry();
    encodeActionsBody(this.w, logged);
    this.endEntry(aoff, Kind.Actions);

    const prev = input.prev;
    const seq = (prev?.seq ?? 0) + 1;
    let rootRef: DiskRef | null = null;
    let tree: Pick<CommitRecord, 'rootKind' | 'rootPos' | 'rootLen' | 'treeSeq' | 'treeCommitPos' | 'treeKeyCount'>;
    if (input.checkpoint !== null) {
      const root = input.checkpoint.root;
      let rootKind: CommitRecord['rootKind'] = 0;
      if (root !== null) {
        rootRef = this.writeChild(root);
        rootKind = root.t === T.Disk ? this.kindOfDiskRoot(prev) : root.t === T.Leaf ? Kind.Leaf : Kind.Index;
      }
      tree = {
        rootKind, rootPos: rootRef?.pos ?? 0, rootLen: rootRef?.len ?? 0,
        treeSeq: seq, treeCommitPos: -1, treeKeyCount: input.checkpoint.keyCount,
      };
    } else {
      tree = prev === null
        ? { rootKind: 0, rootPos: 0, rootLen: 0, treeSeq: 0, treeCommitPos: 0, treeKeyCount: 0 }
        : { rootKind: prev.rootKind, rootPos: prev.rootPos, rootLen: prev.rootLen, treeSeq: prev.treeSeq, treeCommitPos: prev.treeCommitPos, treeKeyCount: prev.treeKeyCount };
    }
    // Entry CRCs, computed in linear memory, then the slab CRC over them.
    const bodyEnd = this.w.off;
    const offsets = this.entryOffsets;
    const { ptr, view } = scratch(bodyEnd + 4 * offsets.length);
    view.set(this.w.buf.subarray(0, bodyEnd), 0);
    const crcs = bodyEnd; // the entry CRCs, back to back, after the copied slab
    for (let i = 0; i < offsets.length; i++) {
      const off = offsets[i];
      const bodyLen = this.w.buf.readUInt32LE(off + 4);
      const c = core.crc32c(ptr + off + 4, 5 + bodyLen) >>> 0;
      this.w.buf.writeUInt32LE(c, off);
      const at = crcs + 4 * i;
      view[at] = c & 0xff;
      view[at + 1] = (c >>> 8) & 0xff;
      view[at + 2] = (c >>> 16) & 0xff;
      view[at + 3] = c >>> 24;
    }
    const slabCrc = core.crc32c(ptr + crcs, 4 * offsets.length) >>> 0;
    const commitPos = this.start + bodyEnd;
    if (tree.treeCommitPos === -1) tree.treeCommitPos = commitPos;
    const commitFields = {
      seq,
      ...tree,
      prevCommitPos: prev?.pos ?? 0,
      tag: input.tag,
      keyCount: input.keyCount,
      slabStart: this.start,
      slabCrc,
    };
    const off = this.beginEntry();
    encodeCommitBody(this.w, commitFields);
    this.endEntry(off, Kind.Commit);
    const commitLen = this.w.off - off;
    const { ptr: p2, view: v2 } = scratch(commitLen);
    v2.set(this.w.buf.subarray(off, off + commitLen), 0);
    this.w.buf.writeUInt32LE(core.crc32c(p2 + 4, commitLen - 4) >>> 0, off);
    const written = this.written;
    const undoValues = this.undoValues;
    const undoKids = this.undoKids;
    return {
      bytes: this.w.buf,
      len: this.w.off,
      commit: { ...commitFields, pos: commitPos, len: commitLen },
      written,
      rootRef,
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

  private writeValue(v: ValueRef): void {
    const bytes = v.bytes;
    assert(bytes !== undefined && bytes.length === v.len, 'pending value without its bytes');
    const off = this.beginEntry();
    this.w.ensure(bytes.length);
    this.w.bytes(bytes);
    this.endEntry(off, Kind.Value);
    this.undoValues.push(v, bytes);
    v.pos = this.start + off;
    v.bytes = undefined;
  }

  /** The root is unchanged and on disk: its kind is the previous commit's. */
  private kindOfDiskRoot(prev: CommitRecord | null): CommitRecord['rootKind'] {
    assert(prev !== null && prev.rootKind !== 0, 'a disk root without a previous commit');
    return prev.rootKind;
  }

  private beginEntry(): number {
    this.w.ensure(ENTRY_HEADER_BYTES);
    const off = this.w.off;
    this.w.off += ENTRY_HEADER_BYTES;
    return off;
  }

  private endEntry(off: number, kind: Kind): void {
    const bodyLen = this.w.off - off - ENTRY_HEADER_BYTES;
    this.w.buf.writeUInt32LE(bodyLen, off + 4);
    this.w.buf[off + 8] = kind;
    if (kind !== Kind.Commit) this.entryOffsets.push(off);
  }

  private writeChild(c: Child): DiskRef {
    if (c.t === T.Disk) return c;
    if (c.pos >= 0) return new DiskRef(c.pos, c.len);
    if (c.t === T.Leaf) this.writeLeaf(c);
    else this.writeIndex(c);
    return new DiskRef(c.pos, c.len);
  }

  private writeLeaf(leaf: LeafNode): void {
    for (const v of leaf.vals) if (v instanceof ValueRef && v.pos < 0) this.writeValue(v);
    const off = this.beginEntry();
    encodeLeafBody(this.w, leaf);
    this.endEntry(off, Kind.Leaf);
    leaf.pos = this.start + off;
    leaf.len = this.w.off - off;
    this.written.push(leaf);
  }

  private writeIndex(node: IndexNode): void {
    this.undoKids.push(node, node.kids.slice());
    for (let i = 0; i < node.kids.length; i++) node.kids[i] = this.writeChild(node.kids[i]);
    const off = this.beginEntry();
    encodeIndexBody(this.w, node, (c) => c as DiskRef);
    this.endEntry(off, Kind.Index);
    node.pos = this.start + off;
    node.len = this.w.off - off;
    this.written.push(node);
  }
}
