// The node cache in linear memory: clean (on-disk) Leaf and Index nodes, laid out for search,
// and a whole-path descent in one call per lookup.
//
// Owns: a region of this instance's memory (one instance per open store, so these globals are
// per store), a hash table from file position to node, a ring arena the nodes live in (evicted
// oldest-first), and the parsing of Leaf and Index entry bodies (codec.ts documents the body
// format; spec part A §A.3/§A.4 the entry kinds) into the search layout below. Bodies arrive
// CRC-verified by the caller; parsing still bounds-checks every read and reports a malformed
// body as an error code, never a trap.
//
// Why: at 1M keys, gets through decoded JS nodes spent a third of their time in cache misses over
// scattered heap objects, and the tree's millions of small objects made GC pauses the p99 (bench/
// RESULTS.md, round 6). Here a node's header, prefix and slots are contiguous and a lookup touches
// no JS object.
//
// Region layout (from `regionStart`, fixed at init, never moved):
//   PROBE   64 KiB + 8   the key being looked up (JS writes it)
//   RESULT  32           find()'s answer in bytes 0..11; at 16, u32 the eviction epoch: bumped
//                        whenever a node may have left the ring (evicted, or the cache cleared),
//                        so a reader holding a node's address (range cursors, leaf views in
//                        wasm-cache.ts) re-finds it only after the epoch moved; at 20, u32 the
//                        tree epoch: bumped whenever a checkpoint's switch (asm/wcheckpoint.ts)
//                        may have freed nodes of the writer's tree (src/engine/wasm-tree-cursor.ts)
//   INPUT   inputBytes   an entry body to ingest (JS writes it)
//   TABLE   slots × 8    open addressing, linear probing: u32 low bits of the position, u32 node
//                        ptr (0 = empty); a hit is confirmed against the node's own header
//   ARENA   arenaBytes   nodes, ring-allocated
//   DIRTY   dirtyBytes   (256-aligned) the writer's nodes, asm/dirty.ts and asm/wleaf.ts: the same
//                        node layout, never evicted
//
// Node layout (little-endian; all offsets relative to the node, which is 8-aligned):
//   0  u32 allocated bytes      4  u32 kind (2 leaf, 3 index: format.ts Kind)
//   8  f64 file position (-1 once evicted or dropped)
//   16 u32 count (leaf: keys; index: children)   20 u32 entry length (header included)
//   24 u32 common prefix length P (every key of a leaf, every separator of an index, shares it)
//   28 u32 allocation serial (ring order; see `evictedSerial`)
//   32 the prefix bytes, padded to 8
//   then the slots, count × 8: u32 word (key bytes P..P+3 big-endian, zero-padded), u32 record
//      offset. Keys that share the prefix order like their words (ties aside), so a binary search
//      reads this small array and touches a key only on a tie; the winning slot's record offset
//      sits beside the word the search read last.
//   then the records, each 8-aligned:
//      leaf   0 u32 key length | REF_FLAG for a value kept in a Value entry   4 u32 value length
//             inline: 8 key, then the value;  ref: 8 f64 Value entry position, 16 key
//      index  0 u32 key length (0 for entry 0: child 0 holds everything below separator 1)
//             4 u32 child entry length   8 f64 child position
//             16 u32 the child's node address and 20 u32 its serial, once a descent found it
//             (0, 0 before): the next descent skips the hash table while that serial is live
//             24 key
// Why this order: at 1M keys a get reads one leaf out of ~140 MiB, so every cache line it
// touches is a memory miss. The header, prefix and slots are contiguous, and a key sits with its
// value, so a leaf lookup touches the first lines of the node, the slots its search visits, and one
// record (bench/RESULTS.md, round 10; the previous layout kept the directory, keys and values in
// three separate arrays: six or more lines per leaf).
import { compareKeys } from './node';
import { dirtyInit } from './dirty';
import { pendingPosition } from './pending';

const PROBE_BYTES: u32 = 65536 + 8;
const RESULT_BYTES: u32 = 32;
export const HEADER_BYTES: u32 = 32;
export const SLOT_BYTES: u32 = 8;
/** Where a record's key starts (layout above); the largest is also the largest record header. */
export const LEAF_INLINE_KEY_AT: usize = 8;
export const LEAF_REF_KEY_AT: usize = 16;
export const INDEX_KEY_AT: usize = 24;
const RECORD_HEADER_MAX: u32 = <u32>INDEX_KEY_AT;
export const REF_FLAG: u32 = 0x8000_0000;
export const KIND_LEAF: u32 = 2;
export const KIND_INDEX: u32 = 3;

