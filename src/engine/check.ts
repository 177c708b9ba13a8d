//! The structural checker (bbolt's tx_check, style.md §2): part of the product, used by tests after
//! every commit and by `solifuge inspect`.
//!
//! Verifies, straight from disk (never through the cache): every slab from the first to the last
//! commit (entry CRCs, slab CRC, back links, sequence numbers) and the last checkpointed tree:
//! every node's checksum and kind, every child written before its parent, keys strictly ascending
//! inside nodes and within the bounds their parents set, all leaves at one depth, every Value
//! entry's length and checksum, and the key count the commit records. Then the live tree
//! (checkpoint plus the commits replayed on top, partly in memory) for the same order and shape
//! rules and the last commit's key count. Problems come back as data; it throws only for I/O errors.
import type { CommitRecord } from './codec.js';
import { readNode } from './cache.js';
import { readEntry } from './entry.js';
import { DATA_START_POS, ENTRY_HEADER_BYTES, Kind } from './format.js';
import type { FileLog } from './log-file.js';
import { DiskRef, T, ValueRef, type Child, type TreeNode } from './node.js';
import { scanSlab } from './recovery.js';

/** Loads (from a cache or the file) the node an on-disk reference points at. */
export interface NodeSource {
  load(ref: DiskRef): TreeNode;
}

export interface CheckReport {
  ok: boolean;
  problems: string[];
  slabs: number;
  keys: number;
  depth: number;
  leaves: number;
  indexes: number;
  valueEntries: number;
  /** Bytes reachable from the last commit's root (nodes and value entries). */
  liveBytes: number;
  fileBytes: number;
}

const PROBLEMS_MAX = 100;

/**
 * `liveCount`: the store's count of live keys. The live tree must hold that many, and so many as
 * the last commit records when it records a count (a version-2 commit does not, codec.ts).
 */
export function checkStore(log: FileLog, last: CommitRecord | null, src: NodeSource, liveRoot: Child | null, liveCount: number, liveStart: number): CheckReport {
  const r: CheckReport = {
    ok: true, problems: [], slabs: 0, keys: 0, depth: 0, leaves: 0, indexes: 0, valueEntries: 0, liveBytes: 0, fileBytes: log.end,
  };
  const problem = (p: string) => {
    r.ok = false;
    if (r.problems.length < PROBLEMS_MAX) r.problems.push(p);
  };

  // 1. Every slab still in use, in order (online compaction reclaimed [DATA_START_POS, liveStart)).
  let pos = liveStart;
  let prev: CommitRecord | null | 'reclaimed' = liveStart > DATA_START_POS ? 'reclaimed' : null;
  const lastEnd = last === null ? DATA_START_POS : last.pos + last.len;
  while (pos < lastEnd) {
    const s = scanSlab(log, pos, prev);
    if (!s.ok) {
      problem(`slab at ${pos}: ${s.reason} (offset ${s.badPos})`);
      break;
    }
    r.slabs++;
    prev = s.commit;
    pos = s.end;
  }
  if (r.ok && pos !== lastEnd) problem(`slabs end at ${pos}, the last commit ends at ${lastEnd}`);
  if (r.ok && last !== null && (prev === null || prev === 'reclaimed' || prev.pos !== last.pos)) problem('the slab chain does not end at the last commit');

  // 2. The checkpointed tree, straight from disk, then the live tree (checkpoint + replayed
  //    commits, partly in memory) for order, shape and the key count.
  if (last === null) return r;
  if (last.rootKind === 0) {
    if (last.treeKeyCount !== 0) problem(`empty checkpoint but the commit counts ${last.treeKeyCount} keys in it`);
  } else {
    if (last.rootKind !== Kind.Leaf && last.rootKind !== Kind.Index) problem(`bad root kind ${last.rootKind}`);
    const disk = walkTree(new DiskRef(last.rootPos, last.rootLen), (ref) => readNode(log, ref.pos, ref.len), problem, (v) => {
      r.valueEntries++;
      try {
        readEntry(log, v.pos, ENTRY_HEADER_BYTES + v.len, Kind.Value);
        r.liveBytes += ENTRY_HEADER_BYTES + v.len;
      } catch (err) {
        problem(`value at ${v.pos}: ${(err as Error).message}`);
      }
    });
    r.leaves = disk.leaves;
    r.indexes = disk.indexes;
    r.liveBytes += disk.nodeBytes;
    if (disk.keys !== last.treeKeyCount) problem(`the checkpointed tree holds ${disk.keys} keys, the commit counts ${last.treeKeyCount}`);
  }
  if (liveRoot !== null || last.keyCount !== 0 || liveCount !== 0) {
    const live = liveRoot === null ? { keys: 0, depth: 0 } : walkTree(liveRoot, (ref) => src.load(ref), problem, () => undefined);
    r.keys = live.keys;
    r.depth = live.depth;
    if (last.keyCount !== null && live.keys !== last.keyCount) problem(`the live tree holds ${live.keys} keys, the last commit counts ${last.keyCount}`);
    if (live.keys !== liveCount) problem(`the live tree holds ${live.keys} keys, the store counts ${liveCount}`);
  }
  return r;
}

