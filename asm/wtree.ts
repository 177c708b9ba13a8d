// The writer's tree in linear memory: one call puts a key, copying on write and splitting on the
// way; references held on dirty nodes decide what may change in place and what is freed.
//
// Owns: the put over a tree whose nodes are clean (in the cache, asm/cache.ts, by file position)
// or dirty (the dirty region: leaves asm/wleaf.ts, index nodes asm/windex.ts), and the reference
// counts of dirty nodes (pre-header 16, wleaf.ts).
// Must never: change a node another tree can reach, free a node a tree can still reach, or leave a
// put half made: everything that can fail (a node missing from the cache, a full region) is found
// before the first change.
//
// References: every record of a dirty index node that points at a dirty child, and every root the
// caller holds (wtreeRetain), is one reference. A put changes a node in place only if it is dirty
// and has one reference: then, since its parent was also changed in place or is a fresh copy, no
// other tree reaches it. Otherwise it copies the node, the copy's dirty children gain a reference
// (two parents now point at each), and the original loses the one that moved to the copy. This is
// what the JS writer's generations do (src/engine/tree.ts): a snapshot, cursor or savepoint holds
// a reference on its root, so the next put copies the path it takes. wtreeRelease drops a
// reference, freeing a node (and dropping its children's) when none is left.
//
// Splits and merges follow the JS writer's choices (tree.ts splitLeaf, splitIndex, rebalance), so
// both build the same shapes from the same puts and deletes (test/wasm-tree.test.ts compares
// them): a leaf past `maxNodeBytes` (estimate, wleaf.ts) with more than one key splits, at the
// end after an append, right after the key set in an ascending run (the leaf's last insert,
// pre-header 24), after the first key after an insert at the front, else by bytes; the separator
// is the shortest key between the halves. An index node past it with more than three children
// splits by the same rule over its separators, which one moves up.
//
// A written node (its header holds the position a checkpoint wrote it at, asm/slab.ts) is never
// changed in place, whatever its count: it is copied as a shared one is, so its entry in the file
// stays what it holds until asm/wcheckpoint.ts hands it to the cache.
import { HEADER_BYTES, KIND_INDEX, KIND_LEAF, cachedNode, probeAddress, resultAddress } from './cache';
import { commonPrefix } from './node';
import { dirtyCanAlloc, dirtyCanAllocNeeds, dirtyNeedsReset } from './dirty';
import { NEEDS_REBUILD, NODE_OVERHEAD_BYTES, PRE, SET_INSERTED, SET_OVERWRITTEN_UNDOABLE, SET_REPLACED, allocNode, build, buildConcat, needCopyOf, recAt, recKey, recKeyLen, recEstimate, wleafFree, wleafRemove, wleafSearchAt, wleafSet, wleafSplit, wleafUndoOverwrite, wleafUndoReplace, wleafUndoReset } from './wleaf';
import { widxChildSlot, widxInsert, widxNewRoot, widxRemove, widxSetChild, widxSplit } from './windex';

/** The deepest tree a change descends (PUT_TOO_DEEP past it); asm/wcheckpoint.ts walks no deeper. */
export const MAX_DEPTH: i32 = 32;
/** Per level of a change's path: u32 node, u32 1 if dirty, u32 slot (leaf: search result, then index). */
const PATH = memory.data(MAX_DEPTH * 12);
/** A separator copied out of a node about to change (a merge's). */
const SEP = memory.data(65536 + 8);

/** Results of wtreePut, wtreeDelete, wtreePutInPlace and wtreeSeal. */
const PUT_DONE: i32 = 0;
const DEL_NOT_FOUND: i32 = 1;
const PUT_MISS: i32 = 3;
const PUT_CHILD_NOT_OLDER: i32 = 4;
const PUT_NEEDS_SEAL: i32 = 5;
const PUT_NO_MEMORY: i32 = -2;
const PUT_TOO_DEEP: i32 = -3;
/**
 * Room a rebuilt node gets at least beyond what it holds, so the next change or two fit in place;
 * its block, a power of two, usually leaves more. (1024 put most leaves of the default 4 KiB
 * node limit in 8 KiB blocks: bench/RESULTS.md round 30.)
 */
const SLACK_BYTES: u32 = 256;

/**
 * A node allocated after the room for it was checked (dirtyCanAlloc): none is a broken invariant,
 * which stops here (a trap) rather than leave a change half made.
 */
// @ts-ignore: decorator
@inline function checked(n: usize): usize {
  if (n == 0) unreachable();
  return n;
}

// @ts-ignore: decorator
@inline function refs(n: usize): u32 {
  return load<u32>(n - PRE, 16);
}
// @ts-ignore: decorator
@inline function setRefs(n: usize, v: u32): void {
  store<u32>(n - PRE, v, 16);
}
// @ts-ignore: decorator
@inline function lastInsert(n: usize): i32 {
  return load<i32>(n - PRE, 24);
}
// @ts-ignore: decorator
@inline function setLastInsert(n: usize, v: i32): void {
  store<i32>(n - PRE, v, 24);
}
/** Whether a dirty node has been written by a checkpoint (header 8: its position; -1 before). */
// @ts-ignore: decorator
@inline export function written(n: usize): bool {
  return load<f64>(n, 8) >= 0;
}
// @ts-ignore: decorator
@inline function estimate(n: usize): u32 {
  return load<u32>(n - PRE, 8);
}

