// The writer's leaves in linear memory: search, set, remove, split, rebuild and encode, on nodes
// in the node cache's own layout (asm/cache.ts), held in the dirty region (asm/dirty.ts).
//
// Owns: the dirty leaf's pre-header and free space (below), and keeping its slots, prefix and
// size estimate true through every change. Keys are bytes compared like every key here
// (node.ts compareKeys); the key a call works on is at the cache's PROBE area, as for find().
// Must never: write outside a node's block, leave a slot whose word disagrees with its key, or
// trap on a full node (a change that does not fit returns NEEDS_REBUILD and changes nothing).
//
// Why (bench/RESULTS.md round 25): a random overwrite at 1M keys measured 1.26 µs as a descent and
// an in-place write in this layout, against 3.02 µs through the JS writer, whose key and value
// strings made most of the difference. A leaf here is also what lookups and range cursors read
// already, and what a checkpoint would otherwise stage from heap strings and parse back in.
//
// A dirty leaf is a cache leaf node (cache.ts "Node layout": header, prefix, slots, 8-aligned
// records) with position -1, entry length 0 and serial 0, and these differences:
//   - The records sit at the top of the block and grow down; the slots grow up after the prefix;
//     the space between is free (a slotted page). An insert shifts slots, never records.
//   - A record that is replaced or removed stays where it is, as garbage, until a rebuild.
//   - The prefix (header 24, bytes at 32) is *a* common prefix of every key, not necessarily the
//     longest: a split or a remove leaves it as it was. A key that does not share it needs a
//     rebuild, which recomputes it.
//   - Before the node, a 32-byte pre-header (node - 32; the block starts at node - 32 - color):
//       0 u32 low       offset from the node of its lowest record (= capacity when empty)
//       4 u32 garbage   bytes of records no slot points at
//       8 u32 estimate  the JS writer's size estimate (node.ts leafBytes, indexBytes): 16 plus,
//                       per item, key length + 2 + (value length + 3 inline, 12 by reference);
//                       for an index node 12 for child 0, key length + 14 for each other child
//       12 u32 size class (dirty.ts)
//       16 u32 references: parents and roots held that point at it (asm/wtree.ts), 1 when made
//       20 u32 color: how far past the block's first 32 bytes the node starts (allocNode)
//       24 i32 last insert: the slot the writer last set in this leaf, -2 in a new node (tree.ts
//          LeafNode.lastInsertAt: the split rule for ascending runs reads it; asm/wtree.ts)
//       28 u32 stamp: the last wtreeSeal that counted this node (asm/wtree.ts)
//   Header 0 (allocated bytes) is the capacity: from the node to the end of its block.
// A value by reference (a Value entry) has REF_FLAG on its key length and an f64 position; a
// negative one names a value not in the file yet (asm/pending.ts), which encode() resolves through
// the caller's table or refuses.
// Dirty index nodes (asm/windex.ts) share the pre-header, allocation, rebuild and split here; their
// records are the cache's index records, with a dirty child at position -1 and its address.
import { commonPrefix, compareKeys } from './node';
import { full, wBytes, wr, wrEnd, wU8, wVarint } from './body-writer';
import { HEADER_BYTES, INDEX_KEY_AT, KIND_INDEX, KIND_LEAF, LEAF_INLINE_KEY_AT, LEAF_REF_KEY_AT, REF_FLAG, SLOT_BYTES, probeAddress, recBytes, recKeyLen, resultAddress, slotBound, slotsOf, wordAt } from './cache';
// The record layout is the cache's; its helpers are used through this module too.
export { recBytes, recKeyLen };
import { pendingPosition } from './pending';
import { DIRTY_BLOCK_MAX, dirtyAlloc, dirtyBlockBytes, dirtyContains, dirtyFree, dirtyInUse, dirtyNeedsAdd } from './dirty';

export const PRE: usize = 32;
/** Node starts within their blocks cycle through this many 64-byte steps (allocNode). */
const COLOR_STEPS: u32 = 16;
const COLOR_MAX: usize = (<usize>COLOR_STEPS - 1) << 6;
let colorNext: u32 = 0;
/** node.ts NODE_OVERHEAD_BYTES. */
export const NODE_OVERHEAD_BYTES: u32 = 16;

