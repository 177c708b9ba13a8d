//! Decoded-node cache: the engine's NodeSource.
//!
//! Owns: turning Outer positions into decoded, verified nodes, bounded by `cacheBytes` and evicted
//! oldest-first. Every checkpoint writes new versions of the nodes it changed, and once a tree is
//! published the versions it replaced are forgotten (`forget`): kept, they were never asked for
//! again, and the index nodes among them grew the heap by ~100 KB a checkpoint (24 at 100k keys)
//! without end. Index nodes are few in any one tree (about one per fan-out leaves): they go to the
//! back on eviction while they take at most a quarter of the bound, and like leaves past it.
//! Nodes in the cache are immutable (their `pos` is set). A node read from disk is checksummed
//! before it is decoded; a freshly written node is inserted as it is, with no re-read.
import type { Buffer } from 'node:buffer';
import { decodeIndexBody, decodeLeafBody } from './codec.js';
import { readNodeEntry } from './entry.js';
import { ENTRY_HEADER_BYTES, Kind } from './format.js';
import type { FileLog } from './log-file.js';
import type { BinKey } from './keys.js';
import { T, type DiskRef, type TreeNode } from './node.js';
import type { NodeSource } from './tree.js';
import { UNANSWERED, WASM_CACHE_BYTES_MIN, WasmNodeCache, type FastAnswer } from './wasm-cache.js';

export class NodeCache implements NodeSource {
  private readonly nodes = new Map<number, TreeNode>();
  private leafBytes = 0;
  private indexBytes = 0;
  hits = 0;
  misses = 0;

  /** Point lookups below on-disk nodes (wasm-cache.ts); null when the cache is configured tiny. */
  fast: WasmNodeCache | null;
  /** Leaf bytes the decoded-node cache keeps (the writer, compaction's copy and delete-prefix cursors, and ranges over leaves the WASM cache can't hold). */
  private readonly cacheBytes: number;

  /**
   * `wasmCacheBytes` goes to the WASM point-lookup cache (none below 4 MiB); `decodedCacheBytes`
   * bounds the decoded leaves the writer (and cursors, without the WASM cache) use.
   */
  constructor(
    private readonly log: FileLog,
    wasmCacheBytes: number,
    decodedCacheBytes: number,
    hugePages: boolean,
  ) {
    this.fast = wasmCacheBytes >= WASM_CACHE_BYTES_MIN ? tryWasmCache(log, wasmCacheBytes, hugePages) : null;
    this.cacheBytes = decodedCacheBytes;
  }

  /** A point lookup below `ref` through the WASM cache, if there is one. */
  find(ref: DiskRef, key: BinKey): FastAnswer {
    return this.fast === null ? UNANSWERED : this.fast.getBin(ref, key);
  }

  load(ref: DiskRef): TreeNode {
    const hit = this.nodes.get(ref.pos);
    if (hit !== undefined) return hit;
    this.misses++;
    // A node the WASM cache holds (gets warmed it) is copied out: no pread, CRC pass or parse.
    const node = this.fast?.decoded(ref.pos, ref.len) ?? readNode(this.log, ref.pos, ref.len);
    this.add(node);
    return node;
  }

  add(node: TreeNode): void {
    if (this.nodes.has(node.pos)) return;
    this.nodes.set(node.pos, node);
    if (node.t === T.Leaf) this.leafBytes += node.len;
    else this.indexBytes += node.len;
    if (this.leafBytes + this.indexBytes > this.cacheBytes) this.evict();
  }

  /**
   * A node the writer just appended: its entry bytes (in the slab buffer at `offset`) go into the
   * WASM cache, and the decoded node into this one, unless it is a new leaf of keys appended in
   * order (LeafNode.revisited false) that the WASM cache took. A sorted load comes back to none of
   * those but the last, which is decoded again from the WASM cache; kept, every one of them
   * survived its scavenges and was copied into the old generation (sorted load of 1M keys with 2M
   * other keys live: scavenges 483 ms against 127, and 431.6k against 503.5k keys/s, medians of 5
   * alternating runs; bench/RESULTS.md round 15). Leaves the writer came back to once (scattered
   * writes) are likely to be again, and index nodes are few and start every descent: those stay.
   */
  addWritten(node: TreeNode, slabBytes: Buffer, offset: number): void {
    const tookIt = this.fast !== null && this.fast.addWritten(node.pos, slabBytes.subarray(offset, offset + node.len));
    if (node.t !== T.Leaf || node.revisited || !tookIt) this.add(node);
  }

  /** Forgets the nodes at these positions (versions a published tree replaced); absent ones are skipped. */
  forget(positions: readonly number[]): void {
    for (const pos of positions) {
      const node = this.nodes.get(pos);
      if (node === undefined) continue;
      this.nodes.delete(pos);
      this.forgetBytes(node);
    }
  }

  /** Forgets nodes before `pos` (online compaction reclaimed that space). */
  dropBelow(pos: number): void {
    this.fast?.clear();
    for (const [p, node] of this.nodes) {
      if (p >= pos) continue;
      this.nodes.delete(p);
      this.forgetBytes(node);
    }
  }

  clear(): void {
    this.fast?.clear();
    this.nodes.clear();
    this.leafBytes = 0;
    this.indexBytes = 0;
  }

  /** Cached bytes, leaves and index nodes (for tests and stats). */
  get bytes(): { leaves: number; index: number; nodes: number } {
    return { leaves: this.leafBytes, index: this.indexBytes, nodes: this.nodes.size };
  }

  private forgetBytes(node: TreeNode): void {
    if (node.t === T.Leaf) this.leafBytes -= node.len;
    else this.indexBytes -= node.len;
  }

  private evict(): void {
    const target = this.cacheBytes * 0.9;
    const indexShareMax = this.cacheBytes / 4;
    let moved = 0;
    for (const [pos, node] of this.nodes) {
      if (this.leafBytes + this.indexBytes <= target) break;
      this.nodes.delete(pos);
      // Index nodes within their share go to the back (every descent starts at them); past it,
      // the oldest go like leaves (mostly versions older checkpoints replaced).
      if (node.t !== T.Leaf && this.indexBytes <= indexShareMax && moved++ < 100_000) this.nodes.set(pos, node);
      else this.forgetBytes(node);
    }
  }
}

/**
 * Each instance reserves address space for its memory; a process that holds very many stores (or
 * a `ulimit -v`) can run out of it. Gets then take the decoded path: slower, never wrong.
 */
function tryWasmCache(log: FileLog, bytes: number, hugePages: boolean): WasmNodeCache | null {
  try {
    return new WasmNodeCache(log, bytes, hugePages);
  } catch (err) {
    process.emitWarning(`solifuge: no WebAssembly node cache (${String(err)}); gets use decoded nodes`);
    return null;
  }
}

/** Reads, verifies and decodes the node entry at `pos`. */
export function readNode(log: FileLog, pos: number, len: number): TreeNode {
  const e = readNodeEntry(log, pos, len);
  const node: TreeNode =
    e.kind === Kind.Leaf ? decodeLeafBody(e.buf, ENTRY_HEADER_BYTES, len, pos) : decodeIndexBody(e.buf, ENTRY_HEADER_BYTES, len, pos);
  node.pos = pos;
  node.len = len;
  return node;
}
