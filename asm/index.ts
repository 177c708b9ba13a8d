// The WebAssembly module's exports: raw (ptr, len) entry points only, so hot calls never go
// through array-lowering adapters (toolchain.md §3.2). Memory for callers comes from alloc/free.

export { crc32c, crc32cUpdate } from './crc32c';
export { compareKeys, upperBound } from './node';
export { find as descendFind } from './descent';

/** Raw allocation in linear memory for the JS side (scratch buffers, key probes). */
export function alloc(size: usize): usize {
  return heap.alloc(size);
}

export function free(ptr: usize): void {
  heap.free(ptr);
}
export { cacheInit, cacheClear, cachedNodes, ringHead, arenaEndAddress, regionEndAddress, probeAddress, resultAddress, inputAddress, ingest as cacheIngest, adopt as cacheAdopt, find as cacheFind, findDirty as cacheFindDirty, cachedNode } from './cache';
export { slabEncode, slabEncodePart, slabCrc, parseBody } from './slab';
export { dirtyBytesInUse, dirtyCanAllocNeeds, dirtyCarvedStart, dirtyCoalesce, dirtyNeedsAdd, dirtyNeedsReset, dirtyPeakTake, dirtyTrim } from './dirty';
export { dirtyEstimateBytes, wleafEmpty, wleafFree, wleafSearch, wleafSet, wleafUndoReset, wleafUndoRelease, wleafUndoOverwrite, wleafUndoReplace, wleafRemove, wleafRebuild, wleafSplit, wleafEncode } from './wleaf';
export { widxChildSlot, widxRecord, widxEncode } from './windex';
export { wtreePut, wtreeDelete, wtreeRetain, wtreeRelease, wtreePutInPlace, wtreeUndo, wtreeSettle, wtreeSeal, wtreeJournaled, wtreePutStaged, wtreeStagedAt, wtreeStagedInserted, wtreeStagedRoot } from './wtree';
export { wtreePlan, wtreePlanAbandon, wtreeWritten, wtreeWrittenStart, wtreeWrittenStep } from './wcheckpoint';
export { pendingTable } from './pending';
