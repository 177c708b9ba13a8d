//! The node cache's node layout (asm/cache.ts documents it: header, prefix, slots, records), as
//! the JS readers of linear memory read it: the cache's lookups and leaf views (wasm-cache.ts) and
//! the cursors over the writer's tree (wasm-tree-cursor.ts). Offsets are from the node or record.
import { Buffer } from 'node:buffer';

/** The node header's bytes; the prefix follows it, then the slots. */
export const NODE_HEADER_BYTES = 32;
/** On a leaf record's key length: its value is kept in a Value entry (a position), not inline. */
export const REF_FLAG = 0x8000_0000;
/** Where an index record's key starts. */
export const INDEX_KEY_AT = 24;

/** Byte offset (from the node) of a node's slot array, after the padded prefix. */
export function slotsAt(prefixLen: number): number {
  return NODE_HEADER_BYTES + ((prefixLen + 7) & ~7);
}

/** Where a leaf record's key starts, from its first word (key length | REF_FLAG). */
export function leafKeyAt(rec: number, keyWord: number): number {
  return rec + ((keyWord & REF_FLAG) !== 0 ? 16 : 8);
}

/**
 * `u8[p, p + n)` into a fresh (pooled) Buffer: a byte loop for short runs, TypedArray#set above.
 * Reads of nodes in place copy keys and values out so (round 9: a view and a copy cost a scan
 * step more; round 27: range scans +40% in a harness once the cursor copied so too).
 */
export function copyOut(u8: Uint8Array, p: number, n: number): Buffer {
  const out = Buffer.allocUnsafe(n);
  if (n <= 32) for (let j = 0; j < n; j++) out[j] = u8[p + j];
  else out.set(u8.subarray(p, p + n));
  return out;
}
