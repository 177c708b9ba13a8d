// The dirty-node region: memory for nodes the writer changes (asm/wleaf.ts), beside the cache's
// ring arena (asm/cache.ts) in the same instance, so a lookup reads both with the same code.
//
// Owns: [start, start + bytes) of this instance's memory, reserved by cacheInit together with the
// ring (one memory.grow, so views on memory made after init stay valid; pages never touched take
// no resident memory). A buddy allocator with lazy merging: blocks of 2^k bytes, k =
// MIN_CLASS..MAX_CLASS, each aligned to its size (from the start of the blocks). A request takes
// the block last freed in its class, else halves the smallest bigger free block down to its
// class, else carves one from `bump` (new pages last). A freed block goes on its class's list as
// it is; every free block is merged with its free buddy (the other half of the block of the class
// above), class by class (coalesce), by a checkpoint once it has freed the nodes it wrote
// (dirtyCoalesce), and by a request that finds nothing, which then tries again. Nothing is moved.
// Must never: hand out a block twice, or memory outside the region.
//
// Why buddies (bench/RESULTS.md round 29): the writer's nodes come in a few classes (leaves and
// index nodes of up to nodeBytesMax plus slack: 4 and 8 KiB blocks by default; a change first
// asks for room for its worst case, asm/wtree.ts), and their mix shifts with the workload. With
// one free list per class and no merging, the carved space once ended up split among classes:
// a 64 MiB region with 18 MB in use refused every change (a bigger class's list empty, nothing
// left to carve). Merging gives the space of a checkpoint's freed nodes back to every class.
// Why lazily: merging at every free (a doubly linked list per class, to take the buddy out)
// cost a stream of groups of 100 at 1M keys a third of its rate. A freed block merged up to the
// biggest class, the next request of its size split that again, writing headers over a quarter
// MiB, and each list change touched a neighbour's memory too (dirtyAlloc took 160-182 ms of a 3 s
// window, against under 18 before). Now a request costs what it did before buddies: one read of
// the block it takes.
//
// Tiling: every byte of [blocksStart, bump) lies in exactly one block, in use or free, aligned to
// its size: carving a block of class k first carves the bytes up to the next multiple of 2^k as
// free blocks of the largest aligned sizes that fit. So where a block's buddy starts below
// `bump`, some block starts there: a block bigger than the buddy covering it would cover the
// block itself too. The buddy's header is read only below `bump`, and names its class and whether
// it is free.
//
// Block layout: the block's first 32 bytes hold the node's pre-header (asm/wleaf.ts), whose u32
// at 12 is this module's: the block's size class while it is in use; FREE | class while free,
// with u32 at 0 the next free block of that class (0 ends the list); 0 for a block merged into
// the one below it (a second free of it is refused).
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
/** The most inUseBytes reached since dirtyPeakTake; the whole region once a request was refused. */
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
  store<u32>(block, load<u32>(head));
  store<u32>(block, k | FREE, 12);
  store<u32>(head, <u32>block);
  store<u32>(head, load<u32>(head, CLASSES << 2) + 1, CLASSES << 2);
}

/** The first block of class k's list, taken off it (0 if the list is empty). */
function pop(k: u32): usize {
  const head = headOf(k);
  const block = <usize>load<u32>(head);
  if (block == 0) return 0;
  store<u32>(head, load<u32>(block));
  store<u32>(head, load<u32>(head, CLASSES << 2) - 1, CLASSES << 2);
  return block;
}

/** `bump` rounded up to a multiple of 2^k from the blocks' start. */
// @ts-ignore: decorator
@inline function alignedBump(k: u32): usize {
  const mask = (<usize>1 << k) - 1;
  return blocksStart + ((bump - blocksStart + mask) & ~mask);
}

/** Carves a block of class k at the next multiple of 2^k, the bytes before it going free (Tiling); 0 if it does not fit. */
function carve(k: u32): usize {
  const at = alignedBump(k);
  if (at + (<usize>1 << k) > blocksEnd) return 0;
  while (bump < at) {
    // The largest block the offset is aligned to that still ends by `at`.
    const offset = bump - blocksStart;
    let j = k - 1;
    while ((offset & ((<usize>1 << j) - 1)) != 0 || bump + (<usize>1 << j) > at) j--;
    push(bump, j);
    bump += <usize>1 << j;
  }
  bump = at + (<usize>1 << k);
  return at;
}

