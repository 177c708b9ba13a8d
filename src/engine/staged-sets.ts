//! The sets a batch holds back (batch-writer.ts setLater), written straight into the instance as
//! the records asm/wtree.ts wtreePutStaged makes in one call (its comment has the layout).
//!
//! Owns: one block of the instance's memory, and the records in it not made yet.
//! Why: made one call a set, a 1,000-key batch crossed into WebAssembly a thousand times, each
//! crossing with its own checks and results read back in JS; a group of up to SET_LATER_MAX sets
//! now crosses once (bench/RESULTS.md round 28).
//! Invariant: one batch at a time holds records here (the store runs one batch at a time); the
//! block holds any one record (a key of PROBE_BYTES_MAX and the largest inline value).
import type { Buffer } from 'node:buffer';
import { allocOrThrow, type CacheExports } from '../wasm/module.js';
import { AssertionError } from './errors.js';
import { ValueRef } from './node.js';
import { PROBE_BYTES_MAX } from './wasm-cache.js';
import { putBin, type TreeValue, type TreeKey } from './wasm-tree-writer.js';

/** asm/wtree.ts STAGED_HEADER_BYTES. */
const HEADER_BYTES = 24;
/** The block: past one record of the longest key and the largest inline value (nodeBytesMax / 4 ≤ 8 KiB). */
const BLOCK_BYTES = 128 * 1024;
const RECORD_BYTES_MAX = HEADER_BYTES + PROBE_BYTES_MAX + 8192;
if (RECORD_BYTES_MAX > BLOCK_BYTES) throw new AssertionError('the staged sets block cannot hold its largest record');

export class StagedSets {
  private addr = 0;
  /** Bytes of records in the block, and how many records. */
  private used = 0;
  private records = 0;
  /** The batch writing records here (see the invariant). */
  owner: object | null = null;

  constructor(
    private readonly ex: CacheExports,
    /** A view of the instance's whole memory, fresh. */
    private readonly mem: () => Buffer,
    /** Told after this allocated in the instance (its memory may have grown). */
    private readonly grown: () => void,
  ) {}

  get count(): number {
    return this.records;
  }

  /** Where the records start, and where they end (the offset wtreePutStaged stops at). */
  get address(): number {
    return this.addr;
  }
  get bytes(): number {
    return this.used;
  }

  /** Whether a set of `key` to `val` fits after the records held (else make them first: clear()). */
  fits(key: TreeKey, val: TreeValue): boolean {
    return this.used + recordBytes(key, val) <= BLOCK_BYTES;
  }

  /** Writes a set's record (fits() said it fits; a pending value already has its id). */
  add(key: TreeKey, val: TreeValue): void {
    if (this.addr === 0) {
      this.addr = allocOrThrow(BLOCK_BYTES, 'the staged sets', this.ex);
      this.grown();
    }
    const n = recordBytes(key, val);
    if (this.used + n > BLOCK_BYTES) throw new AssertionError(`a staged set of ${n} bytes past the block's ${BLOCK_BYTES - this.used} left`);
    const m = this.mem();
    const at = this.addr + this.used;
    const ref = val instanceof ValueRef;
    m.writeUInt32LE(key.length, at);
    m.writeUInt32LE(ref ? val.len : val.length, at + 4);
    m.writeUInt32LE(ref ? 1 : 0, at + 8);
    m.writeUInt32LE(0, at + 12);
    m.writeDoubleLE(ref ? val.pos : 0, at + 16);
    const k = at + HEADER_BYTES;
    if (typeof key === 'string') putBin(m, key, k);
    else m.set(key, k);
    if (!ref) {
      const v = k + key.length;
      if (typeof val === 'string') putBin(m, val, v);
      else m.set(val, v);
    }
    this.used += n;
    this.records++;
  }

  /** Forgets the records (made or dropped). */
  clear(): void {
    this.used = 0;
    this.records = 0;
  }
}

function recordBytes(key: TreeKey, val: TreeValue): number {
  return (HEADER_BYTES + key.length + (val instanceof ValueRef ? 0 : val.length) + 7) & ~7;
}