interface WalkResult {
  keys: number;
  depth: number;
  leaves: number;
  indexes: number;
  nodeBytes: number;
}

/** Walks a tree checking order, bounds, uniform depth and non-empty leaves. */
function walkTree(
  root: Child,
  load: (ref: DiskRef) => TreeNode,
  problem: (p: string) => void,
  onValueRef: (v: ValueRef) => void,
): WalkResult {
  const res: WalkResult = { keys: 0, depth: -1, leaves: 0, indexes: 0, nodeBytes: 0 };
  const walk = (c: Child, low: string | undefined, high: string | undefined, depth: number): void => {
    let node: TreeNode;
    if (c.t === T.Disk) {
      try {
        node = load(c);
      } catch (err) {
        problem(`node at ${c.pos}: ${(err as Error).message}`);
        return;
      }
      res.nodeBytes += c.len;
    } else node = c;
    const where = node.pos >= 0 ? `node at ${node.pos}` : 'node in memory';
    const keys = node.keys;
    for (let i = 0; i < keys.length; i++) {
      if (i > 0 && !(keys[i - 1] < keys[i])) problem(`${where}: keys out of order at ${i}`);
      if (low !== undefined && keys[i] < low) problem(`${where}: key ${i} below its parent's bound`);
      if (high !== undefined && keys[i] >= high) problem(`${where}: key ${i} not below its parent's bound`);
    }
    if (node.t === T.Leaf) {
      res.leaves++;
      if (res.depth === -1) res.depth = depth;
      else if (res.depth !== depth) problem(`${where}: leaf at depth ${depth}, others at ${res.depth}`);
      if (keys.length === 0) problem(`${where}: empty leaf`);
      res.keys += keys.length;
      for (const v of node.vals) if (v instanceof ValueRef && v.pos >= 0) onValueRef(v);
      return;
    }
    res.indexes++;
    if (node.kids.length < 1 || node.kids.length !== keys.length + 1) problem(`${where}: ${node.kids.length} children for ${keys.length} separators`);
    for (let i = 0; i < node.kids.length; i++) {
      const kid = node.kids[i];
      // Children are written before their parents. One that is not could be the node itself or
      // an ancestor (errors.ts childNotOlder): reported, and not followed, so the walk ends.
      if (node.pos >= 0 && kid.pos >= node.pos) {
        problem(`node at ${kid.pos} is not older than its parent at ${node.pos} (child ${i}; not followed)`);
        continue;
      }
      walk(kid, i === 0 ? low : keys[i - 1], i === keys.length ? high : keys[i], depth + 1);
    }
  };
  walk(root, undefined, undefined, 1);
  return res;
}