/** find() results. */
const NOT_FOUND: i32 = 0;
const INLINE: i32 = 1;
const VALUE_REF: i32 = 2;
const MISS: i32 = 3;
/**
 * An index node refers to a child at or after its own position: copy-on-write appends children
 * before their parents, so only a damaged or hostile file does, and following it could cycle
 * (a node that is its own descendant) forever. RESULT: f64 parent position at 0, f64 child at 8.
 */
const CHILD_NOT_OLDER: i32 = 4;

/** ingest() results. */
const INGESTED: i32 = 0;
const TOO_BIG: i32 = 1;
const MALFORMED: i32 = -1;

let regionStart: usize = 0;
let probePtr: usize = 0;
let resultPtr: usize = 0;
let inputPtr: usize = 0;
let inputBytes: u32 = 0;
let tablePtr: usize = 0;
let tableMask: u32 = 0;
let tableBits: u32 = 0;
let liveNodes: u32 = 0;
let maxLiveNodes: u32 = 0;
let arenaStart: usize = 0;
let arenaEnd: usize = 0;
let regionEnd: usize = 0;
let head: usize = 0;
let tail: usize = 0;
/** While the ring is wrapped: the end of the upper live segment; 0 otherwise. */
let wrapEnd: usize = 0;
/**
 * Allocation serials: each node gets the next one, and the ring evicts strictly oldest first, so
 * the nodes still in the ring are exactly those with serial ≥ evictedSerial (in wrapping u32
 * order). A child address remembered in an index record is used only while its serial is live.
 * Wrapping is safe: a live parent and the child it remembers were live together, so they are at
 * most maxLiveNodes (< 2^31) apart, and a stale child's serial is below the parent's.
 */
let nextSerial: u32 = 1;
let evictedSerial: u32 = 1;

/**
 * Reserves the region by growing memory (no allocator involved, so the runtime's heap never
 * overlaps it). Returns the region start, or 0 if memory could not grow.
 */
export function cacheInit(arenaBytes: u32, inputBytesWanted: u32, dirtyBytes: u32): usize {
  // Let the runtime's allocator claim its memory first: it takes everything up to memory.size()
  // on first use, so it must not first run after the region exists.
  heap.free(heap.alloc(16));
  let slots: u32 = 1024;
  while (slots < arenaBytes / 1024) slots <<= 1;
  const tableBytes = <usize>slots * 8;
  const total = <usize>PROBE_BYTES + RESULT_BYTES + inputBytesWanted + tableBytes + arenaBytes + 16 + 256 + <usize>dirtyBytes;
  const start = (<usize>memory.size()) << 16;
  const pages = <i32>((total + 0xffff) >>> 16);
  if (memory.grow(pages) < 0) return 0;
  regionStart = start;
  regionEnd = start + (<usize>pages << 16);
  probePtr = start;
  resultPtr = probePtr + PROBE_BYTES;
  inputPtr = resultPtr + RESULT_BYTES;
  inputBytes = inputBytesWanted;
  tablePtr = (inputPtr + inputBytesWanted + 15) & ~15;
  tableMask = slots - 1;
  tableBits = 32 - clz<u32>(tableMask);
  maxLiveNodes = (slots >>> 2) * 3;
  arenaStart = (tablePtr + tableBytes + 7) & ~7;
  arenaEnd = arenaStart + arenaBytes;
  dirtyInit((arenaEnd + 255) & ~255, dirtyBytes);
  // Freshly grown memory is zero: the table is already empty. (Filling it here would touch every
  // page, ~4 MiB of resident memory per open store at the default size, for nothing.)
  resetRing();
  // The runtime's allocator grows memory by at least its current size (TLSF growMemory doubles)
  // the first time it needs room, and the region now makes that ~1.3 GiB at once. V8 counts grown
  // WebAssembly memory as external memory and answers such a jump with a full collection, 100–250
  // ms in a process holding a big heap: in a store's first commit, it was a tenth of a 1M-key
  // sorted load (bench/RESULTS.md round 28). It happens here, at open, instead: the room it gives
  // holds the slab plans of later commits and checkpoints (a 1M-key tree's whole plan is ~150 MB).
  // Past 4 GiB the doubling fails and the runtime grows by what it needs, now and later.
  // (More than its first pool, all memory below the region, can hold: the allocation grows memory.)
  heap.free(heap.alloc(start + (1 << 20)));
  return start;
}

