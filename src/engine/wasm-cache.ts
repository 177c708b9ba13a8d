//! The point-lookup node cache in WebAssembly memory (asm/cache.ts), one instance per open store.
//!
//! Owns: the clean nodes, by file position: loading (pread, CRC check, then parse in WASM) the
//! nodes a read or the writer is missing (store-tree.ts), and answering "what is under this key,
//! below this on-disk node?" in one call. Every read and the writer (asm/wtree.ts) use it; the
//! writer's changed nodes live beside it in the same instance.
//!
//! Why in WASM memory: the engine issue asks whether nodes kept there beat decoded JS objects for
//! search. Measured (bench/RESULTS.md, round 6): at 1M keys, gets through JS nodes spent
//! a third of their time in cache misses over scattered heap objects and the heap of small
//! objects made GC the p99; one WASM descent over contiguous directories is faster.
//! The instance may also hold a dirty region (asm/dirty.ts) for the writer's tree, and slab plans
//! (plan.ts PlanWriter) built there, whose allocations grow its memory.
//! Invariant: whatever allocates in this instance calls `refreshViews()` before the views made
//! here are used again (a grown memory detaches them); the cache's own calls never allocate.
import { Buffer } from 'node:buffer';
import { addon } from '../native/addon.js';
import { instantiateCore, type CacheExports } from '../wasm/module.js';
import { readNodeEntry } from './entry.js';
import { CorruptionError } from './errors.js';
import { ENTRY_HEADER_BYTES, Kind } from './format.js';
import { inlineValueAt, latin1At, type BinKey } from './keys.js';
import type { FileLog } from './log-file.js';
import { AssertionError, assert } from './errors.js';
import { INDEX_KEY_AT, REF_FLAG, leafKeyAt, slotsAt } from './node-layout.js';
import { DiskRef, IndexNode, LeafNode, ValueRef, INDEX_CHILD0_BYTES, NODE_OVERHEAD_BYTES, indexItemBytes, keyPrefixAt, leafItemBytes, type LeafValue, type TreeNode } from './node.js';


/** The longest key a call into the instance can take: its PROBE area (asm/cache.ts). */
export const PROBE_BYTES_MAX = 65536;
/** The INPUT area's size by default: the largest node body a load can take. */
const INPUT_BYTES = 1 << 20;
/**
 * How far ahead of the ring's head its pages get faulted in (by the addon, on a pool thread; a
 * request reaches twice as far), at most and at least. Why: the first touch of fresh memory here
 * costs ~1.6 ms per 2 MiB huge page (more amid other work); a 1M-key sorted load's checkpoints
 * ingest ~140 MiB of nodes, and faulting that in on the JS thread took ~0.3 ms of each ~2.3 ms
 * commit (bench/RESULTS.md, round 14). The resident memory it adds is what the ring reaches soon
 * anyway.
 */
const PREFAULT_AHEAD_BYTES = 8 << 20;
const PREFAULT_AHEAD_MIN_BYTES = 1 << 20;
/** Fewer bytes than this and a lookup's path might not fit; the cache is not worth having. */
export const WASM_CACHE_BYTES_MIN = 4 << 20;

const enum Ingested {
  Ok = 0,
  TooBig = 1,
  Malformed = -1,
}

export class WasmNodeCache {
  private readonly ex: CacheExports;
  private mem!: Buffer;
  /** Views of the whole memory, for leaf views (range cursors) reading nodes in place (made again by refreshViews). */
  u8!: Uint8Array;
  u32!: Uint32Array;
  f64!: Float64Array;
  /** Index in `u32` of the eviction epoch (asm/cache.ts, RESULT + 16). */
  readonly epochIndex: number;
  private readonly probe: number;
  private readonly result: number;
  private readonly input: number;
  misses = 0;
  /**
   * Whether madvise(MADV_HUGEPAGE) succeeded over the region (OpenOptions.hugePages). It succeeds
   * with THP set to "never" too: the kernel then keeps 4 KiB pages.
   */
  readonly hugePages: boolean;
  /** Addresses below this are faulted in or being so; the arena's end once that is done (or refused). */
  private prefaultedTo: number;
  private prefaulting = false;
  /** How far a checkpoint about to be cached asked the ring to be faulted in (prefaultFor). */
  private prefaultWanted = 0;
  private readonly arenaStart: number;
  private readonly arenaEnd: number;
  /** Bytes the addon was asked to fault in (stats and tests). */
  prefaultRequestedBytes = 0;

