//! The sets a batch takes with setLater (batch-writer.ts), written straight into the instance as
//! the records asm/wtree.ts wtreePutStaged makes in one call (its comment has the layout), and
//! kept until the batch ends: the batch's actions name their inline values by record.
//!
//! Owns: one block of the instance's memory, the batch's records in it, and how far they are made.
//! Why: made one call a set, a 1,000-key batch crossed into WebAssembly a thousand times, each
//! crossing with its own checks and results read back in JS; a group of up to SET_LATER_MAX sets
//! now crosses once. And a value is copied once, from the caller into the instance, where the tree
//! and the slab's Actions entry both read it: a Buffer copy a value, kept for the log, was ~100
//! bytes of JS heap a set, and, from Node's 8 KiB pools, external memory V8 answered with full
//! collections (bench/RESULTS.md round 28).
//! Invariant: one batch at a time holds records here (the store runs one batch at a time; `owner`);
//! records before `applied` are made in that batch's tree, those after are not yet.
import type { Buffer } from 'node:buffer';
import { WasmAllocationError, allocOrThrow, growCapacity, type CacheExports } from '../wasm/module.js';
import { AssertionError, CommitTooLargeError } from './errors.js';
import { ValueRef } from './node.js';
import { PROBE_BYTES_MAX } from './wasm-cache.js';
import { putBytes, type TreeValue, type TreeKey } from './wasm-tree-writer.js';

/**
 * An inline value a batch set, named by its record's offset in the batch's StagedSets: valid in
 * that batch's actions until the batch ends.
 */
export type StagedValue = number & { readonly __staged: unique symbol };

/** asm/wtree.ts STAGED_HEADER_BYTES. */
const HEADER_BYTES = 24;
/** The block's first size; it doubles as a batch needs, and one past BLOCK_BYTES_KEPT is let go at the batch's end. */
const BLOCK_BYTES = 256 * 1024;
const BLOCK_BYTES_KEPT = 4 << 20;

export class StagedSets {
  private addr = 0;
  private cap = 0;
  /** Bytes of records in the block; the made ones end at `applied`. */
  private used = 0;
  applied = 0;
  /** Records after `applied`. */
  private waiting = 0;
  /** The batch writing records here (see the invariant). */
  owner: object | null = null;

  constructor(
    private readonly ex: CacheExports,
    /** A view of the instance's whole memory, fresh. */
    private readonly mem: () => Buffer,
    /** Told after this allocated in the instance (its memory may have grown). */
    private readonly grown: () => void,
  ) {}

  /** Records not made yet. */
  get count(): number {
    return this.waiting;
  }

  /** Where the block starts (records are at offsets from it), and where its records end. */
  get address(): number {
    return this.addr;
  }
  get bytes(): number {
    return this.used;
  }

  /**
   * Writes a set's record (a pending value already has its id) and returns its offset: the
   * value's name while the batch lasts (valueAt). Throws CommitTooLargeError when the instance
   * cannot hold the batch's records.
   */
  add(key: TreeKey, val: TreeValue): StagedValue {
    // wtreePutStaged copies each key into PROBE: one longer would run past it (the store's keys
    // are at most maxKeyBytes, itself at most this).
    if (key.length > PROBE_BYTES_MAX) throw new AssertionError(`a staged key of ${key.length} bytes is past the tree's ${PROBE_BYTES_MAX}`);
    const ref = val instanceof ValueRef;
    const n = (HEADER_BYTES + key.length + (ref ? 0 : val.length) + 7) & ~7;
    if (this.used + n > this.cap) this.grow(this.used + n);
    const m = this.mem();
    const off = this.used;
    const at = this.addr + off;
    m.writeUInt32LE(key.length, at);
    m.writeUInt32LE(ref ? val.len : val.length, at + 4);
    m.writeUInt32LE(ref ? 1 : 0, at + 8);
    m.writeUInt32LE(0, at + 12);
    m.writeDoubleLE(ref ? val.pos : 0, at + 16);
    const k = at + HEADER_BYTES;
    putBytes(m, key, k);
    if (!ref) putBytes(m, val, k + key.length);
    this.used = off + n;
    this.waiting++;
    return off as StagedValue;
  }

  /** The inline value of the record at `off`: its address in the instance and its length. */
  valueAt(off: StagedValue): { at: number; len: number } {
    const m = this.mem();
    const rec = this.addr + off;
    if (off >= this.used || m.readUInt32LE(rec + 8) !== 0) throw new AssertionError(`no inline staged value at ${off}`);
    return { at: rec + HEADER_BYTES + m.readUInt32LE(rec), len: m.readUInt32LE(rec + 4) };
  }

  /** The length of the inline value of the record at `off`. */
  valueLength(off: StagedValue): number {
    return this.mem().readUInt32LE(this.addr + off + 4);
  }

  /** Every record is made (or given up on: its batch or transaction fails). */
  allMade(): void {
    this.applied = this.used;
    this.waiting = 0;
  }

  /**
   * Drops the records from `off` on, where every record was made when `off` was the end (a
   * transaction's savepoint): the transaction is undone, its records with it.
   */
  truncate(off: number): void {
    if (off > this.used) throw new AssertionError(`staged records cut at ${off}, past their end ${this.used}`);
    this.used = off;
    if (this.applied > off) this.applied = off;
    this.waiting = 0;
  }

  /** Forgets every record (the batch ended). */
  clear(): void {
    this.used = 0;
    this.applied = 0;
    this.waiting = 0;
    if (this.cap > BLOCK_BYTES_KEPT) {
      this.ex.free(this.addr);
      this.addr = 0;
      this.cap = 0;
    }
  }

  private grow(need: number): void {
    const cap = growCapacity(need, this.cap, BLOCK_BYTES);
    let addr: number;
    try {
      addr = allocOrThrow(cap, "a batch's staged sets", this.ex);
    } catch (err) {
      if (err instanceof WasmAllocationError) throw new CommitTooLargeError(err.message, err);
      throw err;
    }
    this.grown();
    if (this.used > 0) this.mem().copyWithin(addr, this.addr, this.addr + this.used);
    if (this.addr !== 0) this.ex.free(this.addr);
    this.addr = addr;
    this.cap = cap;
  }
}