/** Holds one more reference on a dirty node (a root kept: a snapshot, a cursor, a savepoint). */
export function wtreeRetain(n: usize): void {
  setRefs(n, refs(n) + 1);
}

/** Drops a reference; a node left with none is freed, and drops one on each dirty child. */
export function wtreeRelease(n: usize): void {
  const r = refs(n);
  if (r == 0) unreachable(); // released more often than held
  if (r > 1) {
    setRefs(n, r - 1);
    return;
  }
  if (load<u32>(n, 4) == KIND_INDEX) {
    const count = load<u32>(n, 16);
    for (let i: u32 = 0; i < count; i++) {
      const rec = recAt(n, i);
      if (load<f64>(rec, 8) < 0) wtreeRelease(<usize>load<u32>(rec, 16));
    }
  }
  // Marked dead first: a node still reached after this reads as neither kind, and a second
  // release of it traps (an assertion that stays on: release builds drop assert()).
  setRefs(n, 0);
  store<u32>(n, 0, 4);
  if (!wleafFree(n)) unreachable();
}

/** A writable copy of `n` (dirty or cached): one reference, its dirty children one more each. */
function copyOf(n: usize, extra: u32): usize {
  const c = build(n, 0, load<u32>(n, 16), false, 0, 0, extra);
  if (c == 0) return 0;
  if (load<u32>(c, 4) == KIND_INDEX) {
    const count = load<u32>(c, 16);
    for (let i: u32 = 0; i < count; i++) {
      const rec = recAt(c, i);
      if (load<f64>(rec, 8) < 0) wtreeRetain(<usize>load<u32>(rec, 16));
    }
  }
  return c;
}

/** Points level `k`'s referrer (its parent's record, or the root) at `n`. */
function repoint(k: i32, n: usize): void {
  store<u32>(PATH + <usize>k * 12, <u32>n);
  if (k > 0) {
    const parent = <usize>load<u32>(PATH + <usize>(k - 1) * 12);
    widxSetChild(parent, load<u32>(PATH + <usize>(k - 1) * 12, 8), -1, 0, <u32>n);
  }
}

/** Why descend() stopped (its result -1): PUT_MISS, PUT_CHILD_NOT_OLDER or PUT_TOO_DEEP. */
let descentError: i32 = 0;
/** The most a node on the last descent's path (and, with siblings, a merge of two) takes. */
let pathMost: u64 = 0;

/**
 * Pass 1 of every change: fills PATH from the root (the dirty node `rootAddr`, else the clean one
 * at `rootPos`) down to the leaf for the key at `keyPtr`, changing nothing. A leaf's slot is its
 * search result ((index << 1) | found). With `siblings`, the sibling a merge would take at each
 * level must be at hand too. Returns the leaf's depth, or -1 with `descentError` and RESULT set
 * as wtreePut documents (a node to load first, a hostile file, a path too deep).
 */
function descend(rootAddr: u32, rootPos: f64, rootLen: u32, keyPtr: usize, keyLen: u32, siblings: bool): i32 {
  const result = resultAddress();
  let depth: i32 = 0;
  let dirty = rootAddr != 0;
  let addr = <usize>rootAddr;
  let pos = rootPos;
  let len = rootLen;
  pathMost = 0;
  for (;;) {
    if (depth == MAX_DEPTH) {
      descentError = PUT_TOO_DEEP;
      return -1;
    }
    let node = addr;
    if (!dirty) {
      node = cachedNode(pos);
      if (node == 0) {
        store<f64>(result, pos);
        store<u32>(result, len, 8);
        descentError = PUT_MISS;
        return -1;
      }
    }
    const at = PATH + <usize>depth * 12;
    store<u32>(at, <u32>node);
    store<u32>(at, dirty ? 1 : 0, 4);
    if (<u64>load<u32>(node) > pathMost) pathMost = <u64>load<u32>(node);
    if (load<u32>(node, 4) == KIND_LEAF) {
      store<u32>(at, <u32>wleafSearchAt(node, keyPtr, keyLen), 8);
      return depth;
    }
    const slot = widxChildSlot(node, keyPtr, keyLen);
    store<u32>(at, slot, 8);
    if (siblings && load<u32>(node, 16) > 1) {
      const sib = recAt(node, slot > 0 ? slot - 1 : slot + 1);
      const sibling = childNode(sib);
      if (sibling == 0) {
        store<f64>(result, load<f64>(sib, 8));
        store<u32>(result, load<u32>(sib, 4), 8);
        descentError = PUT_MISS;
        return -1;
      }
      if (<u64>load<u32>(sibling) * 2 > pathMost) pathMost = <u64>load<u32>(sibling) * 2;
    }
    const rec = recAt(node, slot);
    const childPos = load<f64>(rec, 8);
    if (childPos < 0) {
      dirty = true;
      addr = <usize>load<u32>(rec, 16);
    } else {
      if (!dirty && childPos >= pos) {
        store<f64>(result, pos);
        store<f64>(result, childPos, 8);
        descentError = PUT_CHILD_NOT_OLDER;
        return -1;
      }
      dirty = false;
      pos = childPos;
      len = load<u32>(rec, 4);
    }
    depth++;
  }
  return unreachable();
}

