// The writer's index nodes in linear memory: child search, inserting a separator and a child,
// re-pointing a child, splitting. Allocation, pre-header, rebuild and the record helpers are
// shared with the leaves (asm/wleaf.ts).
//
// Owns: dirty index nodes' contents. The layout is the cache's index node (asm/cache.ts): entry 0
// has no key and holds child 0; entry i (i >= 1) holds separator i, which bounds child i from
// below (keys under child i are >= separator i, keys under child i - 1 are below it). Records:
//   0 u32 key length   4 u32 child entry length   8 f64 child position   16 u32 child address
//   20 u32 child serial   24 key
// A clean child has its file position (and, once a descent found it in the cache, its cached
// address and serial, as in the cache). A dirty child (asm/wtree.ts) has position -1, entry length
// 0 and its address; each such record is one of the references the child counts.
// Must never: leave separators out of order or a slot whose word disagrees with its key; a change
// that does not fit returns NEEDS_REBUILD and changes nothing.
import { commonPrefix, compareKeys } from './node';
import { full, wBytes, wr, wrEnd, wVarint } from './body-writer';
import { HEADER_BYTES, INDEX_KEY_AT, KIND_INDEX, SLOT_BYTES, resultAddress, slotBound, slotsOf, wordAt } from './cache';
import { NEEDS_REBUILD, addEstimate, addGarbage, allocNode, build, low, recAt, recBytes, recEstimate, recKey, recKeyLen, setLow, slotAt } from './wleaf';


/** The child slot under which the `keyLen`-byte key at `keyPtr` belongs. */
export function widxChildSlot(n: usize, keyPtr: usize, keyLen: u32): u32 {
  // The first separator > the key (entries 1..count-1), and its left neighbour.
  return slotBound(n, KIND_INDEX, keyPtr, keyLen, true) - 1;
}

/** Points child `i` at a clean node (`pos` >= 0, entry length `len`) or a dirty one (`pos` -1, `addr`). */
export function widxSetChild(n: usize, i: u32, pos: f64, len: u32, addr: u32): void {
  const rec = recAt(n, i);
  store<u32>(rec, len, 4);
  store<f64>(rec, pos, 8);
  store<u32>(rec, addr, 16);
  store<u32>(rec, 0, 20);
}

/**
 * Inserts entry `at` (>= 1): separator `keyLen` bytes at `keyPtr`, then child (`pos`, `len`,
 * `addr` as widxSetChild). Returns 0, or NEEDS_REBUILD (no room, or the key does not share the
 * node's prefix: build() with it, then insert again).
 */
export function widxInsert(n: usize, at: u32, keyPtr: usize, keyLen: u32, pos: f64, len: u32, addr: u32): i32 {
  const count = load<u32>(n, 16);
  const p = load<u32>(n, 24);
  if (keyLen < p || (p > 0 && compareKeys(keyPtr, p, n + HEADER_BYTES, p) != 0)) return NEEDS_REBUILD;
  const size = (<u32>INDEX_KEY_AT + keyLen + 7) & ~7;
  const slots = slotsOf(n, p);
  const slotsEnd = <u32>(slots + (<usize>count << 3) - n);
  if (low(n) - slotsEnd < size + <u32>SLOT_BYTES) return NEEDS_REBUILD;
  const off = low(n) - size;
  setLow(n, off);
  const rec = n + <usize>off;
  store<u32>(rec, keyLen);
  memory.copy(rec + INDEX_KEY_AT, keyPtr, keyLen);
  const slot = slots + (<usize>at << 3);
  memory.copy(slot + SLOT_BYTES, slot, <usize>(count - at) << 3);
  store<u32>(slot, wordAt(keyPtr, keyLen, p));
  store<u32>(slot, off, 4);
  store<u32>(n, count + 1, 16);
  widxSetChild(n, at, pos, len, addr);
  addEstimate(n, <i32>keyLen + 14);
  return 0;
}

/**
 * Splits a dirty index node at entry `at` (1 <= at < count): returns a new node holding entries
 * [at, count), the first without its key, and `n` keeps [0, at). The separator of entry `at`
 * moves up: RESULT u32 at 0 its address, at 4 its length. It stays in `n`'s memory as garbage, so
 * it is valid until `n` is rebuilt or freed. 0 if the region has no block (then `n` is unchanged).
 */