  constructor(
    private readonly log: FileLog,
    arenaBytes: number,
    hugePages = false,
    /** Bytes reserved for the writer's dirty nodes (asm/dirty.ts), after the arena; 0: none. */
    dirtyBytes = 0,
    /** The INPUT area: node bodies up to this size can be loaded (at least 1 MiB). */
    private readonly inputBytes = INPUT_BYTES,
  ) {
    this.ex = instantiateCore();
    const start = this.ex.cacheInit(arenaBytes, inputBytes, dirtyBytes);
    if (start === 0) throw new Error(`solifuge: could not reserve ${arenaBytes} bytes of WebAssembly memory for the node cache`);
    // Before the ring or the table are touched, so their pages are faulted in huge from the start.
    // (Only the region: the runtime's heap, grown past it at init, holds plans, not nodes.)
    const buf = this.ex.memory.buffer;
    const regionEnd = this.ex.regionEndAddress() >>> 0;
    this.hugePages = hugePages && addon?.adviseHugePages !== undefined && addon.adviseHugePages(buf, start, regionEnd - start) === 0;
    this.makeViews();
    // Addresses come back as i32: unsigned, they may pass 2 GiB (cacheBytes goes to 3 GiB).
    this.probe = this.ex.probeAddress() >>> 0;
    this.result = this.ex.resultAddress() >>> 0;
    this.input = this.ex.inputAddress() >>> 0;
    this.epochIndex = (this.result + 16) >>> 2;
    this.arenaStart = this.ex.ringHead() >>> 0; // the ring starts empty at the arena's start
    this.arenaEnd = this.ex.arenaEndAddress() >>> 0;
    this.prefaultedTo = addon?.prefault !== undefined ? this.arenaStart : this.arenaEnd;
    // cacheInit bumps it: a module built before the epoch existed would leave it 0 and cursors
    // would never notice an eviction.
    assert(this.epoch !== 0, 'solifuge: the WebAssembly module has no eviction epoch; rebuild it (npm run build:wasm)');
  }

  /** The instance the cache lives in: the writer's tree and the store's slab plans share it. */
  get instance(): CacheExports {
    return this.ex;
  }

  /** A Buffer over the instance's whole memory (valid until it grows: refreshViews). */
  get buffer(): Buffer {
    return this.mem;
  }

  /** The PROBE, INPUT and RESULT areas' addresses (asm/cache.ts). */
  get areas(): { probe: number; input: number; result: number } {
    return { probe: this.probe, input: this.input, result: this.result };
  }

  /**
   * Gives the changed nodes' region back to the kernel if no node is in it (asm/dirty.ts
   * dirtyTrim, then the addon's discardPages). Returns the bytes given back: 0 while a node is in
   * use, or without the addon (nothing changes then).
   */
  trimDirtyRegion(): number {
    if (addon?.discardPages === undefined) return 0;
    this.ex.wleafUndoRelease(); // (the undo area's block, once taken, is in use until let go)
    const carved = this.ex.dirtyTrim();
    if (carved === 0) return 0;
    // A refusal leaves the pages resident; the allocator starting over from them is right anyway.
    return this.discardPages(this.ex.dirtyCarvedStart() >>> 0, carved) ? carved : 0;
  }

  /**
   * Gives the whole 4 KiB pages inside [ptr, ptr + len) of the instance's memory back to the
   * kernel (the addon's discardPages): they read as zeros afterwards. False without the addon, or
   * if refused. The caller owns the range and holds nothing in it.
   */
  discardPages(ptr: number, len: number): boolean {
    return addon?.discardPages !== undefined && addon.discardPages(this.ex.memory.buffer, ptr, len) === 0;
  }