/** set() results (asm/wtree.ts reads them; NEEDS_REBUILD is windex.ts's insert's too). */
export const SET_OVERWRITTEN: i32 = 0;
export const SET_REPLACED: i32 = 1;
export const SET_INSERTED: i32 = 2;
export const SET_OVERWRITTEN_UNDOABLE: i32 = 3;
export const NEEDS_REBUILD: i32 = -1;
/** encode() results besides a length. */
const ENCODE_NO_ROOM: i32 = -1;
const ENCODE_UNWRITTEN_VALUE: i32 = -2;

// @ts-ignore: decorator
@inline export function low(n: usize): u32 {
  return load<u32>(n - PRE);
}
// @ts-ignore: decorator
@inline export function setLow(n: usize, v: u32): void {
  store<u32>(n - PRE, v);
}
// @ts-ignore: decorator
@inline export function addGarbage(n: usize, d: i32): void {
  store<u32>(n - PRE, <u32>(<i32>load<u32>(n - PRE, 4) + d), 4);
}
/**
 * The sum of every dirty node's estimate (node.ts sizes: about what the nodes take encoded): the
 * store weighs it against a commit's log record to decide whether to write the tree now, and
 * bounds it. Kept here, beside every change to a node's estimate: its allocation, its builds,
 * addEstimate, and its free.
 */
let estimateTotal: f64 = 0;

/** Encoded bytes the dirty nodes in use would take, about (estimateTotal). */
export function dirtyEstimateBytes(): f64 {
  return estimateTotal;
}

// @ts-ignore: decorator
@inline export function addEstimate(n: usize, d: i32): void {
  store<u32>(n - PRE, <u32>(<i32>load<u32>(n - PRE, 8) + d), 8);
  estimateTotal += <f64>d;
}
// @ts-ignore: decorator
@inline function setEstimate(n: usize, v: u32): void {
  estimateTotal += <f64>v - <f64>load<u32>(n - PRE, 8);
  store<u32>(n - PRE, v, 8);
}

// @ts-ignore: decorator
@inline function isRef(rec: usize): bool {
  return (load<u32>(rec) & REF_FLAG) != 0;
}
// @ts-ignore: decorator
@inline export function recKey(rec: usize, kind: u32): usize {
  return rec + (kind == KIND_INDEX ? INDEX_KEY_AT : isRef(rec) ? LEAF_REF_KEY_AT : LEAF_INLINE_KEY_AT);
}
/** The record a key with this value would take. */
// @ts-ignore: decorator
@inline function newRecBytes(keyLen: u32, valLen: u32, ref: bool): u32 {
  return ref ? (<u32>LEAF_REF_KEY_AT + keyLen + 7) & ~7 : (<u32>LEAF_INLINE_KEY_AT + keyLen + valLen + 7) & ~7;
}
/** node.ts leafItemBytes. */
// @ts-ignore: decorator
@inline function itemEstimate(keyLen: u32, valLen: u32, ref: bool): u32 {
  return keyLen + 2 + (ref ? 12 : valLen + 3);
}
/** node.ts leafItemBytes, or for an index entry INDEX_CHILD0_BYTES (entry 0) or indexItemBytes. */
// @ts-ignore: decorator
@inline export function recEstimate(rec: usize, kind: u32): u32 {
  if (kind == KIND_INDEX) {
    const k = recKeyLen(rec);
    return k == 0 ? 12 : k + 14;
  }
  return itemEstimate(recKeyLen(rec), load<u32>(rec, 4), isRef(rec));
}
// @ts-ignore: decorator
@inline export function slotAt(n: usize, i: u32): usize {
  return slotsOf(n, load<u32>(n, 24)) + (<usize>i << 3);
}
// @ts-ignore: decorator
@inline export function recAt(n: usize, i: u32): usize {
  return n + <usize>load<u32>(slotAt(n, i), 4);
}

