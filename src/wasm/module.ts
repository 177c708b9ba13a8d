//! The AssemblyScript core (asm/), compiled to WebAssembly by `npm install`.
//!
//! Owns: loading the module once per process with @assemblyscript/loader (the design card's
//! choice; we only call raw (ptr, len) exports, so the loader's array adapters are never on a hot
//! path and its instantiation cost is paid once), and a scratch area in linear memory that JS
//! copies bytes into before a call.
//! Invariant: views on `memory.buffer` are re-created after anything that may grow memory
//! (toolchain.md §3.1 pitfall 5); `scratch()` does that for callers.
import { instantiateSync } from '@assemblyscript/loader';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export type CoreExports = {
  memory: WebAssembly.Memory;
  alloc(size: number): number;
  free(ptr: number): void;
  crc32c(ptr: number, len: number): number;
  crc32cUpdate(crc: number, ptr: number, len: number): number;
  compareKeys(a: number, aLen: number, b: number, bLen: number): number;
  upperBound(base: number, dir: number, probe: number, probeLen: number): number;
  /** asm/descent.ts: the descent round 6 measured (bench/descent.bench.ts); -1 when absent. */
  descendFind(root: number, probe: number, probeLen: number): number;
  /** asm/slab.ts: plan → entries; bytes written or a negative code. */
  slabEncode(plan: number, planLen: number, out: number, outCap: number, table: number, maxEntries: number, start: number): number;
  /** asm/slab.ts: slabEncode in parts (state block at `state`); ENCODE_PAUSED (-4) between parts. */
  slabEncodePart(plan: number, planLen: number, out: number, outCap: number, table: number, maxEntries: number, start: number, state: number, budgetBytes: number): number;
  slabCrc(): number;
  /** asm/slab.ts: a Leaf, Index or Actions body → rows; item count or a negative code. */
  parseBody(kind: number, body: number, len: number, rows: number, maxRows: number): number;
};

// src/wasm/module.ts and dist/wasm/module.js both sit two levels below the package root.
const wasmUrl = new URL('../../asm/build/solifuge.wasm', import.meta.url);