/** Makes every node on PATH[0..depth] writable, from the root down (room checked by the caller). */
function makeWritable(depth: i32): void {
  for (let k: i32 = 0; k <= depth; k++) {
    const at = PATH + <usize>k * 12;
    const node = <usize>load<u32>(at);
    const isDirty = load<u32>(at, 4) != 0;
    if (isDirty && refs(node) == 1 && !written(node)) continue;
    const c = checked(copyOf(node, SLACK_BYTES));
    // Its referrer now points at the copy: a shared node has one reference fewer, a written one
    // with no other goes (its dirty children keep the references the copy took on them).
    if (isDirty) wtreeRelease(node);
    repoint(k, c);
  }
}

/**
 * JS tree.ts splitLeaf's split point for a leaf of `count` keys, `at` the key just set: at the
 * end after an append; right after it in an ascending run of inserts (each right after the one
 * before), so a run into the middle of a leaf leaves it full; after the first key after an insert
 * at the front; else by bytes.
 */
function leafSplitAt(n: usize, count: u32, at: u32, ascendingRun: bool): u32 {
  if (at == count - 1) return count - 1;
  if (ascendingRun && at > 0) return at + 1;
  if (at == 0) return 1;
  return splitPointByBytes(n);
}

/**
 * Inserts separator (`keyPtr`, `keyLen`) and dirty child `right` after slot `slot` of level
 * `k`'s node (writable), rebuilding it if it must.
 */
function insertUp(k: i32, slot: u32, keyPtr: usize, keyLen: u32, right: usize): void {
  const n = <usize>load<u32>(PATH + <usize>k * 12);
  if (widxInsert(n, slot + 1, keyPtr, keyLen, -1, 0, <u32>right) == NEEDS_REBUILD) {
    widxInsert(rebuildAt(k, keyPtr, keyLen, 0), slot + 1, keyPtr, keyLen, -1, 0, <u32>right);
  }
}

/**
 * Level `k`'s node (writable: the path holds its only reference) repacked into a new block with
 * room for the `keyLen`-byte key at `keyPtr` and `extraBytes` more, its referrer pointed at it and
 * the old block freed. It is the same node repacked, so it keeps where its last insert went
 * (tree.ts keeps the one object; a rebuild that forgot split a run's leaf by bytes instead).
 */
function rebuildAt(k: i32, keyPtr: usize, keyLen: u32, extraBytes: u32): usize {
  const n = <usize>load<u32>(PATH + <usize>k * 12);
  const m = checked(build(n, 0, load<u32>(n, 16), true, keyPtr, keyLen, keyLen + extraBytes + 32 + SLACK_BYTES));
  setLastInsert(m, lastInsert(n));
  wleafFree(n);
  repoint(k, m);
  return m;
}

/**
 * Sets the key at PROBE (`probeLen` bytes) to a value (as wleafSet: inline `valLen` bytes at
 * `valPtr`, or `ref` 1, a Value entry at `refPos`) in the tree whose root is the dirty node
 * `rootAddr`, or else the clean node at `rootPos` (entry length `rootLen`), or else (`rootPos` 0)
 * empty. The caller's reference on the root moves to the root the put returns. Results:
 * - PUT_DONE: RESULT u32 at 0 the new root (dirty), u32 at 4 1 if the key is new;
 * - PUT_MISS: a clean node on the path is not in the cache (RESULT f64 at 0 its position, u32 at
 *   8 its entry length, as find()): load it, then put again;
 * - PUT_CHILD_NOT_OLDER: a clean index node's child is not before it (RESULT f64 at 0 the
 *   parent, at 8 the child), as find();
 * - PUT_NO_MEMORY, PUT_TOO_DEEP.
 * Nothing changes unless the result is PUT_DONE.
 */