/** A `kind` node (empty, one reference) in a block of the dirty region, or 0 if none has `bytes` bytes for it. */
export function allocNode(kind: u32, bytes: u32): usize {
  if (bytes > DIRTY_BLOCK_MAX - <u32>PRE) return 0;
  const block = dirtyAlloc(bytes + <u32>PRE);
  if (block == 0) return 0;
  const blockBytes = dirtyBlockBytes(block);
  // The node starts a varying multiple of 64 bytes into its block: blocks are aligned to their
  // size, and nodes at the same offset in each would crowd the same cache sets. The offset comes
  // out of the room the block has beyond the request, never out of the request: asking for the
  // largest offset on top (up to 992 bytes) put most leaves of a 4 KiB node limit in 8 KiB blocks.
  const colorMost = min<usize>(COLOR_MAX, <usize>(blockBytes - bytes - <u32>PRE) & ~63);
  const color = (<usize>(colorNext++ & (COLOR_STEPS - 1)) << 6) % (colorMost + 64);
  const n = block + PRE + color;
  const capacity = blockBytes - <u32>(PRE + color);
  store<u32>(n, capacity);
  store<u32>(n, kind, 4);
  store<f64>(n, -1, 8);
  store<u32>(n, 0, 16);
  store<u32>(n, 0, 20);
  store<u32>(n, 0, 24);
  store<u32>(n, 0, 28);
  setLow(n, capacity);
  store<u32>(n - PRE, 0, 4);
  store<u32>(n - PRE, NODE_OVERHEAD_BYTES, 8);
  estimateTotal += <f64>NODE_OVERHEAD_BYTES;
  store<u32>(n - PRE, 1, 16);
  store<u32>(n - PRE, <u32>color, 20);
  store<i32>(n - PRE, -2, 24);
  store<u32>(n - PRE, 0, 28); // asm/wtree.ts wtreeSeal's stamp
  return n;
}

/** An empty dirty leaf with at least `bytes` bytes of room for items, or 0 if the region is full. */
export function wleafEmpty(bytes: u32): usize {
  return allocNode(KIND_LEAF, HEADER_BYTES + bytes);
}

/** Gives a dirty node's block back; false if `n` is not one. */
export function wleafFree(n: usize): bool {
  if (!isDirtyNode(n)) return false;
  const estimate = load<u32>(n - PRE, 8);
  if (!dirtyFree(n - PRE - <usize>load<u32>(n - PRE, 20))) return false;
  estimateTotal -= <f64>estimate;
  return true;
}

/** Whether `n` is a dirty node in use (an address the caller passed, checked before it is read). */
export function isDirtyNode(n: usize): bool {
  // The pre-header is read only once it is known to lie in the region's blocks.
  if (n < PRE || !dirtyContains(n - PRE)) return false;
  const color = <usize>load<u32>(n - PRE, 20);
  return color <= COLOR_MAX && n >= PRE + color && dirtyInUse(n - PRE - color);
}

/**
 * The first slot whose key is >= the key at PROBE (`probeLen` bytes): (index << 1) | 1 if that
 * key equals it, (index << 1) otherwise. Works on cached (clean) leaves too.
 */
export function wleafSearch(n: usize, probeLen: u32): i32 {
  return wleafSearchAt(n, probeAddress(), probeLen);
}

/** wleafSearch for the `probeLen`-byte key at `probe`. */
export function wleafSearchAt(n: usize, probe: usize, probeLen: u32): i32 {
  const count = load<u32>(n, 16);
  const slots = slotsOf(n, load<u32>(n, 24));
  const lo = slotBound(n, KIND_LEAF, probe, probeLen, false);
  if (lo < count) {
    const rec = n + <usize>load<u32>(slots + (<usize>lo << 3), 4);
    if (compareKeys(recKey(rec, KIND_LEAF), recKeyLen(rec), probe, probeLen) == 0) return <i32>((lo << 1) | 1);
  }
  return <i32>(lo << 1);
}