/**
 * A block of at least `bytes` bytes (its size is 1 << its class, kept at block + 12), or 0 when
 * the region has no room for it or no class is that big.
 */
export function dirtyAlloc(bytes: u32): usize {
  const k = classFor(bytes);
  if (k == 0) return 0;
  let block = pop(k);
  if (block == 0) {
    // A bigger free block before new space: the region's pages in use stay as few as they can.
    let j = k + 1;
    while (j <= MAX_CLASS && load<u32>(headOf(j)) == 0) j++;
    if (j <= MAX_CLASS) {
      block = pop(j);
      // Halved down to class k: each upper half is free.
      while (j > k) {
        j--;
        push(block + (<usize>1 << j), j);
      }
    } else {
      block = carve(k);
      if (block == 0) {
        // Merged, the free blocks may hold it.
        if (coalesce(k)) return dirtyAlloc(bytes);
        peakBytes = blocksEnd - blocksStart;
        return 0;
      }
    }
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
  const k = load<u32>(block, 12);
  inUseBytes -= <usize>1 << k;
  push(block, k);
  return true;
}

/**
 * Merges every free block whose buddy is free too, from the smallest class up (a merged block
 * may merge again in the class above); true if that left a free block of class `k` or bigger.
 * Per class, two walks of its list: the first marks each pair (the lower block's header says the
 * class above, the upper one's 0; an upper half not carved yet is carved with it), the second
 * builds the lists again from the marks. The links
 * change only in the second, each one after it was read (a block's link is the list's next).
 */
function coalesce(k: u32): bool {
  let merged = false;
  for (let c = MIN_CLASS; c < MAX_CLASS; c++) {
    const head = headOf(c);
    const first = <usize>load<u32>(head);
    let pairs = false;
    for (let block = first; block != 0; block = <usize>load<u32>(block)) {
      if (load<u32>(block, 12) != (c | FREE)) continue; // (marked already, as a buddy)
      const buddy = blocksStart + ((block - blocksStart) ^ (<usize>1 << c));
      if (buddy >= bump) {
        // The last block carved, its buddy not carved yet: the two make a free block of the
        // class above, carved now (no byte of the buddy is touched). Else a request aligned past
        // it could never have the bytes after it (carve skips to a multiple of its size).
        if (buddy == bump && buddy + (<usize>1 << c) <= blocksEnd) {
          store<u32>(block, (c + 1) | FREE, 12);
          bump = buddy + (<usize>1 << c);
          pairs = true;
        }
        continue;
      }
      if (load<u32>(buddy, 12) != (c | FREE)) continue;
      store<u32>(block < buddy ? block : buddy, (c + 1) | FREE, 12);
      store<u32>(block < buddy ? buddy : block, 0, 12);
      pairs = true;
    }
    if (!pairs) continue;
    merged = true;
    store<u32>(head, 0);
    store<u32>(head, 0, CLASSES << 2);
    let block = first;
    while (block != 0) {
      const next = <usize>load<u32>(block);
      const h = load<u32>(block, 12);
      if (h == (c | FREE)) push(block, c);
      else if (h == ((c + 1) | FREE)) push(block, c + 1);
      block = next;
    }
  }
  if (!merged) return false;
  for (let j = k; j <= MAX_CLASS; j++) if (load<u32>(headOf(j)) != 0) return true;
  return false;
}

/**
 * Merges the free blocks (coalesce) now: a checkpoint calls this once it has freed the nodes it
 * wrote, when most of the region is free, so that the next interval's nodes find whole big
 * blocks instead of the scattered small ones the last interval left (reused last-freed-first,
 * those spread its nodes over the whole region, and a change's room for its worst case, many
 * blocks of its biggest class, was then refused with most of the region free).
 */
export function dirtyCoalesce(): void {
  coalesce(MAX_CLASS);
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
 * class or bigger (each holds 2^(j - k) of them) and whole blocks of it that fit past the next
 * multiple of 2^k at `bump` (carve). A block taken meanwhile, of that class or smaller, uses at
 * most one of those counted (a smaller one carved moves that multiple on by one block at most),
 * so a caller that checks first cannot fail an allocation in between. Short of them, the free
 * blocks are merged (coalesce) and counted again.
 */
export function dirtyCanAlloc(bytes: u32, count: u32): bool {
  const k = classFor(bytes);
  if (k == 0) return false;
  const at = alignedBump(k);
  let have: u64 = at < blocksEnd ? <u64>((blocksEnd - at) >>> k) : 0;
  for (let j = k; j <= MAX_CLASS && have < <u64>count; j++) {
    have += <u64>load<u32>(headOf(j), CLASSES << 2) << <u64>(j - k);
  }
  if (have >= <u64>count) return true;
  if (coalesce(k)) return dirtyCanAlloc(bytes, count);
  peakBytes = blocksEnd - blocksStart;
  return false;
}

/**
 * Blocks of several classes asked for at once (wtreeSeal's copies, each its own size): counted by
 * dirtyNeedsAdd, then checked all together by dirtyCanAllocNeeds.
 */
const NEEDS = memory.data(<i32>(CLASSES << 2));

export function dirtyNeedsReset(): void {
  memory.fill(NEEDS, 0, CLASSES << 2);
}

/** Counts one block for a request of `bytes` (as dirtyAlloc takes it); false if no block is that big. */
export function dirtyNeedsAdd(bytes: u32): bool {
  const k = classFor(bytes);
  if (k == 0) return false;
  const at = NEEDS + (<usize>(k - MIN_CLASS) << 2);
  store<u32>(at, load<u32>(at) + 1);
  return true;
}

/**
 * Whether every block counted since dirtyNeedsReset can be taken, in any order, merging the free
 * blocks first if they fall short. From the biggest class down, each class's needs take its free
 * blocks and the halves of what the classes above left over (a request takes its own class
 * first, then halves the smallest bigger free block, then carves). Exact for the free blocks; the
 * space not carved yet counts only as its whole blocks of the biggest class (below).
 * (dirtyCanAlloc asks for `count` blocks of one class: a seal of thousands of paths counted at
 * its biggest node's class asked for 4-8 times the room its copies take.)
 */
export function dirtyCanAllocNeeds(): bool {
  for (;;) {
    // The space not carved yet counts as its whole blocks of the biggest class only. Carving
    // goes lowest first: the bytes before the first such block (padding or small blocks carved
    // on the way) and after the last are a bonus, not counted, since a request could take its
    // block out of a counted one instead.
    const first = alignedBump(MAX_CLASS);
    const uncarvedBiggest: u64 = first < blocksEnd ? <u64>((blocksEnd - first) >>> MAX_CLASS) : 0;
    let spare: u64 = 0;
    let short = false;
    for (let k = MAX_CLASS; k >= MIN_CLASS; k--) {
      const have = spare + <u64>load<u32>(headOf(k), CLASSES << 2) + (k == MAX_CLASS ? uncarvedBiggest : 0);
      const need = <u64>load<u32>(NEEDS + (<usize>(k - MIN_CLASS) << 2));
      if (have < need) {
        short = true;
        break;
      }
      // (Bounded: the region holds under 2^32 bytes, so under 2^32 of the smallest blocks.)
      spare = (have - need) << 1;
    }
    if (!short) return true;
    if (!coalesce(MIN_CLASS)) break;
  }
  peakBytes = blocksEnd - blocksStart;
  return false;
}

/**
 * Starts the allocator over, as dirtyInit left it, if no block is in use (a checkpoint freed every
 * node it wrote and nothing else holds one): the caller then discards the pages carved so far
 * (madvise MADV_DONTNEED, src/engine/store-tree.ts trimDirtyRegion), since an idle store's region
 * otherwise keeps its load's peak resident (~200 MB after a 1M-key random load). The next batch
 * carves from the start again and faults in what it touches. Returns the bytes carved from
 * dirtyCarvedStart() before, or 0 with nothing changed while a block is in use.
 */
export function dirtyTrim(): f64 {
  if (inUseBytes != 0) return 0;
  const carved = bump - blocksStart;
  bump = blocksStart;
  if (blocksStart - regionStart == HEADS_BYTES) memory.fill(regionStart, 0, HEADS_BYTES);
  return <f64>carved;
}

/** Where the blocks start: the pages dirtyTrim gives back begin here. */
export function dirtyCarvedStart(): usize {
  return blocksStart;
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