export function probeAddress(): usize {
  return probePtr;
}
export function resultAddress(): usize {
  return resultPtr;
}
export function inputAddress(): usize {
  return inputPtr;
}
export function cachedNodes(): u32 {
  return liveNodes;
}
/** Where the ring allocates next, and where the arena ends (JS prefaults pages ahead of it). */
export function ringHead(): usize {
  return head;
}
/** The end of the memory cacheInit reserved (the runtime's heap may grow past it). */
export function regionEndAddress(): usize {
  return regionEnd;
}

export function arenaEndAddress(): usize {
  return arenaEnd;
}

/** Forgets every node (online compaction reclaimed space; tests). */
export function cacheClear(): void {
  memory.fill(tablePtr, 0, (<usize>tableMask + 1) * 8);
  resetRing();
}

/**
 * Tells readers holding node addresses that one may now be stale (RESULT + 16). A u32 could wrap
 * back to a value a reader saw only after 2^32 evictions between two of its steps.
 */
// @ts-ignore: decorator
@inline function bumpEpoch(): void {
  store<u32>(resultPtr, load<u32>(resultPtr, 16) + 1, 16);
}

/** Tells readers holding addresses of the writer's nodes that one may have been freed (RESULT + 20). */
export function bumpTreeEpoch(): void {
  store<u32>(resultPtr, load<u32>(resultPtr, 20) + 1, 20);
}

function resetRing(): void {
  bumpEpoch();
  evictedSerial = nextSerial;
  liveNodes = 0;
  head = arenaStart;
  tail = arenaStart;
  wrapEnd = 0;
}

// --- hash table -------------------------------------------------------------------------------

// @ts-ignore: decorator
@inline function slotOf(pos: f64): u32 {
  return <u32>((<u64>pos * 0x9e3779b97f4a7c15) >>> (64 - <u64>tableBits)) & tableMask;
}

function tableGet(pos: f64): usize {
  const tag = <u32>(<u64>pos);
  let i = slotOf(pos);
  for (;;) {
    const s = tablePtr + (<usize>i << 3);
    const node = <usize>load<u32>(s, 4);
    if (node == 0) return 0;
    // The tag narrows it down; the node's header (read next by every caller anyway) decides.
    if (load<u32>(s) == tag && load<f64>(node, 8) == pos) return node;
    i = (i + 1) & tableMask;
  }
  return unreachable();
}

function tablePut(pos: f64, node: usize): void {
  let i = slotOf(pos);
  for (;;) {
    const s = tablePtr + (<usize>i << 3);
    if (load<u32>(s, 4) == 0) {
      store<u32>(s, <u32>(<u64>pos));
      store<u32>(s, <u32>node, 4);
      liveNodes++;
      return;
    }
    i = (i + 1) & tableMask;
  }
}

/** Linear-probing delete with backward shift (no tombstones, so probe chains stay short). */
function tableDelete(pos: f64): void {
  let i = slotOf(pos);
  for (;;) {
    const s = tablePtr + (<usize>i << 3);
    const node = <usize>load<u32>(s, 4);
    if (node == 0) return;
    if (load<f64>(node, 8) == pos) break;
    i = (i + 1) & tableMask;
  }
  liveNodes--;
  let hole = i;
  let j = i;
  for (;;) {
    j = (j + 1) & tableMask;
    const sj = tablePtr + (<usize>j << 3);
    const nj = <usize>load<u32>(sj, 4);
    if (nj == 0) break;
    const home = slotOf(load<f64>(nj, 8));
    // Move j into the hole unless its home lies cyclically in (hole, j].
    const inRange = hole <= j ? home > hole && home <= j : home > hole || home <= j;
    if (inRange) continue;
    store<u64>(tablePtr + (<usize>hole << 3), load<u64>(sj));
    hole = j;
  }
  store<u64>(tablePtr + (<usize>hole << 3), 0);
}

// --- ring arena -------------------------------------------------------------------------------

function evictTail(): void {
  const pos = load<f64>(tail, 8);
  if (pos >= 0) tableDelete(pos);
  // Gone: a remembered address that still points here fails the position check as well.
  store<f64>(tail, -1, 8);
  bumpEpoch();
  evictedSerial = load<u32>(tail, 28) + 1;
  tail += <usize>load<u32>(tail);
}