/** Writes a record for the key at PROBE at the low end of the free space; returns its offset. */
function putRecord(n: usize, probeLen: u32, valPtr: usize, valLen: u32, ref: bool, refPos: f64, size: u32): u32 {
  const off = low(n) - size;
  setLow(n, off);
  const rec = n + <usize>off;
  if (ref) {
    store<u32>(rec, probeLen | REF_FLAG);
    store<u32>(rec, valLen, 4);
    store<f64>(rec, refPos, 8);
    memory.copy(rec + LEAF_REF_KEY_AT, probeAddress(), probeLen);
  } else {
    store<u32>(rec, probeLen);
    store<u32>(rec, valLen, 4);
    memory.copy(rec + LEAF_INLINE_KEY_AT, probeAddress(), probeLen);
    memory.copy(rec + LEAF_INLINE_KEY_AT + probeLen, valPtr, valLen);
  }
  return off;
}

// The undo area: an undoable overwrite of an inline value by one of the same length saves the old
// bytes here and writes in place, instead of adding a record. Measured (bench/RESULTS.md round 25,
// wasm-writer modes) a new record per change cost ~0.5 µs a write: the dead records filled a
// leaf and forced a rebuild every few writes to it. One dirty block, taken on first use; the
// caller empties it (wleafUndoReset) whenever its journal is emptied. When it is full, or the
// region had no block for it, undoable sets add records as before.
let undoStart: usize = 0;
let undoEnd: usize = 0;
let undoAt: usize = 0;
let undoTried = false;

/** Room for `n` more bytes in the undo area (taking its block on first use). */
function undoRoom(n: u32): bool {
  if (!undoTried) {
    undoTried = true;
    const block = dirtyAlloc(DIRTY_BLOCK_MAX);
    if (block != 0) {
      undoStart = block + PRE;
      undoEnd = block + <usize>DIRTY_BLOCK_MAX;
      undoAt = undoStart;
    }
  }
  return <usize>n <= undoEnd - undoAt;
}

/** Forgets every saved value: the caller's journal holds no SET_OVERWRITTEN_UNDOABLE any more. */
export function wleafUndoReset(): void {
  undoAt = undoStart;
}

/**
 * Gives the undo area's block back to the region, if it holds no saved value (no journal refers
 * to it), so that an idle store can trim the region (asm/dirty.ts dirtyTrim; src/engine/db.ts
 * trimIdle): the block stayed taken once used, and with it the region was never empty again.
 * The next undoable overwrite takes a block again (and one that found none tries again).
 * Returns whether the area holds no block now.
 */
export function wleafUndoRelease(): bool {
  if (undoStart != 0) {
    if (undoAt != undoStart) return false;
    dirtyFree(undoStart - PRE);
  }
  undoStart = 0;
  undoEnd = 0;
  undoAt = 0;
  undoTried = false;
  return true;
}

/**
 * Sets the key at PROBE (`probeLen` bytes) to a value: inline (`ref` 0: `valLen` bytes at
 * `valPtr`) or by reference (`ref` 1: a Value entry at `refPos` of `valLen` bytes). With
 * `keepOld`, the change can be undone. Returns, with RESULT u32 at 4 the slot:
 * - SET_OVERWRITTEN: the old inline value, of the same length, overwritten in place (not with
 *   `keepOld`);
 * - SET_OVERWRITTEN_UNDOABLE: the same with `keepOld`, the old bytes saved in the undo area
 *   (RESULT u32 at 0 where, for wleafUndoOverwrite);
 * - SET_REPLACED: a new record (RESULT u32 at 0 the old record's offset, for wleafUndoReplace);
 * - SET_INSERTED (undone by wleafRemove);
 * - NEEDS_REBUILD: no room, or the key does not share the node's prefix. Nothing changed:
 *   wleafRebuild with the key at PROBE, then set again.
 */
