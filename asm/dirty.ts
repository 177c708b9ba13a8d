// The dirty-node region: memory for nodes the writer changes (asm/wleaf.ts), beside the cache's
// ring arena (asm/cache.ts) in the same instance, so a lookup reads both with the same code.
//
// Owns: [start, start + bytes) of this instance's memory, reserved by cacheInit together with the
// ring (one memory.grow, so views on memory made after init stay valid; pages never touched take
// no resident memory). A buddy allocator: blocks of 2^k bytes, k = MIN_CLASS..MAX_CLASS, each
// aligned to its size (from the start of the blocks); a request takes the smallest free block
// that holds it, halving it down to its class, and a freed block merges with its buddy (the
// other half of the block of the class above) while that one is free too. Nothing is moved.
// Must never: hand out a block twice, or memory outside the region.
//
// Why buddies (bench/RESULTS.md round 29): the writer's nodes come in a few classes (leaves and
// index nodes of up to nodeBytesMax plus slack: 4 and 8 KiB blocks by default; a change first
// asks for room for its worst case, asm/wtree.ts), and their mix shifts with the workload. With
// one free list per class and no merging, the carved space once ended up split among classes:
// a 64 MiB region with 18 MB in use refused every change (a bigger class's list empty, nothing
// left to carve). Merging gives the space of a checkpoint's freed nodes back to every class.
//
// Tiling: the blocks area is carved lazily, from `bump`, into top blocks: the largest aligned
// power of two (at most 2^MAX_CLASS) that fits at each step, so MAX blocks, then the rest in
// decreasing powers. Every carved byte then lies in exactly one block (in use or free), and a
// block's buddy address is where some block starts whenever it is below `bump`: a block bigger
// than the buddy covering it would cover the block being freed too. So the buddy's header is
// read only below `bump`, and names its class and whether it is free.
//
// Block layout: the block's first 32 bytes hold the node's pre-header (asm/wleaf.ts), whose u32
// at 12 is this module's: the block's size class while it is in use; FREE | class while free,
// with u32 at 0 the next and u32 at 4 the previous free block of that class (0 ends the list).
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
/** Marks a free block's class (u32 at 12). */
const FREE: u32 = 0x100;

let regionStart: usize = 0;
/** The first block, and the end of the last whole 256 bytes of the region. */
let blocksStart: usize = 0;
let blocksEnd: usize = 0;
let bump: usize = 0;
let inUseBytes: usize = 0;
/** The most inUseBytes reached since dirtyPeakReset; the whole region once a request was refused. */
let peakBytes: usize = 0;

/** Takes the region (called by cacheInit; `bytes` 0: no region, every allocation fails). */
export function dirtyInit(start: usize, bytes: usize): void {
  // (cacheInit passes a 256-aligned start.)
  regionStart = start;
  const end = start + bytes;
  blocksStart = bytes >= HEADS_BYTES ? start + HEADS_BYTES : end;
  blocksEnd = blocksStart + ((end - blocksStart) & ~(<usize>(1 << MIN_CLASS) - 1));
  bump = blocksStart;
  inUseBytes = 0;
  peakBytes = 0;
  if (bytes >= HEADS_BYTES) memory.fill(start, 0, HEADS_BYTES);
}

/** The size class of a block of at least `bytes` bytes, or 0 if none is that big. */
function classFor(bytes: u32): u32 {
  if (bytes > DIRTY_BLOCK_MAX) return 0;
  const k = bytes <= (1 << MIN_CLASS) ? MIN_CLASS : 32 - clz<u32>(bytes - 1);
  return k;
}

// @ts-ignore: decorator
@inline function headOf(k: u32): usize {
  return regionStart + (<usize>(k - MIN_CLASS) << 2);
}

function push(block: usize, k: u32): void {
  const head = headOf(k);
  const next = <usize>load<u32>(head);
  store<u32>(block, <u32>next);
  store<u32>(block, 0, 4);
  store<u32>(block, k | FREE, 12);
  if (next != 0) store<u32>(next, <u32>block, 4);
  store<u32>(head, <u32>block);
  store<u32>(head, load<u32>(head, CLASSES << 2) + 1, CLASSES << 2);
}

function unlink(block: usize, k: u32): void {
  const head = headOf(k);
  const next = <usize>load<u32>(block);
  const prev = <usize>load<u32>(block, 4);
  if (prev != 0) store<u32>(prev, <u32>next);
  else store<u32>(head, <u32>next);
  if (next != 0) store<u32>(next, <u32>prev, 4);
  store<u32>(head, load<u32>(head, CLASSES << 2) - 1, CLASSES << 2);
  store<u32>(block, 0, 12); // a header no longer (the caller marks what it becomes)
}