  /** Makes the views on the instance's memory again if it grew since (see the invariant above). */
  refreshViews(): void {
    if (this.u8.buffer !== this.ex.memory.buffer) this.makeViews();
  }

  private makeViews(): void {
    const ab = this.ex.memory.buffer;
    this.mem = Buffer.from(ab);
    this.u8 = new Uint8Array(ab);
    this.u32 = new Uint32Array(ab);
    this.f64 = new Float64Array(ab);
  }

  /** Moves whenever a cached node may have been evicted; addresses taken before must be re-found. */
  get epoch(): number {
    return this.u32[this.epochIndex];
  }

  /**
   * Moves whenever a checkpoint's switch may have freed nodes of the writer's tree in this
   * instance (asm/cache.ts RESULT + 20): with `epoch`, what a WasmTreeCursor watches.
   */
  get treeEpoch(): number {
    return this.u32[this.epochIndex + 1];
  }

  /**
   * The address of the cached node at `pos` (entry length `len`), reading, verifying and parsing
   * it first when it is missing; 0 when it can't be cached (too big for the ring).
   */
  nodeAt(pos: number, len: number): number {
    const ptr = this.ex.cachedNode(pos) >>> 0;
    if (ptr !== 0) return ptr;
    // Too big to ingest: say so before reading it (callers fall back to decoded nodes each visit).
    if (len - ENTRY_HEADER_BYTES > this.inputBytes) return 0;
    if (!this.load(pos, len)) return 0;
    return this.ex.cachedNode(pos) >>> 0;
  }

  get nodes(): number {
    return this.ex.cachedNodes();
  }

  clear(): void {
    this.ex.cacheClear();
  }

  /**
   * The node at address `ptr` (the cache's copy, or a dirty node of the writer's tree: the same
   * layout) as a decoded JS node with position `pos` (-1: not written). An index node's dirty
   * children (negative positions) come out as DiskRef(-1, 0), their addresses in `dirtyKids`.
   */
  decodedAt(ptr: number, pos: number, len: number, dirtyKids: number[] | null): TreeNode {
    const m = this.mem;
    const kind = m.readUInt32LE(ptr + 4);
    const count = m.readUInt32LE(ptr + 16);
    if (!(kind === Kind.Leaf || kind === Kind.Index)) throw new AssertionError(`a node of kind ${kind} at ${ptr}`);
    const slots = ptr + slotsAt(m.readUInt32LE(ptr + 24));
    if (kind === Kind.Index) {
      const keys: BinKey[] = new Array(count - 1);
      const kids: DiskRef[] = new Array(count);
      // The search accelerator straight from the bytes (the writer and lookups would build it).
      const pfx = new Float64Array(count - 1);
      let bytes = NODE_OVERHEAD_BYTES + INDEX_CHILD0_BYTES;
      for (let i = 0; i < count; i++) {
        const rec = ptr + m.readUInt32LE(slots + i * 8 + 4);
        if (i > 0) {
          const kl = m.readUInt32LE(rec);
          const key = latin1At(m, rec + INDEX_KEY_AT, kl) as BinKey;
          keys[i - 1] = key;
          pfx[i - 1] = keyPrefixAt(m, rec + INDEX_KEY_AT, kl);
          bytes += indexItemBytes(key);
        }
        const kidPos = m.readDoubleLE(rec + 8);
        if (kidPos < 0) {
          assert(dirtyKids !== null, 'a cached node with a child by address');
          dirtyKids[i] = m.readUInt32LE(rec + 16);
          kids[i] = new DiskRef(-1, 0);
        } else kids[i] = new DiskRef(kidPos, m.readUInt32LE(rec + 4));
      }
      const node = new IndexNode(0, keys, kids, bytes);
      node.pfx = pfx;
      node.pos = pos;
      node.len = len;
      return node;
    }
    const keys: BinKey[] = new Array(count);
    const vals: LeafValue[] = new Array(count);
    const pfx = new Float64Array(count);
    let bytes = NODE_OVERHEAD_BYTES;
    for (let i = 0; i < count; i++) {
      const rec = ptr + m.readUInt32LE(slots + i * 8 + 4);
      const kl = m.readUInt32LE(rec);
      const vl = m.readUInt32LE(rec + 4);
      const keyLen = kl & ~REF_FLAG;
      const ko = leafKeyAt(rec, kl);
      const key = latin1At(m, ko, keyLen) as BinKey;
      pfx[i] = keyPrefixAt(m, ko, keyLen);
      const v: LeafValue = (kl & REF_FLAG) !== 0 ? new ValueRef(m.readDoubleLE(rec + 8), vl, undefined) : inlineValueAt(m, ko + keyLen, vl);
      keys[i] = key;
      vals[i] = v;
      bytes += leafItemBytes(key, v);
    }
    const node = new LeafNode(0, keys, vals, bytes);
    node.pfx = pfx;
    node.pos = pos;
    node.len = len;
    return node;
  }