export function wleafSet(n: usize, probeLen: u32, valPtr: usize, valLen: u32, ref: u32, refPos: f64, keepOld: u32): i32 {
  const r = wleafSearch(n, probeLen);
  const i = <u32>r >>> 1;
  const isRefValue = ref != 0;
  const result = resultAddress();
  const count = load<u32>(n, 16);
  const p = load<u32>(n, 24);
  const slot = slotsOf(n, p) + (<usize>i << 3);
  const slotsEnd = <u32>(slotsOf(n, p) + (<usize>count << 3) - n);
  const size = newRecBytes(probeLen, valLen, isRefValue);
  store<u32>(result, i, 4);
  if ((r & 1) != 0) {
    const old = n + <usize>load<u32>(slot, 4);
    if (!isRefValue && !isRef(old) && load<u32>(old, 4) == valLen) {
      const at = old + LEAF_INLINE_KEY_AT + probeLen;
      if (keepOld == 0) {
        memory.copy(at, valPtr, valLen);
        return SET_OVERWRITTEN;
      }
      if (undoRoom(valLen)) {
        memory.copy(undoAt, at, valLen);
        store<u32>(result, <u32>(undoAt - undoStart));
        undoAt += valLen;
        memory.copy(at, valPtr, valLen);
        return SET_OVERWRITTEN_UNDOABLE;
      }
    }
    if (low(n) - slotsEnd < size) return NEEDS_REBUILD;
    const oldOff = load<u32>(slot, 4);
    addEstimate(n, <i32>itemEstimate(probeLen, valLen, isRefValue) - <i32>recEstimate(old, KIND_LEAF));
    addGarbage(n, <i32>recBytes(old, KIND_LEAF));
    store<u32>(slot, putRecord(n, probeLen, valPtr, valLen, isRefValue, refPos, size), 4);
    store<u32>(result, oldOff);
    return SET_REPLACED;
  }
  // A new key: it must share the prefix, and its slot and record must fit.
  if (probeLen < p || (p > 0 && compareKeys(probeAddress(), p, n + HEADER_BYTES, p) != 0)) return NEEDS_REBUILD;
  if (low(n) - slotsEnd < size + <u32>SLOT_BYTES) return NEEDS_REBUILD;
  memory.copy(slot + SLOT_BYTES, slot, <usize>(count - i) << 3);
  store<u32>(slot, wordAt(probeAddress(), probeLen, p));
  store<u32>(slot, putRecord(n, probeLen, valPtr, valLen, isRefValue, refPos, size), 4);
  store<u32>(n, count + 1, 16);
  addEstimate(n, <i32>itemEstimate(probeLen, valLen, isRefValue));
  return SET_INSERTED;
}

/** Undoes a SET_OVERWRITTEN_UNDOABLE of slot `i`: the bytes saved at `undoOff` go back. */
export function wleafUndoOverwrite(n: usize, i: u32, undoOff: u32): void {
  const rec = recAt(n, i);
  memory.copy(rec + LEAF_INLINE_KEY_AT + recKeyLen(rec), undoStart + undoOff, load<u32>(rec, 4));
}

/** Undoes a SET_REPLACED: slot `i` points at its old record (`oldOff`) again. */
export function wleafUndoReplace(n: usize, i: u32, oldOff: u32): void {
  const slot = slotAt(n, i);
  const cur = n + <usize>load<u32>(slot, 4);
  const old = n + <usize>oldOff;
  addEstimate(n, <i32>recEstimate(old, KIND_LEAF) - <i32>recEstimate(cur, KIND_LEAF));
  addGarbage(n, <i32>recBytes(cur, KIND_LEAF) - <i32>recBytes(old, KIND_LEAF));
  store<u32>(slot, oldOff, 4);
}

/** Removes slot `i` (a delete, or the undo of a SET_INSERTED); its record becomes garbage. */
export function wleafRemove(n: usize, i: u32): void {
  const count = load<u32>(n, 16);
  const slot = slotAt(n, i);
  const rec = n + <usize>load<u32>(slot, 4);
  addEstimate(n, -<i32>recEstimate(rec, KIND_LEAF));
  addGarbage(n, <i32>recBytes(rec, KIND_LEAF));
  memory.copy(slot, slot + SLOT_BYTES, <usize>(count - 1 - i) << 3);
  store<u32>(n, count - 1, 16);
}