/** Once the upper segment of a wrapped ring is empty, the ring is unwrapped again. */
function unwrapIfDrained(): void {
  if (wrapEnd != 0 && tail == wrapEnd) {
    wrapEnd = 0;
    tail = arenaStart;
  }
}

/** `n` bytes (a multiple of 8) at the ring's head, evicting the oldest nodes; 0 if too big. */
function arenaAlloc(n: usize): usize {
  if (n > (arenaEnd - arenaStart) >>> 1) return 0;
  while (liveNodes >= maxLiveNodes) {
    unwrapIfDrained();
    evictTail();
  }
  for (;;) {
    unwrapIfDrained();
    if (wrapEnd == 0) {
      // Live nodes fill [tail, head).
      if (head + n <= arenaEnd) {
        const p = head;
        head += n;
        return p;
      }
      if (tail == head) {
        head = arenaStart;
        tail = arenaStart;
        continue;
      }
      wrapEnd = head;
      head = arenaStart;
    } else {
      // Live nodes fill [tail, wrapEnd) and [arenaStart, head); [head, tail) is free.
      if (head + n <= tail) {
        const p = head;
        head += n;
        return p;
      }
      evictTail();
    }
  }
  return unreachable();
}

// --- parsing ----------------------------------------------------------------------------------

let rd: usize = 0;
let rdEnd: usize = 0;
let rdBad = false;

function varint(): u64 {
  let v: u64 = 0;
  let shift: u64 = 0;
  for (let i = 0; i < 8; i++) {
    if (rd >= rdEnd) break;
    const x = <u64>load<u8>(rd++);
    v |= (x & 0x7f) << shift;
    if (x < 0x80) return v;
    shift += 7;
  }
  rdBad = true;
  return 0;
}

function take(n: u64): usize {
  if (n > <u64>(rdEnd - rd)) {
    rdBad = true;
    return rd;
  }
  const p = rd;
  rd += <usize>n;
  return p;
}

/** Bytes p[at..at+3] of a `len`-byte key as a big-endian u32, zero-padded. */
// @ts-ignore: decorator
@inline export function wordAt(p: usize, len: u32, at: u32): u32 {
  if (len >= at + 4) return bswap<u32>(load<u32>(p + at));
  let v: u32 = 0;
  for (let i: u32 = 0; i < 4; i++) v = (v << 8) | (at + i < len ? <u32>load<u8>(p + at + i) : 0);
  return v;
}

// @ts-ignore: decorator
@inline export function slotsOf(node: usize, prefixLen: u32): usize {
  return node + HEADER_BYTES + ((<usize>prefixLen + 7) & ~7);
}

/** Where the key of the record at `rec` starts (layout above). */
// @ts-ignore: decorator
@inline export function recordKey(rec: usize, kind: u32): usize {
  return rec + (kind == KIND_INDEX ? INDEX_KEY_AT : (load<u32>(rec) & REF_FLAG) != 0 ? LEAF_REF_KEY_AT : LEAF_INLINE_KEY_AT);
}

/** A record's key length (without the REF_FLAG a leaf record may carry). */
// @ts-ignore: decorator
@inline export function recKeyLen(rec: usize): u32 {
  return load<u32>(rec) & ~REF_FLAG;
}

/** A record's bytes, 8-aligned (layout above). */
// @ts-ignore: decorator
@inline export function recBytes(rec: usize, kind: u32): u32 {
  const k = recKeyLen(rec);
  if (kind == KIND_INDEX) return (<u32>INDEX_KEY_AT + k + 7) & ~7;
  return (load<u32>(rec) & REF_FLAG) != 0 ? (<u32>LEAF_REF_KEY_AT + k + 7) & ~7 : (<u32>LEAF_INLINE_KEY_AT + k + load<u32>(rec, 4) + 7) & ~7;
}

/**
 * Copies a written node of the writer's tree (asm/wleaf.ts, asm/windex.ts: a dirty node whose
 * header holds the position and entry length a checkpoint wrote it at, asm/slab.ts) into the
 * ring under that position, as if its entry had been read and parsed: the layouts are the same,
 * so the copy only packs the records after the slots (a dirty node's sit at its block's top, with
 * garbage between). Its children must be clean already (asm/wcheckpoint.ts switches them first),
 * and a value pending when it was written is given the position the file holds (asm/pending.ts).
 * Returns INGESTED (also when the position is cached already), TOO_BIG, or MALFORMED (no
 * position, a child by address, or a pending value the table cannot place: nothing is copied).
 */