export function wtreePut(rootAddr: u32, rootPos: f64, rootLen: u32, probeLen: u32, valPtr: usize, valLen: u32, ref: u32, refPos: f64, maxNodeBytes: u32): i32 {
  const result = resultAddress();
  const probe = probeAddress();
  const valBytes: u32 = ref != 0 ? 0 : valLen; // what the value takes in its leaf
  if (rootAddr == 0 && !(rootPos > 0)) {
    // An empty tree: a new leaf holding the key.
    const leaf = allocNode(KIND_LEAF, HEADER_BYTES + SLACK_BYTES + probeLen + valBytes + 64);
    if (leaf == 0) return PUT_NO_MEMORY;
    wleafSet(leaf, probeLen, valPtr, valLen, ref, refPos, 0);
    store<u32>(result, <u32>leaf);
    store<u32>(result, 1, 4);
    return PUT_DONE;
  }
  const depth = descend(rootAddr, rootPos, rootLen, probe, probeLen, false);
  if (depth < 0) return descentError;
  const leafSlotAt = PATH + <usize>depth * 12 + 8;
  store<u32>(leafSlotAt, load<u32>(leafSlotAt) >>> 1);
  const most = pathMost;
  // Room for the worst case before the first change: on every level a copy, a rebuild and a
  // split's right half, and a new root. Each is at most a path node's size plus the new item and
  // slack (records take up to twice their estimate, so a node past the limit is bounded too).
  const grown = <u64>4 * (<u64>maxNodeBytes + probeLen + valBytes + 64);
  const nodeBytesMost = (most > grown ? most : grown) + <u64>probeLen + valBytes + 2 * <u64>SLACK_BYTES + 4096;
  if (nodeBytesMost > 0xffff_ffff || !dirtyCanAlloc(<u32>nodeBytesMost, 3 * <u32>(depth + 1) + 1)) return PUT_NO_MEMORY;

  // Pass 2: every node on the path writable, from the root down.
  makeWritable(depth);

  // Pass 3: the leaf.
  const leafAt = PATH + <usize>depth * 12;
  let leaf = <usize>load<u32>(leafAt);
  let r = wleafSet(leaf, probeLen, valPtr, valLen, ref, refPos, 0);
  if (r == NEEDS_REBUILD) {
    leaf = rebuildAt(depth, probe, probeLen, valBytes);
    r = wleafSet(leaf, probeLen, valPtr, valLen, ref, refPos, 0);
  }
  const inserted: u32 = r == SET_INSERTED ? 1 : 0;
  let setAt = load<u32>(result, 4);
  // tree.ts: every set in a leaf the writer may change notes where it went.
  const ascendingRun = <i32>setAt == lastInsert(leaf) + 1;
  setLastInsert(leaf, <i32>setAt);

  // Pass 4: splits, from the leaf up.
  let k = depth;
  let n = leaf;
  for (;;) {
    const count = load<u32>(n, 16);
    const isLeaf = load<u32>(n, 4) == KIND_LEAF;
    if (estimate(n) <= maxNodeBytes || count <= (isLeaf ? <u32>1 : <u32>3)) break;
    let right: usize;
    let sepPtr: usize;
    let sepLen: u32;
    if (isLeaf) {
      const mid = leafSplitAt(n, count, setAt, ascendingRun);
      right = checked(wleafSplit(n, mid, SLACK_BYTES));
      if (setAt >= mid) setLastInsert(right, <i32>(setAt - mid));
      // The shortest separator: the right half's first key, cut after its first byte that
      // differs from the left half's last key (tree.ts shortestSeparator).
      const a = recAt(n, load<u32>(n, 16) - 1);
      const b = recAt(right, 0);
      sepPtr = recKey(b, KIND_LEAF);
      sepLen = commonPrefix(recKey(a, KIND_LEAF), recKeyLen(a), sepPtr, recKeyLen(b)) + 1;
    } else {
      // tree.ts splitIndex over separators 0..nk-1 (entries 1..count-1): m, then entry m + 1 moves up.
      const nk = count - 1;
      const i = setAt; // the separator inserted below: entry setAt + 1, separator index setAt
      const m = i >= nk - 1 ? nk - 1 : i == 0 ? 1 : nk >>> 1;
      right = checked(widxSplit(n, m + 1, SLACK_BYTES));
      sepPtr = <usize>load<u32>(result);
      sepLen = load<u32>(result, 4);
    }
    if (k == 0) {
      store<u32>(PATH, <u32>checked(widxNewRoot(n, sepPtr, sepLen, right, SLACK_BYTES)));
      break;
    }
    const parentAt = PATH + <usize>(k - 1) * 12;
    const slot = load<u32>(parentAt, 8);
    insertUp(k - 1, slot, sepPtr, sepLen, right);
    setAt = slot;
    k--;
    n = <usize>load<u32>(parentAt);
  }
  store<u32>(result, load<u32>(PATH));
  store<u32>(result, inserted, 4);
  return PUT_DONE;
}

/**
 * A node's size estimate (wleaf.ts): a dirty node keeps it in its pre-header; a clean one (in the
 * cache's ring) has no pre-header, so it is summed over its records.
 */
function estimateOf(n: usize, dirty: bool): u32 {
  if (dirty) return estimate(n);
  const kind = load<u32>(n, 4);
  const count = load<u32>(n, 16);
  let e = NODE_OVERHEAD_BYTES;
  for (let i: u32 = 0; i < count; i++) e += recEstimate(recAt(n, i), kind);
  return e;
}

/** tree.ts underfull: a node to merge with a sibling. */
function underfull(n: usize, maxNodeBytes: u32): bool {
  const count = load<u32>(n, 16);
  if (load<u32>(n, 4) == KIND_LEAF) return count == 0 || estimate(n) < maxNodeBytes >>> 2;
  return count < 2 || estimate(n) < maxNodeBytes >>> 2;
}

/** tree.ts splitPointByBytes over a leaf's items. */
function splitPointByBytes(n: usize): u32 {
  const count = load<u32>(n, 16);
  const total = estimate(n) - 16;
  let acc: u32 = 0;
  for (let i: u32 = 0; i + 1 < count; i++) {
    acc += recEstimate(recAt(n, i), KIND_LEAF);
    if (acc * 2 >= total) return i + 1;
  }
  return count - 1;
}

/** The node a child record points at: dirty by address, clean through the cache (0 if not there). */
function childNode(rec: usize): usize {
  const pos = load<f64>(rec, 8);
  return pos < 0 ? <usize>load<u32>(rec, 16) : cachedNode(pos);
}

/** Drops the reference a record held, if its child is dirty. */
function releaseChild(rec: usize): void {
  if (load<f64>(rec, 8) < 0) wtreeRelease(<usize>load<u32>(rec, 16));
}