/** The prefix build() gives the node it makes (set by buildBytes). */
let builtPrefixBytes: u32 = 0;

/**
 * The bytes build() asks allocNode for, with the same arguments (and the prefix it will use, in
 * builtPrefixBytes): wtreeSeal counts its copies' blocks with it before it makes any.
 */
export function buildBytes(src: usize, from: u32, to: u32, withKey: bool, keyPtr: usize, keyLen: u32, extraBytes: u32): u64 {
  const kind = load<u32>(src, 4);
  const index = kind == KIND_INDEX;
  const count = to - from;
  const keyed = index ? from + 1 : from;
  let recordBytes: u32 = 0;
  for (let i = from; i < to; i++) recordBytes += index && i == from ? <u32>INDEX_KEY_AT : recBytes(recAt(src, i), kind);
  // The prefix: that of the first and last key (keys ascend, so it is every key's). With another
  // key, the smaller of that and the other key's with the last: whether it goes before, between
  // or after them, that is the prefix of the smallest and the largest of them.
  let p: u32 = 0;
  const keys = to - keyed + (withKey ? 1 : 0);
  if (keys > 1) {
    const a = recAt(src, keyed);
    const b = recAt(src, to - 1);
    p = commonPrefix(recKey(a, kind), recKeyLen(a), recKey(b, kind), recKeyLen(b));
    if (withKey) {
      const pb = commonPrefix(keyPtr, keyLen, recKey(b, kind), recKeyLen(b));
      if (pb < p) p = pb;
    }
  }
  builtPrefixBytes = p;
  return <u64>HEADER_BYTES + ((<u64>p + 7) & ~7) + <u64>count * SLOT_BYTES + <u64>recordBytes + <u64>extraBytes;
}

/**
 * Counts (dirtyNeedsAdd) the block a copy of `n` with `extraBytes` free (build over all its slots,
 * as asm/wtree.ts copyOf makes it) takes; false if no block is that big.
 */
export function needCopyOf(n: usize, extraBytes: u32): bool {
  const bytes = buildBytes(n, 0, load<u32>(n, 16), false, 0, 0, extraBytes) + <u64>PRE;
  return bytes <= <u64>DIRTY_BLOCK_MAX && dirtyNeedsAdd(<u32>bytes);
}

/**
 * A new dirty node of `src`'s kind holding slots [from, to) of `src` (a dirty node or a cached
 * one), records packed, at least `extraBytes` bytes free besides. Its prefix is recomputed over
 * its keys and, if `withKey`, the `keyLen`-byte key at `keyPtr` too (to be added next). An index
 * node's first entry has no key: slot `from` loses its key when it becomes entry 0 (the separator
 * an index split moves up). 0 if the region has no block for it.
 */
export function build(src: usize, from: u32, to: u32, withKey: bool, keyPtr: usize, keyLen: u32, extraBytes: u32): usize {
  const bytes = buildBytes(src, from, to, withKey, keyPtr, keyLen, extraBytes);
  if (bytes > <u64>DIRTY_BLOCK_MAX) return 0;
  const kind = load<u32>(src, 4);
  const index = kind == KIND_INDEX;
  const count = to - from;
  const keyed = index ? from + 1 : from; // the first entry with a key in the new node
  const p = builtPrefixBytes;
  const n = allocNode(kind, <u32>bytes);
  if (n == 0) return 0;
  if (p > 0) memory.copy(n + HEADER_BYTES, recKey(recAt(src, keyed), kind), p);
  store<u32>(n, p, 24);
  store<u32>(n, count, 16);
  const slots = slotsOf(n, p);
  let off = low(n);
  let estimate = NODE_OVERHEAD_BYTES;
  for (let i = from; i < to; i++) {
    const rec = recAt(src, i);
    const slot = slots + (<usize>(i - from) << 3);
    if (index && i == from) {
      // Entry 0: the child reference alone (key length 0).
      off -= <u32>INDEX_KEY_AT;
      const out = n + <usize>off;
      memory.copy(out, rec, INDEX_KEY_AT);
      store<u32>(out, 0);
      store<u32>(slot, 0);
      store<u32>(slot, off, 4);
      estimate += 12;
      continue;
    }
    const size = recBytes(rec, kind);
    off -= size;
    memory.copy(n + <usize>off, rec, size);
    store<u32>(slot, wordAt(recKey(rec, kind), recKeyLen(rec), p));
    store<u32>(slot, off, 4);
    estimate += recEstimate(rec, kind);
  }
  setLow(n, off);
  setEstimate(n, estimate);
  return n;
}