export function adopt(n: usize): i32 {
  const pos = load<f64>(n, 8);
  const kind = load<u32>(n, 4);
  if (!(pos > 0) || (kind != KIND_LEAF && kind != KIND_INDEX)) return MALFORMED;
  if (tableGet(pos) != 0) return INGESTED;
  const count = load<u32>(n, 16);
  const prefixLen = load<u32>(n, 24);
  const slots = slotsOf(n, prefixLen);
  const headBytes = <usize>(slots - n);
  let bytes = headBytes + (<usize>count << 3);
  for (let i: u32 = 0; i < count; i++) {
    const rec = n + <usize>load<u32>(slots + (<usize>i << 3), 4);
    bytes += <usize>recBytes(rec, kind);
    if (kind == KIND_INDEX ? load<f64>(rec, 8) < 0 : (load<u32>(rec) & REF_FLAG) != 0 && pendingPosition(load<f64>(rec, 8)) < 0) return MALFORMED;
  }
  if (bytes > (arenaEnd - arenaStart) >>> 1) return TOO_BIG;
  const node = arenaAlloc(bytes);
  if (node == 0) return TOO_BIG;
  memory.copy(node, n, headBytes);
  store<u32>(node, <u32>bytes);
  store<f64>(node, -1, 8); // not findable until complete
  store<u32>(node, nextSerial++, 28);
  const to = slots - n + node;
  let out = to + (<usize>count << 3);
  for (let i: u32 = 0; i < count; i++) {
    const slot = slots + (<usize>i << 3);
    const rec = n + <usize>load<u32>(slot, 4);
    const size = recBytes(rec, kind);
    memory.copy(out, rec, size);
    // A value that was pending when the node was written: the position the file holds.
    if (kind == KIND_LEAF && (load<u32>(rec) & REF_FLAG) != 0) store<f64>(out, pendingPosition(load<f64>(rec, 8)), 8);
    store<u32>(to + (<usize>i << 3), load<u32>(slot));
    store<u32>(to + (<usize>i << 3), <u32>(out - node), 4);
    out += size;
  }
  store<f64>(node, pos, 8);
  tablePut(pos, node);
  return INGESTED;
}

/**
 * Parses the body at INPUT (`bodyLen` bytes, kind 2 or 3) of the entry at `pos` into a cached
 * node. Returns INGESTED, TOO_BIG (the caller uses its JS path) or MALFORMED.
 */