/**
 * tree.ts rebalance: child `i` of the writable node at level `k` (itself writable, one level
 * down) merges with a sibling when it became underfull, and the merge splits again if too big.
 */
function rebalance(k: i32, maxNodeBytes: u32): void {
  let parent = <usize>load<u32>(PATH + <usize>k * 12);
  const i = load<u32>(PATH + <usize>k * 12, 8);
  const child = <usize>load<u32>(PATH + <usize>(k + 1) * 12);
  if (!underfull(child, maxNodeBytes) || load<u32>(parent, 16) < 2) return;
  const a: u32 = i > 0 ? i - 1 : i;
  const leftRec = recAt(parent, a);
  const rightRec = recAt(parent, a + 1);
  const left = a == i ? child : childNode(leftRec);
  const right = a == i ? childNode(rightRec) : child;
  const sepLen = recKeyLen(rightRec);
  memory.copy(SEP, recKey(rightRec, KIND_INDEX), sepLen);
  const merged = checked(buildConcat(left, right, SEP, sepLen, SLACK_BYTES));
  const index = load<u32>(merged, 4) == KIND_INDEX;
  if (index) {
    const count = load<u32>(merged, 16);
    for (let j: u32 = 0; j < count; j++) {
      const rec = recAt(merged, j);
      if (load<f64>(rec, 8) < 0) wtreeRetain(<usize>load<u32>(rec, 16));
    }
  }
  // The old pair loses the parent's two references (a dirty sibling may live on elsewhere).
  releaseChild(leftRec);
  releaseChild(rightRec);
  const count = load<u32>(merged, 16);
  widxSetChild(parent, a, -1, 0, <u32>merged);
  widxRemove(parent, a + 1);
  const fewest: u32 = index ? 4 : 2; // tree.ts: fewer and it stays one node however big
  if (estimate(merged) <= maxNodeBytes || count < fewest) return;
  // Too big merged: split again and put the new separator back between the halves.
  let right2: usize;
  let sepPtr: usize;
  let sep2: u32;
  if (!index) {
    right2 = checked(wleafSplit(merged, splitPointByBytes(merged), SLACK_BYTES));
    const l = recAt(merged, load<u32>(merged, 16) - 1);
    const r = recAt(right2, 0);
    sepPtr = recKey(r, KIND_LEAF);
    sep2 = commonPrefix(recKey(l, KIND_LEAF), recKeyLen(l), sepPtr, recKeyLen(r)) + 1;
  } else {
    const m = (count - 1) >>> 1;
    right2 = checked(widxSplit(merged, m + 1, SLACK_BYTES));
    sepPtr = <usize>load<u32>(resultAddress());
    sep2 = load<u32>(resultAddress(), 4);
  }
  insertUp(k, a, sepPtr, sep2, right2);
}

/**
 * Deletes the key at PROBE (`probeLen` bytes) from the tree (root as wtreePut). The caller's
 * reference on the root moves to the root returned. Results:
 * - PUT_DONE: RESULT u32 at 0 the new root if dirty (0 otherwise), f64 at 8 its position if it
 *   is clean (0: the tree is empty), u32 at 4 that position's entry length;
 * - DEL_NOT_FOUND: the key is not there, nothing changed;
 * - PUT_MISS, PUT_CHILD_NOT_OLDER, PUT_NO_MEMORY, PUT_TOO_DEEP as wtreePut. Nothing changes
 *   unless the result is PUT_DONE.
 */
export function wtreeDelete(rootAddr: u32, rootPos: f64, rootLen: u32, probeLen: u32, maxNodeBytes: u32): i32 {
  const result = resultAddress();
  const probe = probeAddress();
  if (rootAddr == 0 && !(rootPos > 0)) return DEL_NOT_FOUND;
  // Pass 1: the path, and each level's sibling a merge would take, changing nothing.
  const depth = descend(rootAddr, rootPos, rootLen, probe, probeLen, true);
  if (depth < 0) return descentError;
  const leafSlotAt = PATH + <usize>depth * 12 + 8;
  const found = load<u32>(leafSlotAt);
  if ((found & 1) == 0) return DEL_NOT_FOUND;
  store<u32>(leafSlotAt, found >>> 1);
  const most = pathMost;
  const nodeBytesMost = 2 * most + 2 * <u64>SLACK_BYTES + 4096;
  if (nodeBytesMost > 0xffff_ffff || !dirtyCanAlloc(<u32>nodeBytesMost, 3 * <u32>(depth + 1) + 1)) return PUT_NO_MEMORY;

  makeWritable(depth);
  wleafRemove(<usize>load<u32>(PATH + <usize>depth * 12), load<u32>(PATH + <usize>depth * 12, 8));
  for (let k = depth - 1; k >= 0; k--) rebalance(k, maxNodeBytes);

  // The root: an index node left with one child gives way to it; an empty leaf leaves no tree.
  let root = <usize>load<u32>(PATH);
  store<u32>(result, 0);
  store<u32>(result, 0, 4);
  store<f64>(result, 0, 8);
  for (;;) {
    if (load<u32>(root, 4) == KIND_LEAF) {
      if (load<u32>(root, 16) == 0) {
        wtreeRelease(root);
        return PUT_DONE;
      }
      break;
    }
    if (load<u32>(root, 16) != 1) break;
    const rec = recAt(root, 0);
    const childPos = load<f64>(rec, 8);
    if (childPos >= 0) {
      // A clean child: the tree's root is on disk again.
      store<f64>(result, childPos, 8);
      store<u32>(result, load<u32>(rec, 4), 4);
      wtreeRelease(root);
      return PUT_DONE;
    }
    const child = <usize>load<u32>(rec, 16);
    wtreeRetain(child); // the caller's reference, taken before the root's goes
    wtreeRelease(root);
    root = child;
  }
  store<u32>(result, <u32>root);
  return PUT_DONE;
}

