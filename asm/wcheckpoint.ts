// Writing the writer's tree: the plan of its dirty nodes for a checkpoint's slab, and, once that
// slab is in the file, handing the nodes it wrote to the cache.
//
// Owns: which dirty nodes a checkpoint writes, and the moment a written node stops being dirty.
// A checkpoint (src/engine, step 5 of bench/RESULTS.md round 25) runs in three calls:
//   1. wtreePlan(root, …) appends a Node record (asm/slab.ts) for every dirty node the tree reaches
//      by address, children before parents; the caller adds its other records and encodes the plan
//      (slabEncode in this instance), which gives each node its position and entry length.
//   2a. After the slab is appended: wtreeWritten(published root) replaces, in every dirty node that
//      tree reaches, each record pointing at a written node by that node's position, copying the
//      node into the cache (asm/cache.ts adopt) and dropping the record's reference on it.
//   2b. If the slab is not appended (an error, a crash of the encode): wtreePlanAbandon(plan) takes
//      the positions back, so the nodes count as unwritten again.
// Invariant: a dirty node holds a position in its header only between its encode and one of 2a or
// 2b. A node with a position is never changed in place (asm/wtree.ts copies it), so the entry the
// file holds at that position is what it holds; 2a therefore changes how a tree refers to a node,
// never what the tree holds, and may do so in nodes that other trees (snapshots) share.
// The plan's Node records name every unwritten dirty node reachable by address. A written node is
// reachable by address only from a tree other than the one 2a switched (a later tree that shares
// it); after 2b none has a position, so a node named again is one whose earlier write did not
// reach the file.
import { KIND_INDEX, adopt, bumpTreeEpoch, resultAddress } from './cache';
import { PLAN_NODE, PLAN_NODE_BYTES } from './slab';
import { recAt } from './wleaf';
import { widxSetChild } from './windex';
import { MAX_DEPTH, wtreeRelease, written } from './wtree';

let planAt: usize = 0;
let planEnd: usize = 0;
let planFull = false;

function planNodes(n: usize, depth: i32): void {
  if (depth >= MAX_DEPTH) unreachable(); // a tree the writer built is never this deep
  // Written by an earlier checkpoint of another tree that shares it (the store's checkpoint of an
  // earlier commit's tree, written beside later batches): its entry, and its children's, are in
  // the file, and its parent's encode reads the position from its header.
  if (written(n)) return;
  if (load<u32>(n, 4) == KIND_INDEX) {
    const count = load<u32>(n, 16);
    for (let i: u32 = 0; i < count && !planFull; i++) {
      const rec = recAt(n, i);
      if (load<f64>(rec, 8) < 0) planNodes(<usize>load<u32>(rec, 16), depth + 1);
    }
  }
  if (planAt + PLAN_NODE_BYTES > planEnd) {
    planFull = true;
    return;
  }
  store<u8>(planAt, <u8>PLAN_NODE);
  store<u32>(planAt + 1, <u32>n);
  planAt += PLAN_NODE_BYTES;
}

/**
 * Writes a Node record for every dirty node reachable by address from the dirty node `root`,
 * children first, at `plan` (`planCap` bytes). Returns the bytes written (5 per node), or -1 when
 * they do not fit (nothing usable is written: call again with more room).
 */
export function wtreePlan(root: usize, plan: usize, planCap: u32): i32 {
  planAt = plan;
  planEnd = plan + <usize>planCap;
  planFull = false;
  planNodes(root, 0);
  return planFull ? -1 : <i32>(planAt - plan);
}

/**
 * After a failed append: every Node record of the plan at `plan` (`planLen` bytes: the records
 * wtreePlan wrote) gets its node's position taken back (-1), so nothing treats it as written.
 * The caller still holds the planned root then, so every node named is alive.
 */
export function wtreePlanAbandon(plan: usize, planLen: u32): void {
  for (let p = plan; p + PLAN_NODE_BYTES <= plan + <usize>planLen; p += PLAN_NODE_BYTES) {
    if (<u32>load<u8>(p) != PLAN_NODE) unreachable(); // not what wtreePlan wrote
    const n = <usize>load<u32>(p + 1);
    store<f64>(n, -1, 8);
    store<u32>(n, 0, 20);
  }
}