export function ingest(pos: f64, entryLen: u32, kind: u32, bodyLen: u32): i32 {
  if (bodyLen > inputBytes || pos <= 0 || (kind != KIND_LEAF && kind != KIND_INDEX)) return MALFORMED;
  if (tableGet(pos) != 0) return INGESTED;
  rd = inputPtr;
  rdEnd = inputPtr + bodyLen;
  rdBad = false;
  const count64 = varint();
  const prefixLen64 = varint();
  const prefix = take(prefixLen64);
  if (rdBad || count64 > <u64>bodyLen || (kind == KIND_INDEX && count64 < 1)) return MALFORMED;
  const count = <u32>count64;
  const prefixLen = <u32>prefixLen64;
  // Each key is stored whole (its prefix again), in an 8-aligned record with a header of at most
  // 24 bytes; keys and values together take at most the body plus count × prefix.
  const bound = (<u64>HEADER_BYTES + <u64>prefixLen + 8 + <u64>count * (SLOT_BYTES + RECORD_HEADER_MAX + 7 + <u64>prefixLen) + <u64>bodyLen + 7) & ~7;
  if (bound > <u64>((arenaEnd - arenaStart) >>> 1)) return TOO_BIG;
  const node = arenaAlloc(<usize>bound);
  if (node == 0) return TOO_BIG;
  store<u32>(node, <u32>bound);
  store<u32>(node, kind, 4);
  store<f64>(node, -1, 8); // not findable until complete
  store<u32>(node, count, 16);
  store<u32>(node, entryLen, 20);
  store<u32>(node, prefixLen, 24);
  store<u32>(node, nextSerial++, 28);
  memory.copy(node + HEADER_BYTES, prefix, prefixLen);
  const slots = slotsOf(node, prefixLen);
  let out = slots + <usize>count * SLOT_BYTES;
  for (let i: u32 = 0; i < count; i++) {
    const slot = slots + (<usize>i << 3);
    const rec = out;
    store<u32>(slot, <u32>(rec - node), 4);
    let keyLen: u32 = 0;
    let suffix: usize = 0;
    let suffixLen: u32 = 0;
    if (!(kind == KIND_INDEX && i == 0)) {
      const sl = varint();
      suffix = take(sl);
      if (rdBad) break;
      suffixLen = <u32>sl;
      keyLen = prefixLen + suffixLen;
    }
    let key: usize = 0;
    if (kind == KIND_INDEX) {
      const childPos = varint();
      const childLen = varint();
      store<u32>(rec, keyLen);
      store<u32>(rec, <u32>childLen, 4);
      store<f64>(rec, <f64>childPos, 8);
      store<u64>(rec, 0, 16);
      key = rec + INDEX_KEY_AT;
      out = key + keyLen;
    } else {
      if (rd >= rdEnd) {
        rdBad = true;
        break;
      }
      const vk = load<u8>(rd++);
      if (vk == 0) {
        const len = varint();
        const bytes = take(len);
        if (rdBad) break;
        store<u32>(rec, keyLen);
        store<u32>(rec, <u32>len, 4);
        key = rec + LEAF_INLINE_KEY_AT;
        memory.copy(key + keyLen, bytes, <usize>len);
        out = key + keyLen + <usize>len;
      } else if (vk == 1) {
        const vpos = varint();
        const vlen = varint();
        store<u32>(rec, keyLen | REF_FLAG);
        store<u32>(rec, <u32>vlen, 4);
        store<f64>(rec, <f64>vpos, 8);
        key = rec + LEAF_REF_KEY_AT;
        out = key + keyLen;
      } else {
        rdBad = true;
        break;
      }
    }
    if (rdBad) break;
    // (An index's entry 0 has no key; an empty leaf key means an empty prefix.)
    if (keyLen != 0) {
      memory.copy(key, prefix, prefixLen);
      memory.copy(key + prefixLen, suffix, suffixLen);
    }
    store<u32>(slot, keyLen == 0 ? 0 : wordAt(key, keyLen, prefixLen));
    out = (out + 7) & ~7;
  }
  // A malformed body leaves a dead node (position -1): eviction skips it like any other.
  if (rdBad || rd != rdEnd) return MALFORMED;
  // Give back the bound's slack: this node is the newest allocation, so it ends at the head.
  const used = (out - node + 7) & ~7;
  if (head == node + <usize>bound) {
    head = node + used;
    store<u32>(node, <u32>used);
  }
  store<f64>(node, pos, 8);
  tablePut(pos, node);
  return INGESTED;
}

/**
 * The cached node at file position `pos` (its address, or 0): the decoded-node cache builds its
 * JS node from it instead of reading, checking and parsing the entry again (layout above).
 */
export function cachedNode(pos: f64): usize {
  if (!(pos > 0)) return 0;
  return tableGet(pos);
}

// --- descent ----------------------------------------------------------------------------------

/**
 * The slot search every read of a node shares (find() here; the writer's nodes, wleaf.ts and
 * windex.ts): over entries [first, count) of `node` (first 1 for an index node, whose entry 0 has
 * no key), the first whose key is > the probe (`upper`) or >= it (`!upper`). The shared prefix
 * decides first: a probe without it is below or above every key. Then the slots' words, and whole
 * keys only on a tie. Inlined with `upper` a constant, so each caller gets its own plain loop.
 */
// @ts-ignore: decorator
@inline export function slotBound(node: usize, kind: u32, probe: usize, probeLen: u32, upper: bool): u32 {
  const count = load<u32>(node, 16);
  const cp = load<u32>(node, 24);
  const slots = slotsOf(node, cp);
  const first: u32 = kind == KIND_INDEX ? 1 : 0;
  let lo = first;
  let hi = count;
  const n = cp < probeLen ? cp : probeLen;
  const c0 = n == 0 ? 0 : compareKeys(probe, n, node + HEADER_BYTES, n);
  if (c0 < 0 || (c0 == 0 && probeLen < cp)) hi = first;
  else if (c0 > 0) lo = count;
  else {
    const pw = wordAt(probe, probeLen, cp);
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const slot = slots + (<usize>mid << 3);
      const w = load<u32>(slot);
      let before: bool; // the key at mid goes before the bound
      if (w != pw) before = w < pw;
      else {
        const rec = node + <usize>load<u32>(slot, 4);
        const c = compareKeys(recordKey(rec, kind) + cp, (load<u32>(rec) & ~REF_FLAG) - cp, probe + cp, probeLen - cp);
        before = upper ? c <= 0 : c < 0;
      }
      if (before) lo = mid + 1;
      else hi = mid;
    }
  }
  return lo;
}