export function widxSplit(n: usize, at: u32, extraBytes: u32): usize {
  const count = load<u32>(n, 16);
  const right = build(n, at, count, false, 0, 0, extraBytes);
  if (right == 0) return 0;
  const up = recAt(n, at);
  const result = resultAddress();
  store<u32>(result, <u32>recKey(up, KIND_INDEX));
  store<u32>(result, recKeyLen(up), 4);
  let moved: i32 = 0;
  let movedBytes: i32 = 0;
  for (let i = at; i < count; i++) {
    const rec = recAt(n, i);
    moved += <i32>recEstimate(rec, KIND_INDEX);
    movedBytes += <i32>recBytes(rec, KIND_INDEX);
  }
  store<u32>(n, at, 16);
  addEstimate(n, -moved);
  addGarbage(n, movedBytes);
  return right;
}

/**
 * A new root over two dirty children (a split root): child 0 `left`, then separator (`keyLen`
 * bytes at `keyPtr`) and child 1 `right`, with at least `extraBytes` free. 0 if no room.
 */
export function widxNewRoot(left: usize, keyPtr: usize, keyLen: u32, right: usize, extraBytes: u32): usize {
  const n = allocNode(KIND_INDEX, HEADER_BYTES + 64 + keyLen + extraBytes);
  if (n == 0) return 0;
  // Entry 0: a record without a key, its slot's word 0 (the prefix is empty, slots at 32).
  const off = low(n) - <u32>INDEX_KEY_AT;
  setLow(n, off);
  memory.fill(n + <usize>off, 0, INDEX_KEY_AT);
  store<u32>(n + HEADER_BYTES, 0);
  store<u32>(n + HEADER_BYTES, off, 4);
  store<u32>(n, 1, 16);
  addEstimate(n, 12);
  widxSetChild(n, 0, -1, 0, <u32>left);
  widxInsert(n, 1, keyPtr, keyLen, -1, 0, <u32>right);
  return n;
}

/** Slot `i`'s record address (for JS walkers and tests). */
export function widxRecord(n: usize, i: u32): usize {
  return n + <usize>load<u32>(slotAt(n, i), 4);
}

/** Removes entry `i` (>= 1): its separator and child. Its record becomes garbage. */
export function widxRemove(n: usize, i: u32): void {
  const count = load<u32>(n, 16);
  const slot = slotAt(n, i);
  const rec = n + <usize>load<u32>(slot, 4);
  addEstimate(n, -<i32>recEstimate(rec, KIND_INDEX));
  addGarbage(n, <i32>recBytes(rec, KIND_INDEX));
  memory.copy(slot, slot + SLOT_BYTES, <usize>(count - 1 - i) << 3);
  store<u32>(n, count - 1, 16);
}

/**
 * Encodes a dirty index node as an Index entry body (src/engine/codec.ts) at `out` (`outCap`
 * bytes), with the prefix the slab encoder gives an index node (that of its first and last
 * separator, none for one), so the bytes are those a staged JS index node encodes to. A clean
 * child is referred to by its record's position and entry length; a dirty one by the position
 * and entry length in its own header (cache.ts node layout 8 and 20), set once it is written.
 * Returns the length, -1 (no room) or -2 (a dirty child not written yet).
 */
export function widxEncode(n: usize, out: usize, outCap: u32): i32 {
  wr = out;
  wrEnd = out + outCap;
  full = false;
  const count = load<u32>(n, 16);
  let p: u32 = 0;
  if (count > 2) {
    const a = recAt(n, 1);
    const b = recAt(n, count - 1);
    p = commonPrefix(a + INDEX_KEY_AT, recKeyLen(a), b + INDEX_KEY_AT, recKeyLen(b));
  }
  wVarint(<u64>count);
  wVarint(<u64>p);
  if (p > 0) wBytes(recAt(n, 1) + INDEX_KEY_AT, p);
  for (let i: u32 = 0; i < count && !full; i++) {
    const rec = recAt(n, i);
    if (i > 0) {
      const k = recKeyLen(rec);
      wVarint(<u64>(k - p));
      wBytes(rec + INDEX_KEY_AT + p, k - p);
    }
    let pos = load<f64>(rec, 8);
    let len = load<u32>(rec, 4);
    if (pos < 0) {
      const child = <usize>load<u32>(rec, 16);
      pos = load<f64>(child, 8);
      len = load<u32>(child, 20);
      if (!(pos >= 0)) return -2;
    }
    wVarint(<u64>pos);
    wVarint(<u64>len);
  }
  return full ? -1 : <i32>(wr - out);
}
