//! The Commit entry that ends every slab: its record (what the commit names, after which commit)
//! encoded after the slab's entries, with its checksum. Both slab builders end with it
//! (tree-slab.ts for the store; test/support/js-slab.ts for the JS reference).
import type { CoreExports } from '../wasm/module.js';
import { COMMIT_ENTRY_BYTES, encodeCommitBody, type CommitRecord } from './codec.js';
import { assert } from './errors.js';
import { ENTRY_HEADER_BYTES, Kind } from './format.js';
import type { EncodedSlab } from './plan.js';

/** What a Commit records about its slab (as slab inputs give it). */
export interface SealInput {
  /** Live keys after this commit; null: not known yet (the sets change the tree after the append). */
  keyCount: number | null;
  tag: number | undefined;
  prev: CommitRecord | null;
  /** File position the slab is appended at. */
  start: number;
  /** Whether every byte of the log before `start` is durable (CommitRecord.afterDurable). */
  afterDurable: boolean;
  /** Set for a checkpoint: its tree's key count, and the commit whose tree it is when an earlier one. */
  checkpoint: { keyCount: number; of?: CommitRecord } | null;
}

/** A checkpoint's root as its Commit names it: where the root's entry is, and its kind. */
export interface CommitRoot {
  pos: number;
  len: number;
  kind: Kind.Leaf | Kind.Index;
}

/** The root is unchanged and on disk: its kind is the previous commit's. */
export function kindOfDiskRoot(prev: CommitRecord | null): Kind.Leaf | Kind.Index {
  assert(prev !== null && prev.rootKind !== 0, 'a disk root without a previous commit');
  return prev.rootKind;
}

/**
 * Writes the Commit entry after a slab's encoded entries (`enc`, built in `ex`'s memory, with
 * COMMIT_ENTRY_BYTES of room left after them) and returns its record: the checkpoint's `root`
 * when the slab is one (null: an empty tree), else the tree the previous commit names.
 */
export function sealCommit(
  ex: CoreExports,
  input: SealInput,
  enc: EncodedSlab,
  root: CommitRoot | null,
): CommitRecord {
  const prev = input.prev;
  // One CommitRecord literal with every field, no spreads: object spread here measured ~7 µs
  // per durable commit (bench/RESULTS.md round 9), on a CPU just back from an fdatasync.
  const commitPos = input.start + enc.len;
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
    afterDurable: input.afterDurable,
    slabStart: input.start,
    slabCrc: enc.slabCrc,
    treeSeq: 0,
    treeCommitPos: 0,
    treeKeyCount: 0,
  };
  if (input.checkpoint !== null) {
    if (root !== null) {
      commit.rootKind = root.kind;
      commit.rootPos = root.pos;
      commit.rootLen = root.len;
    }
    const of = input.checkpoint.of;
    commit.treeSeq = of === undefined ? commit.seq : of.seq;
    commit.treeCommitPos = of === undefined ? commitPos : of.pos;
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
  out.writeUInt32LE(ex.crc32c(enc.outPtr + off + 4, COMMIT_ENTRY_BYTES - 4) >>> 0, off);
  return commit;
}