/**
 * Looks up the key at PROBE (`probeLen` bytes) from the node at (`rootPos`, `rootLen`).
 * RESULT: INLINE → u32 value ptr at 0, u32 length at 4; VALUE_REF → f64 position at 0, u32
 * length at 8; MISS → f64 position at 0, u32 entry length at 8 of the node to ingest first;
 * CHILD_NOT_OLDER → f64 parent position at 0, f64 child position at 8.
 * Every node here is on disk, so each step down must go to a strictly lower position: that bounds
 * the descent by the file's size whatever the bytes say (one comparison per level).
 */
export function find(rootPos: f64, rootLen: u32, probeLen: u32): i32 {
  return findFrom(tableGet(rootPos), rootPos, rootLen, probeLen);
}

/**
 * find() from the writer's dirty node `root` (asm/wtree.ts): a dirty index record's child (at
 * position -1) is followed by its address, a clean one as find() follows it.
 */
export function findDirty(root: usize, probeLen: u32): i32 {
  return findFrom(root, -1, 0, probeLen);
}

/** find()'s descent from `node0`, the node at `rootPos` (-1: a dirty node). */
function findFrom(node0: usize, rootPos: f64, rootLen: u32, probeLen: u32): i32 {
  const probe = probePtr;
  let pos = rootPos;
  let len = rootLen;
  let node = node0;
  for (;;) {
    if (node == 0) {
      store<f64>(resultPtr, pos);
      store<u32>(resultPtr, len, 8);
      return MISS;
    }
    const kind = load<u32>(node, 4);
    const slots = slotsOf(node, load<u32>(node, 24));
    const lo = slotBound(node, kind, probe, probeLen, true);
    if (kind == KIND_INDEX) {
      const rec = node + <usize>load<u32>(slots + (<usize>(lo - 1) << 3), 4);
      const childPos = load<f64>(rec, 8);
      if (childPos < 0) {
        // A dirty child, under a dirty parent only (positions in the file are never negative).
        node = <usize>load<u32>(rec, 16);
        pos = -1;
        continue;
      }
      if (pos >= 0 && childPos >= pos) {
        store<f64>(resultPtr, pos);
        store<f64>(resultPtr, childPos, 8);
        return CHILD_NOT_OLDER;
      }
      pos = childPos;
      len = load<u32>(rec, 4);
      // The remembered child, while its serial is live (the position check is belt and braces).
      const child = <usize>load<u32>(rec, 16);
      if (child != 0 && <i32>(load<u32>(rec, 20) - evictedSerial) >= 0 && load<f64>(child, 8) == pos) {
        node = child;
        continue;
      }
      node = tableGet(pos);
      if (node != 0) {
        store<u32>(rec, <u32>node, 16);
        store<u32>(rec, load<u32>(node, 28), 20);
      }
      continue;
    }
    if (lo == 0) return NOT_FOUND;
    const rec = node + <usize>load<u32>(slots + (<usize>(lo - 1) << 3), 4);
    const kl = load<u32>(rec);
    const keyLen = kl & ~REF_FLAG;
    if ((kl & REF_FLAG) != 0) {
      if (compareKeys(rec + LEAF_REF_KEY_AT, keyLen, probe, probeLen) != 0) return NOT_FOUND;
      store<f64>(resultPtr, load<f64>(rec, 8));
      store<u32>(resultPtr, load<u32>(rec, 4), 8);
      return VALUE_REF;
    }
    if (compareKeys(rec + LEAF_INLINE_KEY_AT, keyLen, probe, probeLen) != 0) return NOT_FOUND;
    store<u32>(resultPtr, <u32>(rec + LEAF_INLINE_KEY_AT + <usize>keyLen));
    store<u32>(resultPtr, load<u32>(rec, 4), 4);
    return INLINE;
  }
  return unreachable();
}