/**
 * 2a in slices: the walk below the root is kept here between calls (wtreeWrittenStart, then
 * wtreeWrittenStep until it returns 0), so a big switch need not hold the JS thread in one piece
 * (330 ms after a 1M-key random load in one call: bench/RESULTS.md round 27). Between steps the
 * tree may be read (each record switched names the same node, by position instead of address) but
 * not changed, and no other switch may start; the caller's reference on the root keeps every node
 * on the walk's stack alive. Per level of the stack: u32 index node, u32 the record being visited.
 */
const WALK = memory.data(MAX_DEPTH * 8);
let walkRoot: usize = 0;
let walkDepth: i32 = -1;
/** Bytes a visited record counts against a step's budget (a switched node counts its entry length). */
const RECORD_COST: u32 = 16;

/** Starts switching the tree whose root is the dirty node `root` (2a; see wtreeWrittenStep). */
export function wtreeWrittenStart(root: usize): void {
  walkRoot = root;
  walkDepth = -1;
  if (load<u32>(root, 4) == KIND_INDEX) {
    walkDepth = 0;
    store<u32>(WALK, <u32>root);
    store<u32>(WALK, 0, 4);
  }
}

/**
 * Switches records below the root, children first, until about `budgetBytes` of nodes were
 * switched (and records visited); returns 1 while more remain. The last step switches the root
 * and returns 0, with RESULT as wtreeWritten says (the caller's reference on the root moves to it).
 */
export function wtreeWrittenStep(budgetBytes: u32): i32 {
  bumpTreeEpoch(); // written nodes are released below: cursors holding their addresses find them again
  let spent: u32 = 0;
  while (walkDepth >= 0) {
    if (spent >= budgetBytes) return 1;
    const level = WALK + (<usize>walkDepth << 3);
    const n = <usize>load<u32>(level);
    const i = load<u32>(level, 4);
    if (i >= load<u32>(n, 16)) {
      // Every record of `n` done: back in its parent, the record that led here is switched.
      walkDepth--;
      if (walkDepth >= 0) {
        const up = WALK + (<usize>walkDepth << 3);
        const j = load<u32>(up, 4);
        spent += switchRecord(<usize>load<u32>(up), j);
        store<u32>(up, j + 1, 4);
      }
      continue;
    }
    spent += RECORD_COST;
    const rec = recAt(n, i);
    if (load<f64>(rec, 8) < 0) {
      const child = <usize>load<u32>(rec, 16);
      // Children first: a written index node's own written children go to the cache before the
      // node is released (which would free them unseen).
      if (load<u32>(child, 4) == KIND_INDEX) {
        if (walkDepth + 1 >= MAX_DEPTH) unreachable();
        walkDepth++;
        const down = WALK + (<usize>walkDepth << 3);
        store<u32>(down, <u32>child);
        store<u32>(down, 0, 4);
        continue;
      }
      spent += switchRecord(n, i);
    }
    store<u32>(level, i + 1, 4);
  }
  const root = walkRoot;
  const result = resultAddress();
  store<u32>(result, <u32>root);
  store<u32>(result, 0, 4);
  store<f64>(result, 0, 8);
  if (written(root)) {
    adopt(root);
    store<u32>(result, 0);
    store<u32>(result, load<u32>(root, 20), 4);
    store<f64>(result, load<f64>(root, 8), 8);
    wtreeRelease(root);
  }
  walkRoot = 0;
  return 0;
}

/**
 * Record `i` of the dirty index node `n`, pointing at a dirty node by address: if that node was
 * written, the record points at its position instead, and the node goes to the cache. Returns the
 * node's entry length if it was switched, else 0.
 */
function switchRecord(n: usize, i: u32): u32 {
  const child = <usize>load<u32>(recAt(n, i), 16);
  if (!written(child)) return 0;
  const len = load<u32>(child, 20);
  // The cache's copy spares the next visit a read; if the ring cannot take it (a node over half
  // its size), the next visit reads it from the file like any other clean node.
  adopt(child);
  widxSetChild(n, i, load<f64>(child, 8), len, 0);
  wtreeRelease(child);
  return len;
}

/**
 * 2a above, for the tree whose root is the dirty node `root`, in one call (the caller's reference
 * on it moves to the root returned). RESULT: u32 at 0 the root if it is still dirty, else 0 with
 * f64 at 8 its position and u32 at 4 its entry length (the root itself was written: the tree is
 * clean now).
 */
export function wtreeWritten(root: usize): void {
  wtreeWrittenStart(root);
  wtreeWrittenStep(u32.MAX_VALUE);
}