// --- in-place batches -------------------------------------------------------------------------
//
// tree.ts in-place mode: a batch changes the published tree's own nodes in place instead of
// copying them, journaling each change, so that the batch can be undone (abort), or the
// published contents given back to readers while the batch keeps its changes (seal). Here the
// published tree's own nodes are those with one reference on a path from its root, which the
// batch shares without holding one of its own. wtreePutInPlace does only what can be undone:
// a leaf set that fits (wleafSet, undoable), and copying a clean or shared node below such a
// path, re-pointing its parent's record (the old child keeps the record's reference until the
// journal settles). Anything else (a split, a rebuild of a shared leaf, a shared or clean root,
// a full journal) returns PUT_NEEDS_SEAL before changing anything: the caller seals and goes on
// copying on write, as the JS writer does.
//
// Journal entry (JOURNAL_ENTRY bytes): 0 u32 node, 4 u32 slot, 8 u32 what (a wleafSet result, or
// J_REPOINT), 12 u32 at (where wleafSet kept the old value), 16 u32 key offset in JKEYS, 20 u32
// key length (the key the change was made for: seal() copies its path), 24 f64 the old child's
// position, 32 u32 its entry length, 36 u32 its address (J_REPOINT).
const J_REPOINT: u32 = 100;
const JOURNAL_ENTRY: usize = 40;
const JOURNAL_MAX: u32 = 4096;
const JKEYS_BYTES: u32 = 256 * 1024;
const JOURNAL = memory.data(<i32>(JOURNAL_ENTRY * <usize>JOURNAL_MAX));
const JKEYS = memory.data(<i32>JKEYS_BYTES);
let journaled: u32 = 0;
let jkeysUsed: u32 = 0;

function journal(node: usize, slot: u32, what: u32, at: u32, keyOff: u32, keyLen: u32): usize {
  const e = JOURNAL + <usize>journaled * JOURNAL_ENTRY;
  journaled++;
  store<u32>(e, <u32>node);
  store<u32>(e, slot, 4);
  store<u32>(e, what, 8);
  store<u32>(e, at, 12);
  store<u32>(e, keyOff, 16);
  store<u32>(e, keyLen, 20);
  return e;
}

/** Changes the journal holds (0: none to undo or settle). */
export function wtreeJournaled(): u32 {
  return journaled;
}

/**
 * wtreePut on the published tree's own nodes, changed in place and journaled (see above). The
 * root must be dirty (`rootAddr`). Results: PUT_DONE (RESULT u32 at 0: 1 if the key is new; the
 * root is unchanged), PUT_NEEDS_SEAL (nothing changed), or as wtreePut.
 */
