// The dirty-node region: memory for nodes the writer changes (asm/wleaf.ts), beside the cache's
// ring arena (asm/cache.ts) in the same instance, so a lookup reads both with the same code.
//
// Owns: [start, start + bytes) of this instance's memory, reserved by cacheInit together with the
// ring (one memory.grow, so views on memory made after init stay valid; pages never touched take
// no resident memory). Blocks of 2^k bytes, k = MIN_CLASS..MAX_CLASS, carved from a bump pointer
// and recycled through one free list per size class; nothing is moved or coalesced.
// Must never: hand out a block twice, or memory outside the region.
//
// Why size classes: the writer's nodes are bounded by nodeBytesMax plus one item, so a handful of
// classes covers them, a free costs one store, and a freed block is reused by the next node of
// its class (a checkpoint frees about as many leaves as the next interval copies).
//
// Block layout: the block's first 16 bytes are the node's pre-header (asm/wleaf.ts); its u32 at
// 12 holds the size class while the block is in use. A free block's u32 at 0 links the next free
// block of its class (0 ends the list).
//
// Region layout: CLASSES × u32 free-list heads, then CLASSES × u32 free-list lengths, padded to
// 256 bytes, then the blocks (each 256-aligned: the region starts 256-aligned and every block
// size is a multiple of 256).

export const MIN_CLASS: u32 = 8;
export const MAX_CLASS: u32 = 18;
const CLASSES: u32 = MAX_CLASS - MIN_CLASS + 1;
const HEADS_BYTES: usize = 256;
/** The largest block, in bytes. */
export const DIRTY_BLOCK_MAX: u32 = 1 << MAX_CLASS;

let regionStart: usize = 0;
let regionEnd: usize = 0;
let bump: usize = 0;
let inUseBytes: usize = 0;

/** Takes the region (called by cacheInit; `bytes` 0: no region, every allocation fails). */
export function dirtyInit(start: usize, bytes: usize): void {
  // (cacheInit passes a 256-aligned start.)
  regionStart = start;
  regionEnd = start + bytes;
  bump = bytes >= HEADS_BYTES ? start + HEADS_BYTES : regionEnd;
  inUseBytes = 0;
  if (bytes >= HEADS_BYTES) memory.fill(start, 0, HEADS_BYTES);
}

/** The size class of a block of at least `bytes` bytes, or 0 if none is that big. */
function classFor(bytes: u32): u32 {
  if (bytes > DIRTY_BLOCK_MAX) return 0;
  const k = bytes <= (1 << MIN_CLASS) ? MIN_CLASS : 32 - clz<u32>(bytes - 1);
  return k;
}

/**
 * A block of at least `bytes` bytes (its size is 1 << its class, kept at block + 12), or 0 when
 * the region is full or no class is that big.
 */
export function dirtyAlloc(bytes: u32): usize {
  const k = classFor(bytes);
  if (k == 0) return 0;
  const head = regionStart + (<usize>(k - MIN_CLASS) << 2);
  let block = <usize>load<u32>(head);
  if (block != 0) {
    store<u32>(head, load<u32>(block));
    store<u32>(head, load<u32>(head, CLASSES << 2) - 1, CLASSES << 2);
  } else {
    const size = <usize>1 << k;
    if (size > regionEnd - bump) return 0;
    block = bump;
    bump += size;
  }
  store<u32>(block, k, 12);
  inUseBytes += <usize>1 << k;
  return block;
}

/**
 * Gives a block from dirtyAlloc back; false (and nothing changed) for an address that is not a
 * block in use. (Checked here, not asserted: release builds drop assertions.)
 */
export function dirtyFree(block: usize): bool {
  if (!dirtyInUse(block)) return false;
  const k = load<u32>(block, 12);
  const head = regionStart + (<usize>(k - MIN_CLASS) << 2);
  store<u32>(block, load<u32>(head));
  store<u32>(block, 0, 12);
  store<u32>(head, <u32>block);
  store<u32>(head, load<u32>(head, CLASSES << 2) + 1, CLASSES << 2);
  inUseBytes -= <usize>1 << k;
  return true;
}

/** Whether `addr` lies within the blocks carved so far (then it may be read). */
export function dirtyContains(addr: usize): bool {
  return addr >= regionStart + HEADS_BYTES && addr < bump;
}

/** Whether `block` is a block from dirtyAlloc, in use (not freed, inside the region). */
export function dirtyInUse(block: usize): bool {
  if (!dirtyContains(block) || (block & 0xff) != 0) return false;
  const k = load<u32>(block, 12);
  return k >= MIN_CLASS && k <= MAX_CLASS;
}

/**
 * Whether `count` blocks of up to `bytes` bytes each can be had now: from the free list of that
 * size's class or the space not yet carved. A smaller block taken meanwhile uses less of that
 * space than counted, so a caller that checks first cannot fail an allocation in between.
 */
export function dirtyCanAlloc(bytes: u32, count: u32): bool {
  const k = classFor(bytes);
  if (k == 0) return false;
  const free = load<u32>(regionStart + (<usize>(k - MIN_CLASS) << 2), CLASSES << 2);
  if (free >= count) return true;
  return <u64>((regionEnd - bump) >>> k) >= <u64>(count - free);
}

/** The size in bytes of a block in use. */
export function dirtyBlockBytes(block: usize): u32 {
  return <u32>1 << load<u32>(block, 12);
}

/** Bytes in blocks in use (for the store's stats and its memory bound). */
export function dirtyBytesInUse(): f64 {
  return <f64>inUseBytes;
}