  /**
   * Asks the addon to fault in the pages ahead of the ring's head, one request at a time: as far
   * ahead as the ring has come so far (a small store stays small), at most PREFAULT_AHEAD_BYTES.
   * Once requests reached the arena's end every page has been touched, and nothing more is asked.
   * (The hash table is left alone: its pages are touched at random from the first nodes on, and
   * it is under 1% of the region.)
   */
  prefaultAhead(): void {
    if (this.prefaulting || this.prefaultedTo >= this.arenaEnd) return;
    const head = this.ex.ringHead() >>> 0;
    const ahead = Math.min(PREFAULT_AHEAD_BYTES, Math.max(PREFAULT_AHEAD_MIN_BYTES, head - this.arenaStart));
    if (head + ahead <= this.prefaultedTo && this.prefaultWanted <= this.prefaultedTo) return;
    // If the head got past (the previous request was slow), faulting behind it is too late.
    const from = Math.max(this.prefaultedTo, head);
    const to = Math.min(Math.max(head + 2 * ahead, this.prefaultWanted), this.arenaEnd);
    if (to <= from) return;
    this.prefaultedTo = to;
    this.prefaulting = true;
    this.prefaultRequestedBytes += to - from;
    // (The closure keeps this instance, hence its memory, alive until the addon is done with it.)
    void addon!.prefault!(this.ex.memory.buffer, from, to - from).then((rc) => {
      this.prefaulting = false;
      if (rc < 0) this.prefaultedTo = this.arenaEnd; // unsupported (before Linux 5.14): stop asking
      else if (this.prefaultWanted > this.prefaultedTo) this.prefaultAhead();
    });
  }

  /**
   * prefaultAhead, as far as `bytes` past the ring's head: a checkpoint about to be written asks
   * for what its switch will copy into the ring (every node it writes), so that the pool faults
   * those pages in while it encodes and appends. With the ring's advice for huge pages, a 117 MB
   * checkpoint at 1M keys met them on the JS thread during its switch: writes waited ~660 ms for
   * it, against ~430 without the advice (bench/RESULTS.md round 29).
   */
  prefaultFor(bytes: number): void {
    if (this.prefaultedTo >= this.arenaEnd) return;
    this.prefaultWanted = Math.min((this.ex.ringHead() >>> 0) + Math.floor(bytes), this.arenaEnd);
    this.prefaultAhead();
  }

  /** Reads, verifies and parses the node entry at `pos`; false if it can't be cached. */
  private load(pos: number, len: number): boolean {
    this.misses++;
    const e = readNodeEntry(this.log, pos, len);
    if (e.bodyLen > this.inputBytes) return false;
    this.mem.set(e.buf.subarray(ENTRY_HEADER_BYTES, ENTRY_HEADER_BYTES + e.bodyLen), this.input);
    const r = this.ex.cacheIngest(pos, len, e.kind, e.bodyLen);
    if (r === Ingested.Malformed) throw new CorruptionError(pos, `malformed ${e.kind === Kind.Leaf ? 'leaf' : 'index'} entry`);
    this.prefaultAhead();
    return r === Ingested.Ok;
  }
}