export function wtreePutInPlace(rootAddr: u32, probeLen: u32, valPtr: usize, valLen: u32, ref: u32, refPos: f64, maxNodeBytes: u32): i32 {
  const result = resultAddress();
  const probe = probeAddress();
  if (rootAddr == 0 || refs(<usize>rootAddr) != 1 || written(<usize>rootAddr)) return PUT_NEEDS_SEAL;
  const depth = descend(rootAddr, 0, 0, probe, probeLen, false);
  if (depth < 0) return descentError;
  if (journaled + <u32>depth + 1 > JOURNAL_MAX || jkeysUsed + probeLen > JKEYS_BYTES) return PUT_NEEDS_SEAL;
  // No split: the leaf must stay within the limit (tree.ts: one slot, within maxNodeBytes).
  const leafAt = PATH + <usize>depth * 12;
  const leaf0 = <usize>load<u32>(leafAt);
  const r0 = load<u32>(leafAt, 8);
  const i = r0 >>> 1;
  const found = (r0 & 1) != 0;
  const item = probeLen + 2 + (ref != 0 ? 12 : valLen + 3);
  const est = <u64>estimateOf(leaf0, load<u32>(leafAt, 4) != 0) + item - (found ? recEstimate(recAt(leaf0, i), KIND_LEAF) : 0);
  const count = load<u32>(leaf0, 16) + (found ? 0 : 1);
  if (est > <u64>maxNodeBytes && count > 1) return PUT_NEEDS_SEAL;
  const valBytes: u32 = ref != 0 ? 0 : valLen;
  const nodeBytesMost = pathMost + <u64>probeLen + valBytes + 2 * <u64>SLACK_BYTES + 4096;
  if (nodeBytesMost > 0xffff_ffff || !dirtyCanAlloc(<u32>nodeBytesMost, <u32>depth + 2)) return PUT_NO_MEMORY;
  // The published tree's own nodes: from the root down, while dirty with one reference.
  let own: i32 = 0;
  while (own <= depth) {
    const at = PATH + <usize>own * 12;
    if (load<u32>(at, 4) == 0 || refs(<usize>load<u32>(at)) != 1 || written(<usize>load<u32>(at))) break;
    own++;
  }
  if (own > depth) {
    // The leaf is the published tree's: an undoable set, or nothing.
    const rs = wleafSet(leaf0, probeLen, valPtr, valLen, ref, refPos, 1);
    if (rs < 0) return PUT_NEEDS_SEAL;
    const keyOff = jkeysUsed;
    memory.copy(JKEYS + keyOff, probe, probeLen);
    jkeysUsed += probeLen;
    journal(leaf0, load<u32>(result, 4), <u32>rs, load<u32>(result), keyOff, probeLen);
    if (rs == SET_INSERTED) setLastInsert(leaf0, <i32>load<u32>(result, 4)); // tree.ts: not journaled
    store<u32>(result, rs == SET_INSERTED ? 1 : 0);
    return PUT_DONE;
  }
  const keyOff = jkeysUsed;
  memory.copy(JKEYS + keyOff, probe, probeLen);
  jkeysUsed += probeLen;
  // Below the published tree's own nodes, copies: the first one's parent record is journaled
  // (it keeps its reference on the old child), the rest are the batch's own.
  for (let k = own; k <= depth; k++) {
    const at = PATH + <usize>k * 12;
    const node = <usize>load<u32>(at);
    const isDirty = load<u32>(at, 4) != 0;
    const c = checked(copyOf(node, SLACK_BYTES));
    if (k == own) {
      const parent = <usize>load<u32>(PATH + <usize>(k - 1) * 12);
      const slot = load<u32>(PATH + <usize>(k - 1) * 12, 8);
      const old = recAt(parent, slot);
      const e = journal(parent, slot, J_REPOINT, 0, keyOff, probeLen);
      store<f64>(e, load<f64>(old, 8), 24);
      store<u32>(e, load<u32>(old, 4), 32);
      store<u32>(e, load<u32>(old, 16), 36);
    } else if (isDirty) {
      setRefs(node, refs(node) - 1); // its parent is a copy, which points at the copy now
    }
    store<u32>(at, <u32>c);
    widxSetChild(<usize>load<u32>(PATH + <usize>(k - 1) * 12), load<u32>(PATH + <usize>(k - 1) * 12, 8), -1, 0, <u32>c);
  }
  let leaf = <usize>load<u32>(leafAt);
  let rs = wleafSet(leaf, probeLen, valPtr, valLen, ref, refPos, 0);
  if (rs < 0) {
    leaf = rebuildAt(depth, probe, probeLen, valBytes); // the batch's own copy
    rs = wleafSet(leaf, probeLen, valPtr, valLen, ref, refPos, 0);
  }
  setLastInsert(leaf, <i32>load<u32>(result, 4));
  store<u32>(result, rs == SET_INSERTED ? 1 : 0);
  return PUT_DONE;
}

/** Undoes the journal, newest first: the published tree's nodes get their contents back. */
export function wtreeUndo(): void {
  while (journaled > 0) {
    journaled--;
    const e = JOURNAL + <usize>journaled * JOURNAL_ENTRY;
    const node = <usize>load<u32>(e);
    const slot = load<u32>(e, 4);
    const what = load<u32>(e, 8);
    if (what == J_REPOINT) {
      const rec = recAt(node, slot);
      const copy = <usize>load<u32>(rec, 16);
      widxSetChild(node, slot, load<f64>(e, 24), load<u32>(e, 32), load<u32>(e, 36));
      wtreeRelease(copy);
    } else if (<i32>what == SET_INSERTED) wleafRemove(node, slot);
    else if (<i32>what == SET_REPLACED) wleafUndoReplace(node, slot, load<u32>(e, 12));
    else if (<i32>what == SET_OVERWRITTEN_UNDOABLE) wleafUndoOverwrite(node, slot, load<u32>(e, 12));
  }
  jkeysUsed = 0;
  wleafUndoReset();
}

/** The batch is published: its changes stand, and the children its copies replaced lose the published tree's reference. */
export function wtreeSettle(): void {
  for (let j: u32 = 0; j < journaled; j++) {
    const e = JOURNAL + <usize>j * JOURNAL_ENTRY;
    if (load<u32>(e, 8) == J_REPOINT && load<f64>(e, 24) < 0) wtreeRelease(<usize>load<u32>(e, 36));
  }
  journaled = 0;
  jkeysUsed = 0;
  wleafUndoReset();
}

/**
 * Ends in-place changes (tree.ts seal): the batch gets a tree of its own holding them, every
 * journaled path copied into it, and the published tree's nodes get their contents back. Returns
 * PUT_DONE (RESULT u32 at 0 the batch's root, one reference, the batch's) or PUT_NO_MEMORY
 * (nothing changed). `rootAddr`: the published root (dirty), whose reference stays the published
 * tree's.
 */
/** Marks the nodes wtreeSeal counted (pre-header 28 of a dirty node holds the last seal's stamp). */
let sealStamp: u32 = 0;