/**
 * A new dirty node holding every entry of `left`, then every entry of `right` (siblings of one
 * kind, dirty or cached), with at least `extraBytes` bytes free: a merge. For index nodes,
 * `right`'s first entry takes the separator (`sepLen` bytes at `sepPtr`) that stood between them
 * in their parent. 0 if the region has no block for it.
 */
export function buildConcat(left: usize, right: usize, sepPtr: usize, sepLen: u32, extraBytes: u32): usize {
  const kind = load<u32>(left, 4);
  const index = kind == KIND_INDEX;
  const c1 = load<u32>(left, 16);
  const c2 = load<u32>(right, 16);
  let recordBytes: u32 = 0;
  for (let i: u32 = 0; i < c1; i++) recordBytes += recBytes(recAt(left, i), kind);
  for (let i: u32 = 0; i < c2; i++) recordBytes += index && i == 0 ? (<u32>INDEX_KEY_AT + sepLen + 7) & ~7 : recBytes(recAt(right, i), kind);
  // The first and the last key of the merged node, for its prefix.
  let first: usize = 0;
  let firstLen: u32 = 0;
  let last: usize = 0;
  let lastLen: u32 = 0;
  let keys: u32;
  if (index) {
    keys = c1 - 1 + 1 + c2 - 1;
    if (c1 > 1) {
      first = recKey(recAt(left, 1), kind);
      firstLen = recKeyLen(recAt(left, 1));
    } else {
      first = sepPtr;
      firstLen = sepLen;
    }
    if (c2 > 1) {
      last = recKey(recAt(right, c2 - 1), kind);
      lastLen = recKeyLen(recAt(right, c2 - 1));
    } else {
      last = sepPtr;
      lastLen = sepLen;
    }
  } else {
    keys = c1 + c2;
    if (keys > 0) {
      const a = c1 > 0 ? recAt(left, 0) : recAt(right, 0);
      const b = c2 > 0 ? recAt(right, c2 - 1) : recAt(left, c1 - 1);
      first = recKey(a, kind);
      firstLen = recKeyLen(a);
      last = recKey(b, kind);
      lastLen = recKeyLen(b);
    }
  }
  const p: u32 = keys > 1 ? commonPrefix(first, firstLen, last, lastLen) : 0;
  const count = c1 + c2;
  const bytes = <u64>HEADER_BYTES + ((<u64>p + 7) & ~7) + <u64>count * SLOT_BYTES + <u64>recordBytes + <u64>extraBytes;
  if (bytes > <u64>DIRTY_BLOCK_MAX) return 0;
  const n = allocNode(kind, <u32>bytes);
  if (n == 0) return 0;
  if (p > 0) memory.copy(n + HEADER_BYTES, first, p);
  store<u32>(n, p, 24);
  store<u32>(n, count, 16);
  const slots = slotsOf(n, p);
  let off = low(n);
  let estimate = NODE_OVERHEAD_BYTES;
  for (let j: u32 = 0; j < count; j++) {
    const fromLeft = j < c1;
    const rec = fromLeft ? recAt(left, j) : recAt(right, j - c1);
    const slot = slots + (<usize>j << 3);
    if (index && j == c1) {
      // Right's entry 0 takes the separator.
      const size = (<u32>INDEX_KEY_AT + sepLen + 7) & ~7;
      off -= size;
      const out = n + <usize>off;
      memory.copy(out, rec, INDEX_KEY_AT);
      store<u32>(out, sepLen);
      memory.copy(out + INDEX_KEY_AT, sepPtr, sepLen);
      store<u32>(slot, wordAt(sepPtr, sepLen, p));
      store<u32>(slot, off, 4);
      estimate += sepLen + 14;
      continue;
    }
    const size = recBytes(rec, kind);
    off -= size;
    memory.copy(n + <usize>off, rec, size);
    const kl = recKeyLen(rec);
    store<u32>(slot, index && j == 0 ? 0 : wordAt(recKey(rec, kind), kl, p));
    store<u32>(slot, off, 4);
    estimate += recEstimate(rec, kind);
  }
  setLow(n, off);
  setEstimate(n, estimate);
  return n;
}