/** The class of the next top block the blocks area would be carved into at `bump` (0: none left). */
function nextTopClass(): u32 {
  const room = blocksEnd - bump;
  if (room < (<usize>1 << MIN_CLASS)) return 0;
  const offset = bump - blocksStart;
  let k = MAX_CLASS;
  // The largest power of two that fits and that the offset is aligned to.
  while (k > MIN_CLASS && ((<usize>1 << k) > room || (offset & ((<usize>1 << k) - 1)) != 0)) k--;
  return k;
}

/**
 * A block of at least `bytes` bytes (its size is 1 << its class, kept at block + 12), or 0 when
 * the region has no free block that big or no class is that big.
 */
export function dirtyAlloc(bytes: u32): usize {
  const k = classFor(bytes);
  if (k == 0) return 0;
  let j = k;
  while (j <= MAX_CLASS && load<u32>(headOf(j)) == 0) j++;
  let block: usize;
  if (j <= MAX_CLASS) {
    block = <usize>load<u32>(headOf(j));
    unlink(block, j);
  } else {
    j = nextTopClass();
    if (j < k) {
      // (The top blocks still to carve only get smaller.)
      peakBytes = blocksEnd - blocksStart;
      return 0;
    }
    block = bump;
    bump += <usize>1 << j;
  }
  // Halved down to class k: each upper half is free.
  while (j > k) {
    j--;
    push(block + (<usize>1 << j), j);
  }
  store<u32>(block, k, 12);
  inUseBytes += <usize>1 << k;
  if (inUseBytes > peakBytes) peakBytes = inUseBytes;
  return block;
}

/**
 * Gives a block from dirtyAlloc back; false (and nothing changed) for an address that is not a
 * block in use. (Checked here, not asserted: release builds drop assertions.)
 */
export function dirtyFree(block: usize): bool {
  if (!dirtyInUse(block)) return false;
  let k = load<u32>(block, 12);
  inUseBytes -= <usize>1 << k;
  // A header no longer once merged into the block below (a second free of it is refused).
  store<u32>(block, 0, 12);
  while (k < MAX_CLASS) {
    const buddy = blocksStart + ((block - blocksStart) ^ (<usize>1 << k));
    if (buddy >= bump || load<u32>(buddy, 12) != (k | FREE)) break;
    unlink(buddy, k);
    if (buddy < block) block = buddy;
    k++;
  }
  push(block, k);
  return true;
}

/** Whether `addr` lies within the blocks carved so far (then it may be read). */
export function dirtyContains(addr: usize): bool {
  return addr >= blocksStart && addr < bump;
}

/** Whether `block` is a block from dirtyAlloc, in use (not freed, inside the region). */
export function dirtyInUse(block: usize): bool {
  if (!dirtyContains(block) || (block & 0xff) != 0) return false;
  const k = load<u32>(block, 12);
  return k >= MIN_CLASS && k <= MAX_CLASS;
}

/**
 * Whether `count` blocks of up to `bytes` bytes each can be had now: free blocks of that size's
 * class or bigger (each holds 2^(j - k) of them) and the space not yet carved (whose top blocks
 * of that class or bigger hold (room >> k) of them: see Tiling). Any block taken meanwhile, of
 * that class or smaller, uses at most one of those counted, so a caller that checks first cannot
 * fail an allocation in between.
 */
export function dirtyCanAlloc(bytes: u32, count: u32): bool {
  const k = classFor(bytes);
  if (k == 0) return false;
  let have: u64 = <u64>((blocksEnd - bump) >>> k);
  for (let j = k; j <= MAX_CLASS && have < <u64>count; j++) {
    have += <u64>load<u32>(headOf(j), CLASSES << 2) << <u64>(j - k);
  }
  if (have >= <u64>count) return true;
  peakBytes = blocksEnd - blocksStart;
  return false;
}

/** The size in bytes of a block in use. */
export function dirtyBlockBytes(block: usize): u32 {
  return <u32>1 << load<u32>(block, 12);
}

/** Bytes in blocks in use (for the store's stats and its memory bound). */
export function dirtyBytesInUse(): f64 {
  return <f64>inUseBytes;
}

/**
 * The most bytes in use since the last call, or the whole region if a request was refused
 * meanwhile (a batch that did not fit); starts the next count from the bytes in use now. The
 * store weighs a batch's growth against the room left before the next one (src/engine/db.ts).
 */
export function dirtyPeakTake(): f64 {
  const peak = peakBytes;
  peakBytes = inUseBytes;
  return <f64>peak;
}