export function wtreeSeal(rootAddr: u32): i32 {
  const result = resultAddress();
  if (journaled == 0) {
    wtreeRetain(<usize>rootAddr);
    store<u32>(result, rootAddr);
    return PUT_DONE;
  }
  // Room for a copy of every node on the journaled paths: each node counted once (a batch's
  // changes share most of their index nodes, and often their leaves), stamped as it is counted
  // (pre-header 28), in the block its copy (copyOf in makeWritable) will take. Counting
  // journaled × depth asked a 2,000-set batch for ~200 MiB of room; counting every copy in the
  // biggest node's block, 4-8 times what the copies take.
  sealStamp++;
  dirtyNeedsReset();
  for (let j: u32 = 0; j < journaled; j++) {
    const e = JOURNAL + <usize>j * JOURNAL_ENTRY;
    const depth = descend(rootAddr, 0, 0, JKEYS + <usize>load<u32>(e, 16), load<u32>(e, 20), false);
    if (depth < 0) unreachable(); // every node on a journaled path is dirty
    for (let d: i32 = 0; d <= depth; d++) {
      const n = <usize>load<u32>(PATH + <usize>d * 12);
      if (load<u32>(n - PRE, 28) == sealStamp) continue;
      store<u32>(n - PRE, sealStamp, 28);
      if (!needCopyOf(n, SLACK_BYTES)) return PUT_NO_MEMORY;
    }
  }
  if (!dirtyCanAllocNeeds()) return PUT_NO_MEMORY;
  wtreeRetain(<usize>rootAddr); // the batch's reference, which the first copy of the root takes over
  let root = rootAddr;
  for (let j: u32 = 0; j < journaled; j++) {
    const e = JOURNAL + <usize>j * JOURNAL_ENTRY;
    const depth = descend(root, 0, 0, JKEYS + <usize>load<u32>(e, 16), load<u32>(e, 20), false);
    if (depth < 0) unreachable(); // every node on a journaled path is dirty
    makeWritable(depth);
    root = load<u32>(PATH);
  }
  wtreeUndo();
  store<u32>(result, root);
  return PUT_DONE;
}

/**
 * Staged sets (wtreePutStaged): records written by the caller one after another, each
 *   u32 keyLen @0 | u32 valLen @4 | u32 ref @8 (1: a Value entry at refPos) | u32 0 @12 |
 *   f64 refPos @16 | key (keyLen bytes) @24 | inline value (valLen bytes, none if ref)
 * padded to a multiple of 8 bytes (src/engine/staged-sets.ts writes them).
 */
const STAGED_HEADER_BYTES: u32 = 24;
/** Where wtreePutStaged stopped (the offset of the first record not made), new keys among those made, and the root after them. */
let stagedAt: u32 = 0;
let stagedInserted: u32 = 0;
let stagedRoot: u32 = 0;

export function wtreeStagedAt(): u32 {
  return stagedAt;
}
export function wtreeStagedInserted(): u32 {
  return stagedInserted;
}
export function wtreeStagedRoot(): u32 {
  return stagedRoot;
}

/**
 * Makes the staged sets at [`at`, `end`) of `staged`, in order, as wtreePut (`inPlace` 0, on the
 * tree at `rootAddr` / `rootPos` / `rootLen`) or wtreePutInPlace (`inPlace` 1, on the published
 * tree at `rootAddr`) would one by one: one call for a group of sets instead of one a set. Stops
 * at the first set that does not return PUT_DONE, with nothing of that set changed, and returns
 * its result (RESULT as that put left it); PUT_DONE once all are made. Either way wtreeStagedAt()
 * is the offset of the first set not made, wtreeStagedInserted() how many of those made were new
 * keys, and (`inPlace` 0) wtreeStagedRoot() the root after them, holding the caller's reference
 * (`rootAddr` as given when none was made).
 */
export function wtreePutStaged(rootAddr: u32, rootPos: f64, rootLen: u32, inPlace: u32, staged: usize, at: u32, end: u32, maxNodeBytes: u32): i32 {
  const result = resultAddress();
  const probe = probeAddress();
  let root = rootAddr;
  let pos = rootPos;
  let len = rootLen;
  let inserted: u32 = 0;
  let r: i32 = PUT_DONE;
  while (at < end) {
    const rec = staged + <usize>at;
    const keyLen = load<u32>(rec);
    const valLen = load<u32>(rec, 4);
    const ref = load<u32>(rec, 8);
    const refPos = load<f64>(rec, 16);
    memory.copy(probe, rec + STAGED_HEADER_BYTES, keyLen);
    const valPtr = rec + STAGED_HEADER_BYTES + <usize>keyLen;
    if (inPlace != 0) {
      r = wtreePutInPlace(root, keyLen, valPtr, valLen, ref, refPos, maxNodeBytes);
      if (r != PUT_DONE) break;
      inserted += load<u32>(result);
    } else {
      r = wtreePut(root, pos, len, keyLen, valPtr, valLen, ref, refPos, maxNodeBytes);
      if (r != PUT_DONE) break;
      root = load<u32>(result);
      pos = 0;
      len = 0;
      inserted += load<u32>(result, 4);
    }
    at += (STAGED_HEADER_BYTES + keyLen + (ref != 0 ? 0 : valLen) + 7) & ~7;
  }
  stagedAt = at;
  stagedInserted = inserted;
  stagedRoot = root;
  return r;
}