/**
 * A rebuilt copy of `src` (dirty or cached): records packed, the prefix recomputed (with the key
 * at PROBE if `withProbe`, so that it can be set next), at least `extraBytes` bytes free. 0 if
 * the region has no block for it. `src` is left as it was: the caller frees it if nothing else
 * holds it.
 */
export function wleafRebuild(src: usize, withProbe: u32, probeLen: u32, extraBytes: u32): usize {
  return build(src, 0, load<u32>(src, 16), withProbe != 0, probeAddress(), probeLen, extraBytes);
}

/**
 * Splits a dirty leaf: returns a new leaf with slots [at, count) (at least `extraBytes` free), and
 * `n` keeps [0, at). 0 if the region has no block for it (then `n` is unchanged).
 */
export function wleafSplit(n: usize, at: u32, extraBytes: u32): usize {
  const count = load<u32>(n, 16);
  const right = build(n, at, count, false, 0, 0, extraBytes);
  if (right == 0) return 0;
  let moved: i32 = 0;
  let movedBytes: i32 = 0;
  for (let i = at; i < count; i++) {
    const rec = recAt(n, i);
    moved += <i32>recEstimate(rec, KIND_LEAF);
    movedBytes += <i32>recBytes(rec, KIND_LEAF);
  }
  store<u32>(n, at, 16);
  addEstimate(n, -moved);
  addGarbage(n, movedBytes);
  return right;
}

// --- encoding ---------------------------------------------------------------------------------

/**
 * Encodes the leaf as a Leaf entry body (src/engine/codec.ts documents it) at `out` (`outCap`
 * bytes), with the prefix the slab encoder gives a leaf (asm/slab.ts wNodeHead: that of the first
 * and last key, none for one key), so the bytes are those a staged JS leaf encodes to. Returns
 * the length, ENCODE_NO_ROOM or ENCODE_UNWRITTEN_VALUE (a pending value asm/pending.ts cannot place).
 */
export function wleafEncode(n: usize, out: usize, outCap: u32): i32 {
  wr = out;
  wrEnd = out + outCap;
  full = false;
  const count = load<u32>(n, 16);
  let p: u32 = 0;
  if (count > 1) {
    const a = recAt(n, 0);
    const b = recAt(n, count - 1);
    p = commonPrefix(recKey(a, KIND_LEAF), recKeyLen(a), recKey(b, KIND_LEAF), recKeyLen(b));
  }
  wVarint(<u64>count);
  wVarint(<u64>p);
  if (count > 0) wBytes(recKey(recAt(n, 0), KIND_LEAF), p);
  for (let i: u32 = 0; i < count && !full; i++) {
    const rec = recAt(n, i);
    const k = recKeyLen(rec);
    wVarint(<u64>(k - p));
    wBytes(recKey(rec, KIND_LEAF) + p, k - p);
    if (isRef(rec)) {
      const pos = pendingPosition(load<f64>(rec, 8));
      if (!(pos >= 0)) return ENCODE_UNWRITTEN_VALUE;
      wU8(1);
      wVarint(<u64>pos);
      wVarint(<u64>load<u32>(rec, 4));
    } else {
      wU8(0);
      const v = load<u32>(rec, 4);
      wVarint(<u64>v);
      wBytes(rec + LEAF_INLINE_KEY_AT + k, v);
    }
  }
  return full ? ENCODE_NO_ROOM : <i32>(wr - out);
}