/** The exports of the node cache (asm/cache.ts), present on every instance. */
export type CacheExports = CoreExports & {
  /** `dirtyBytes`: the writer's node region (asm/dirty.ts); 0 for none. */
  cacheInit(arenaBytes: number, inputBytes: number, dirtyBytes: number): number;
  cacheClear(): void;
  cachedNodes(): number;
  ringHead(): number;
  arenaEndAddress(): number;
  /** The end of the memory cacheInit reserved: the ring, the table and the dirty region end before it. */
  regionEndAddress(): number;
  probeAddress(): number;
  resultAddress(): number;
  inputAddress(): number;
  cacheIngest(pos: number, entryLen: number, kind: number, bodyLen: number): number;
  cacheFind(rootPos: number, rootLen: number, probeLen: number): number;
  /** cacheFind from a dirty node of the writer's tree (asm/wtree.ts). */
  cacheFindDirty(root: number, probeLen: number): number;
  cachedNode(pos: number): number;
  /** asm/dirty.ts: bytes in the writer's node blocks in use. */
  dirtyBytesInUse(): number;
  /** asm/dirty.ts: the most bytes in use since the last call (the whole region after a refused request). */
  dirtyPeakTake(): number;
  /** asm/dirty.ts: with no block in use, starts the allocator over and returns the bytes carved before (else 0). */
  dirtyTrim(): number;
  /** asm/dirty.ts: where the blocks start. */
  dirtyCarvedStart(): number;
  /** asm/dirty.ts: merges the free blocks with their free buddies (after a checkpoint). */
  dirtyCoalesce(): void;
  /** asm/dirty.ts: blocks asked for at once (wtreeSeal's); exported for the allocator's tests. */
  dirtyNeedsReset(): void;
  dirtyNeedsAdd(bytes: number): number;
  dirtyCanAllocNeeds(): number;
  /** asm/wleaf.ts: the sum of the dirty nodes' size estimates (about their encoded bytes). */
  dirtyEstimateBytes(): number;
  /** asm/wleaf.ts: the writer's leaves in linear memory (its header comment has the layout and results). */
  wleafEmpty(bytes: number): number;
  wleafFree(node: number): number;
  wleafSearch(node: number, probeLen: number): number;
  wleafSet(node: number, probeLen: number, valPtr: number, valLen: number, ref: number, refPos: number, keepOld: number): number;
  wleafUndoReset(): void;
  /** asm/wleaf.ts: gives the undo area's block back if it saves nothing; whether none is held now. */
  wleafUndoRelease(): number;
  wleafUndoOverwrite(node: number, slot: number, undoOffset: number): void;
  wleafUndoReplace(node: number, slot: number, oldOffset: number): void;
  wleafRemove(node: number, slot: number): void;
  wleafRebuild(src: number, withProbe: number, probeLen: number, extraBytes: number): number;
  wleafSplit(node: number, at: number, extraBytes: number): number;
  wleafEncode(node: number, out: number, outCap: number): number;
  /** asm/windex.ts, asm/wtree.ts: the writer's tree in linear memory. */
  widxChildSlot(node: number, keyPtr: number, keyLen: number): number;
  widxRecord(node: number, slot: number): number;
  widxEncode(node: number, out: number, outCap: number): number;
  wtreePut(rootAddr: number, rootPos: number, rootLen: number, probeLen: number, valPtr: number, valLen: number, ref: number, refPos: number, maxNodeBytes: number): number;
  wtreeDelete(rootAddr: number, rootPos: number, rootLen: number, probeLen: number, maxNodeBytes: number): number;
  wtreePutInPlace(rootAddr: number, probeLen: number, valPtr: number, valLen: number, ref: number, refPos: number, maxNodeBytes: number): number;
  wtreeUndo(): void;
  wtreeSettle(): void;
  wtreeSeal(rootAddr: number): number;
  wtreeJournaled(): number;
  /** asm/wtree.ts: staged sets (src/engine/staged-sets.ts) made in one call, and where it stopped. */
  wtreePutStaged(rootAddr: number, rootPos: number, rootLen: number, inPlace: number, staged: number, at: number, end: number, maxNodeBytes: number): number;
  wtreeStagedAt(): number;
  wtreeStagedInserted(): number;
  wtreeStagedRoot(): number;
  wtreeRetain(node: number): void;
  wtreeRelease(node: number): void;
  /** asm/wcheckpoint.ts: a checkpoint of the writer's tree (its header comment has the steps). */
  wtreePlan(root: number, plan: number, planCap: number): number;
  wtreePlanAbandon(plan: number, planLen: number): void;
  wtreeWritten(root: number): void;
  /** wtreeWritten in steps: start, then step until it returns 0 (asm/wcheckpoint.ts). */
  wtreeWrittenStart(root: number): void;
  wtreeWrittenStep(budgetBytes: number): number;
  /** asm/cache.ts adopt: a written dirty node copied into the cache under its position. */
  cacheAdopt(node: number): number;
  /** asm/pending.ts: the caller's table of positions for values not in the file yet (`count` f64). */
  pendingTable(table: number, count: number): void;
};

let compiled: WebAssembly.Module | undefined;

function compile(): WebAssembly.Module {
  let bytes: Buffer;
  try {
    bytes = readFileSync(fileURLToPath(wasmUrl));
  } catch (err) {
    throw new Error(
      `solifuge: WebAssembly module missing at ${fileURLToPath(wasmUrl)}; run \`npm run build:wasm\` (${String(err)})`,
    );
  }
  return new WebAssembly.Module(bytes as Uint8Array<ArrayBuffer>);
}

/**
 * The instance's own exports, not the loader's: the loader wraps every function in
 * `(...args) => { setArgumentsLength(args.length); return elem(...args) }`, a rest array and a
 * spread on every call (each tree write and get makes one or more). None of ours takes optional
 * arguments (the module exports no `__setArgumentsLength`), so the raw call is the same call.
 * A plain copy: the instance's exports object is frozen, and unsignedAlloc derives from it.
 */
function instantiate(): CacheExports {
  compiled ??= compile();
  const { instance } = instantiateSync<CacheExports>(compiled);
  const raw = instance.exports;
  assert(!('__setArgumentsLength' in raw) && !('__argumentsLength' in raw), 'an export takes optional arguments: call it through the loader');
  return { ...raw } as unknown as CacheExports;
}

/**
 * A fresh instance with its own memory: each open store's node cache gets one, so the cache's
 * globals and region belong to that store alone. The module is compiled once per process.
 */
export function instantiateCore(): CacheExports {
  return instantiate();
}

export const core: CoreExports = unsignedAlloc(instantiate());

/**
 * `alloc` returns a wasm i32: addresses past 2 GiB would come back negative, and every caller
 * adds offsets to them. (A big checkpoint's plan and output can take hundreds of MiB here.)
 */
function unsignedAlloc<E extends CoreExports>(ex: E): E {
  const alloc = ex.alloc.bind(ex);
  return Object.assign(Object.create(ex) as E, { alloc: (size: number) => alloc(size) >>> 0 });
}

/**
 * The largest block the module's allocator hands out (AssemblyScript TLSF: BLOCK_MAXSIZE, 1 GiB
 * less its 4-byte block header); `alloc` aborts for anything bigger. Buffers that grow by
 * doubling must stop at this (growCapacity), or a request that fits fails because of its slack.
 */
export const ALLOC_BYTES_MAX = 2 ** 30 - 4;

/**
 * The capacity to allocate for at least `need` bytes, growing from `cap`: doubling (so repeated
 * growth copies each byte O(1) times), at least `floor`, and never past ALLOC_BYTES_MAX. When
 * doubling would pass that limit, only `need` and `slack` are asked for: linear memory never
 * shrinks, so a gigabyte taken for slack would stay taken for the life of the process.
 * A `need` above the limit is returned as is; the allocation then fails and the caller reports it.
 */
export function growCapacity(need: number, cap: number, floor: number, slack = 0): number {
  assert(Number.isSafeInteger(need) && need >= 0, `bad capacity request ${need}`);
  const doubled = Math.max(need, cap * 2, floor);
  if (doubled <= ALLOC_BYTES_MAX) return doubled;
  return Math.max(need, Math.min(need + slack, ALLOC_BYTES_MAX));
}

/** A request the module's allocator cannot satisfy (too big, or linear memory is exhausted). */
export class WasmAllocationError extends Error {
  constructor(readonly bytes: number, what: string, override readonly cause?: unknown) {
    super(`no linear memory for ${what}: ${bytes} bytes could not be allocated${bytes > ALLOC_BYTES_MAX ? ` (the allocator's limit is ${ALLOC_BYTES_MAX})` : ''}`);
    this.name = 'WasmAllocationError';
  }
}

/**
 * `ex.alloc(size)` (the core instance's by default, or a store's own), failing with a
 * WasmAllocationError (and changing nothing) when the allocator cannot: it aborts for blocks over
 * ALLOC_BYTES_MAX, and traps when linear memory cannot grow. Requests over the limit are refused
 * here, before the allocator is entered. The address comes back unsigned (it may pass 2 GiB).
 */
export function allocOrThrow(size: number, what: string, ex: CoreExports = core): number {
  if (size > ALLOC_BYTES_MAX) throw new WasmAllocationError(size, what);
  let ptr: number;
  try {
    ptr = ex.alloc(size) >>> 0;
  } catch (err) {
    throw new WasmAllocationError(size, what, err);
  }
  assert(ptr !== 0, `the allocator returned no block for ${what}`);
  return ptr;
}

/** This layer's own assertion (the engine above it has errors.ts; nothing here imports upward). */
function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new Error(`assertion failed: ${message}`);
}

let scratchPtr = 0;
let scratchSize = 0;
let scratchView: Uint8Array = new Uint8Array(0);

/**
 * A view of at least `size` bytes of linear memory at `scratchPtr`, valid until the next call here.
 * Throws WasmAllocationError when the allocator cannot supply `size`; the old scratch area then
 * stays as it was, so a hostile or oversized request never breaks later callers (crc32c among them).
 */
export function scratch(size: number): { ptr: number; view: Uint8Array } {
  if (size > scratchSize) {
    // Allocate before letting go of the old area: if this fails, scratchPtr/scratchSize still
    // describe a live block.
    const cap = growCapacity(size, scratchSize, 64 * 1024);
    const ptr = allocOrThrow(cap, 'the scratch area');
    if (scratchPtr !== 0) core.free(scratchPtr);
    scratchPtr = ptr;
    scratchSize = cap;
  }
  if (
    scratchView.buffer !== core.memory.buffer ||
    scratchView.byteOffset !== scratchPtr ||
    scratchView.length !== scratchSize
  ) {
    scratchView = new Uint8Array(core.memory.buffer, scratchPtr, scratchSize);
  }
  return { ptr: scratchPtr, view: scratchView };
}
