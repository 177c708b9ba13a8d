//! The slab plan: a commit's entries staged in WebAssembly memory for asm/slab.ts to encode.
//!
//! Owns: the plan buffer, the encoded output and the entry table in the core instance's linear
//! memory (src/wasm/module.ts), and the plan's record layout, which asm/slab.ts documents. JS
//! writes whole keys and values with fixed-width numbers; the WebAssembly side shares key prefixes,
//! writes LEB128 varints and entry headers, resolves Inner references (an entry earlier in this
//! plan, spec part A §A.5) to Outer file positions, and checksums every entry and the slab.
//! Invariant: views on linear memory are re-created after every allocation there (it may grow the
//! memory and detach old views, toolchain.md §3.1 pitfall 5).
import { Buffer } from 'node:buffer';
import { ALLOC_BYTES_MAX, WasmAllocationError, allocOrThrow, core, growCapacity, type CoreExports } from '../wasm/module.js';
import { AssertionError, assert } from './errors.js';
import { Kind } from './format.js';
import type { BinKey, InlineValue } from './keys.js';
import { ValueRef, type LeafValue } from './node.js';
import type { WriteValue } from './codec.js';
import type { StagedSets, StagedValue } from './staged-sets.js';

/** A reference as the plan holds it: an Outer file position, or an Inner entry index. */
export interface PlanRef {
  inner: boolean;
  /** File position (Outer) or entry index in this plan (Inner). */
  at: number;
  /** Value length (leaves, actions) or entry length (index children; ignored when Inner). */
  len: number;
}

/** What slabEncode returns on failure (asm/slab.ts). */
const ERR_OUT_OF_SPACE = -1;
const ERR_BAD_PLAN = -2;
const ENCODE_PAUSED = -4;
const TABLE_ROW_BYTES = 12;

const MiB = 2 ** 20;
/** The plan buffer's first size, and the least it grows by while doubling. */
const PLAN_BYTES_MIN = 1 * MiB;
/**
 * Room left after a plan grown to just what it needs (once doubling would pass the allocator's
 * limit): enough for the Actions entry and a checkpoint's path of nodes that follow a big value,
 * so they do not force another copy of the whole plan.
 */
const PLAN_SLACK_BYTES = 1 * MiB;

/**
 * The plan buffer's next capacity for at least `need` bytes, from `cap` (PlanWriter.growPlan):
 * doubling, but never past the allocator's largest block (ALLOC_BYTES_MAX). Doubling a 520 MiB
 * plan asked for 1040 MiB, over that limit, and failed a commit whose value fit.
 */
export function planCapacity(need: number, cap: number): number {
  return growCapacity(need, cap, PLAN_BYTES_MIN, PLAN_SLACK_BYTES);
}

/**
 * The output area encodeSteps asks for first: encoded entries are never longer than their plan
 * records by more than this margin (varints for fixed-width numbers, the 9-byte entry headers),
 * then room for the table's rows, the Commit (`tailBytes`) and alignment.
 */
export function outputBytesWanted(planLen: number, rows: number, tailBytes: number): number {
  return Math.ceil(planLen * 1.25) + 32 * rows + tailBytes + 256;
}

/**
 * Plan bytes a slab may need besides its biggest value, in PLAN_VALUE_BYTES_MAX: the Actions
 * entry (a key of up to 1 MiB, the maxKeyBytes ceiling) and, for a checkpoint, the changed
 * leaves and index nodes on the value's path.
 */
const PLAN_VALUE_RESERVE_BYTES = 32 * MiB;
/** Entries (rows of the table) assumed beside the value in PLAN_VALUE_BYTES_MAX. */
const PLAN_VALUE_RESERVE_ROWS = 64 * 1024;

/**
 * The largest value one slab can carry: its plan record (5 + value bytes) with
 * PLAN_VALUE_RESERVE_BYTES of other records must leave an output area (outputBytesWanted, ~1.25×
 * the plan) within the allocator's largest block. 768 MiB: 960 MiB of output for the value, the
 * rest of the 1 GiB block for the reserve. A store must not accept a larger maxValueBytes.
 */
export const PLAN_VALUE_BYTES_MAX = 768 * MiB;
assert(
  outputBytesWanted(PLAN_VALUE_BYTES_MAX + 5 + PLAN_VALUE_RESERVE_BYTES, PLAN_VALUE_RESERVE_ROWS, 4096) <= ALLOC_BYTES_MAX &&
    planCapacity(PLAN_VALUE_BYTES_MAX + 5 + PLAN_VALUE_RESERVE_BYTES, PLAN_VALUE_BYTES_MAX) <= ALLOC_BYTES_MAX,
  'PLAN_VALUE_BYTES_MAX leaves no room in one allocation for its slab',
);

export interface EncodedSlab {
  /** The encoded entries and whatever follows them in the output area (a view on linear memory). */
  out: Buffer;
  /** Address of `out` in linear memory (for checksumming bytes appended after the entries). */
  outPtr: number;
  /** Bytes of encoded entries. */
  len: number;
  slabCrc: number;
}

/**
 * Stages entries in linear memory and encodes them there. Its buffers (plan, output, row table,
 * encoder state) live in one instance: by default the process-wide core instance
 * (src/wasm/module.ts), shared by every store, so a store's writer must be dispose()d when the
 * store closes: otherwise each closed store leaves them behind (tens of MiB after one big value)
 * and linear memory, which never shrinks, grows with every open and close until allocation fails.
 * In a store's own instance (its node cache's, where the writer's tree lives, so that a
 * checkpoint's nodes are encoded where they are), `memoryGrown` tells that instance's other users
 * to make their views again after this writer allocated.
 */
export class PlanWriter {
  private planPtr = 0;
  private planCap = 0;
  private outPtr = 0;
  private outCap = 0;
  private tablePtr = 0;
  private tableCap = 0;
  /** The sliced encoder's state block (asm/slab.ts slabEncodePart), once needed. */
  private statePtr = 0;
  private mem: Uint8Array = new Uint8Array(0);
  private buf: Buffer = Buffer.alloc(0);
  private dv: DataView = new DataView(new ArrayBuffer(0));
  /** Write position (absolute address in linear memory). */
  private p = 0;
  /** Records staged so far: the next record's entry index. */
  entries = 0;
  private isDisposed = false;

  constructor(
    private readonly ex: CoreExports = core,
    private readonly memoryGrown: () => void = () => undefined,
  ) {}

  /** True once dispose() has run: the writer holds no memory and must not be used again. */
  get disposed(): boolean {
    return this.isDisposed;
  }

  /**
   * Frees every buffer this writer holds in linear memory. Safe to call twice; any later use of
   * the writer fails an assertion instead of touching memory that now belongs to someone else (an
   * EncodedSlab's `out` is a bare view: SlabBuilder's BuiltSlab.bytes() checks `disposed`).
   */
  dispose(): void {
    if (this.isDisposed) return;
    this.isDisposed = true;
    for (const ptr of [this.planPtr, this.outPtr, this.tablePtr, this.statePtr]) if (ptr !== 0) this.ex.free(ptr);
    // With no capacity left, the next staged record goes through growPlan, which asserts.
    this.planPtr = 0;
    this.planCap = 0;
    this.outPtr = 0;
    this.outCap = 0;
    this.tablePtr = 0;
    this.tableCap = 0;
    this.statePtr = 0;
    this.p = 0;
    this.entries = 0;
    // Views that would still reach the freed bytes.
    this.mem = new Uint8Array(0);
    this.buf = Buffer.alloc(0);
    this.dv = new DataView(new ArrayBuffer(0));
  }

  /**
   * Hands each buffer's block to `discard` (an idle store gives their pages back: they hold
   * nothing between builds, and the next build writes every byte before it reads it). Never
   * during a build.
   */
  discardContents(discard: (ptr: number, len: number) => void): void {
    assert(!this.isDisposed, 'a slab plan used after dispose()');
    if (this.planPtr !== 0) discard(this.planPtr, this.planCap);
    if (this.outPtr !== 0) discard(this.outPtr, this.outCap);
    if (this.tablePtr !== 0) discard(this.tablePtr, this.tableCap * TABLE_ROW_BYTES);
  }

  reset(): void {
    assert(!this.isDisposed, 'a slab plan used after dispose()');
    if (this.planCap === 0) this.growPlan(PLAN_BYTES_MIN);
    this.refresh();
    this.p = this.planPtr;
    this.entries = 0;
  }

  /**
   * Re-creates the views on linear memory if it grew (which detaches them): after allocating
   * there, and after any pause, in which other stores' work may have grown it.
   */
  refresh(): void {
    assert(!this.isDisposed, 'a slab plan used after dispose()');
    const ab = this.ex.memory.buffer;
    if (this.mem.buffer === ab) return;
    this.mem = new Uint8Array(ab);
    this.buf = Buffer.from(ab);
    this.dv = new DataView(ab);
  }

  /**
   * Moves the plan to a block of at least `need` bytes. The new block is allocated before the old
   * one is freed: if allocation fails (WasmAllocationError), the staged plan is left as it was.
   */
  private growPlan(need: number): void {
    assert(!this.isDisposed, 'a slab plan used after dispose()');
    const used = this.p - this.planPtr;
    const cap = planCapacity(need, this.planCap);
    const ptr = this.alloc(cap, 'the slab plan');
    this.refresh();
    if (this.planPtr !== 0) {
      this.mem.copyWithin(ptr, this.planPtr, this.planPtr + used);
      this.ex.free(this.planPtr);
    }
    this.planPtr = ptr;
    this.planCap = cap;
    this.p = ptr + used;
  }

  /** A block in this writer's instance (allocOrThrow); the instance's other views are told. */
  private alloc(size: number, what: string): number {
    const ptr = allocOrThrow(size, what, this.ex);
    this.memoryGrown();
    return ptr;
  }

  private ensure(n: number): void {
    if (this.p + n > this.planPtr + this.planCap) this.growPlan(this.p - this.planPtr + n);
  }

  private u8(v: number): void {
    this.mem[this.p++] = v;
  }

  private u32(v: number): void {
    this.dv.setUint32(this.p, v, true);
    this.p += 4;
  }

  private ref(r: PlanRef): void {
    this.mem[this.p] = r.inner ? 1 : 0;
    this.dv.setFloat64(this.p + 1, r.at, true);
    this.dv.setUint32(this.p + 9, r.len, true);
    this.p += 13;
  }

  /**
   * A binary string (a key, or an inline value: keys.ts) as u32 length and bytes (a JS loop for
   * short ones: cheaper than a call into C++).
   */
  private key(s: BinKey | InlineValue): void {
    const n = s.length;
    this.u32(n);
    if (n <= 32) {
      const m = this.mem;
      const o = this.p;
      for (let i = 0; i < n; i++) m[o + i] = s.charCodeAt(i);
      this.p += n;
    } else {
      this.p += this.buf.write(s, this.p, n, 'latin1');
    }
  }

  private bytes(b: Uint8Array): void {
    this.u32(b.length);
    this.mem.set(b, this.p);
    this.p += b.length;
  }

  /** A record's keys and inline values, joined (binary strings), with one call into C++. */
  private joined(s: string): void {
    const written = this.buf.write(s, this.p, s.length, 'latin1');
    assert(written === s.length, 'a plan record past its bound');
    this.p += written;
  }

  /** Stages a Value entry; returns its entry index. */
  value(bytes: Uint8Array): number {
    this.ensure(5 + bytes.length);
    this.u8(Kind.Value);
    this.bytes(bytes);
    return this.entries++;
  }

  /**
   * Stages a Leaf entry (keys ascending). `refs[i]` is the reference for a value kept in a Value
   * entry (vals[i] a ValueRef); inline values are binary strings (keys.ts InlineValue).
   */
  leaf(keys: readonly BinKey[], vals: readonly LeafValue[], refs: readonly PlanRef[] | null): number {
    let bound = 5;
    for (let i = 0; i < keys.length; i++) {
      const v = vals[i];
      bound += 4 + keys[i].length + 1 + (v instanceof ValueRef ? 13 : 4 + v.length);
    }
    this.ensure(bound);
    this.u8(Kind.Leaf);
    this.u32(keys.length);
    // The headers here, the bytes after them (asm/slab.ts): the keys and inline values, all
    // binary strings, joined and written with one call into C++ (a call per value cost ~60 ns).
    let bytes = '';
    for (let i = 0; i < keys.length; i++) {
      const k = keys[i];
      this.u32(k.length);
      bytes += k;
      const v = vals[i];
      if (v instanceof ValueRef) {
        assert(refs !== null && refs[i] !== undefined, 'a value entry without its reference');
        this.u8(1);
        this.ref(refs[i]);
      } else {
        this.u8(0);
        this.u32(v.length);
        bytes += v;
      }
    }
    this.joined(bytes);
    return this.entries++;
  }

  /** Stages an Index entry: `kids.length` children, separators `keys` (ascending). */
  index(keys: readonly BinKey[], kids: readonly PlanRef[]): number {
    assert(kids.length === keys.length + 1 && kids.length >= 1, 'index with mismatched keys and children');
    let bound = 5 + 13 * kids.length;
    for (const k of keys) bound += 4 + k.length;
    this.ensure(bound);
    this.u8(Kind.Index);
    this.u32(kids.length);
    this.ref(kids[0]);
    for (let i = 0; i < keys.length; i++) {
      this.key(keys[i]);
      this.ref(kids[i + 1]);
    }
    return this.entries++;
  }

  /**
   * Stages an Actions entry; `refs[i]` for a set whose value is kept in a Value entry. Inline
   * values are binary strings or bytes (codec.ts WriteValue).
   */
  actions(list: ReadonlyArray<{ key: BinKey; val: WriteValue | StagedValue | null }>, refs: readonly PlanRef[] | null, staged: StagedSets | null = null): number {
    // A value a batch staged is in this instance already (staged-sets.ts): copied within it.
    const lengthOf = (v: string | Uint8Array | StagedValue): number => {
      if (typeof v !== 'number') return v.length;
      if (staged === null) throw new AssertionError('a staged value without its staged sets');
      return staged.valueLength(v);
    };
    let bound = 5;
    for (const a of list) bound += 5 + a.key.length + (a.val === null ? 0 : a.val instanceof ValueRef ? 13 : 4 + lengthOf(a.val));
    this.ensure(bound);
    this.u8(Kind.Actions);
    this.u32(list.length);
    // As in leaf(): the headers, then the keys and inline values, strings joined into one write
    // (bytes, the store's own writes, go in where they fall: the joined strings first).
    let bytes = '';
    let tail: Array<string | Uint8Array | StagedValue> | null = null;
    for (let i = 0; i < list.length; i++) {
      const k = list[i].key;
      const v = list[i].val;
      this.u8(v === null ? 0 : v instanceof ValueRef ? 2 : 1);
      this.u32(k.length);
      if (tail === null) bytes += k;
      else tail.push(k);
      if (v === null) continue;
      if (v instanceof ValueRef) {
        assert(refs !== null && refs[i] !== undefined, 'a value entry without its reference');
        this.ref(refs[i]);
      } else {
        this.u32(lengthOf(v));
        if (typeof v === 'string' && tail === null) bytes += v;
        else (tail ??= []).push(v);
      }
    }
    this.joined(bytes);
    if (tail !== null) {
      for (const part of tail) {
        if (typeof part === 'string') this.joined(part);
        else if (typeof part === 'number') {
          const { at, len } = (staged as StagedSets).valueAt(part);
          this.mem.copyWithin(this.p, at, at + len);
          this.p += len;
        } else {
          this.mem.set(part, this.p);
          this.p += part.length;
        }
      }
    }
    return this.entries++;
  }

  /**
   * Stages records another writer of this instance puts in the plan (asm/wcheckpoint.ts wtreePlan:
   * a checkpoint's Node records), each `recordBytes` long and one entry: `fill(at, cap)` writes
   * them at `at` and returns the bytes written, or a negative number when `cap` bytes are too few
   * (it is then called again with at least twice the room). Returns where the records are in
   * linear memory (until the next reset) and how many entries they are.
   */
  staged(recordBytes: number, fill: (at: number, cap: number) => number): { at: number; count: number } {
    for (;;) {
      const cap = this.planPtr + this.planCap - this.p;
      const n = cap > 0 ? fill(this.p, cap) : -1;
      if (n >= 0) {
        if (n % recordBytes !== 0) throw new AssertionError(`staged records of ${n} bytes, not whole ${recordBytes}-byte records`);
        const at = this.p;
        this.p += n;
        this.entries += n / recordBytes;
        return { at, count: n / recordBytes };
      }
      this.growPlan(this.p - this.planPtr + Math.max(2 * cap, PLAN_BYTES_MIN));
    }
  }

  /**
   * Encodes the staged entries for a slab starting at file position `start`, leaving at least
   * `tailBytes` free after them (for the Commit entry). The output is valid until the next
   * reset(), or anything else that allocates in the instance's memory.
   */
  encode(start: number, tailBytes: number): EncodedSlab {
    const r = this.encodeSteps(start, tailBytes, 0).next();
    assert(r.done === true, 'an unsliced encode paused');
    return r.value;
  }

  /** encode() in parts of about `sliceBytes` of output, awaiting `pause()` in between. */
  async encodeSliced(start: number, tailBytes: number, sliceBytes: number, pause: () => Promise<void>): Promise<EncodedSlab> {
    const steps = this.encodeSteps(start, tailBytes, sliceBytes);
    for (;;) {
      const r = steps.next();
      if (r.done === true) return r.value;
      await pause();
      this.refresh();
    }
  }

  /** Yields between parts (only when `sliceBytes` > 0); returns the encoded slab. */
  private *encodeSteps(start: number, tailBytes: number, sliceBytes: number): Generator<void, EncodedSlab> {
    assert(!this.isDisposed, 'a slab plan used after dispose()');
    const planLen = this.p - this.planPtr;
    const rows = this.entries;
    let want = outputBytesWanted(planLen, rows, tailBytes);
    if (sliceBytes > 0 && this.statePtr === 0) this.statePtr = this.alloc(16, 'the slab encoder state');
    for (;;) {
      // The output and the table hold nothing to keep, so the old block is freed first (less
      // linear memory at the peak, which never shrinks afterwards) and the fields cleared before
      // allocating: a failed allocation leaves the writer empty, not pointing at a freed block.
      if (this.outCap < want) {
        const cap = growCapacity(want, this.outCap, 0);
        if (this.outPtr !== 0) this.ex.free(this.outPtr);
        this.outPtr = 0;
        this.outCap = 0;
        this.outPtr = this.alloc(cap, 'the encoded slab');
        this.outCap = cap;
      }
      if (this.tableCap < rows) {
        const cap = growCapacity(rows * TABLE_ROW_BYTES, this.tableCap * TABLE_ROW_BYTES, 1024 * TABLE_ROW_BYTES);
        const capRows = Math.floor(cap / TABLE_ROW_BYTES);
        if (this.tablePtr !== 0) this.ex.free(this.tablePtr);
        this.tablePtr = 0;
        this.tableCap = 0;
        this.tablePtr = this.alloc(capRows * TABLE_ROW_BYTES, 'the slab entry table');
        this.tableCap = capRows;
      }
      let n: number;
      if (sliceBytes === 0) {
        n = this.ex.slabEncode(this.planPtr, planLen, this.outPtr, this.outCap - tailBytes, this.tablePtr, rows, start);
      } else {
        this.refresh();
        this.mem.fill(0, this.statePtr, this.statePtr + 16);
        for (;;) {
          n = this.ex.slabEncodePart(this.planPtr, planLen, this.outPtr, this.outCap - tailBytes, this.tablePtr, rows, start, this.statePtr, sliceBytes);
          if (n !== ENCODE_PAUSED) break;
          yield;
        }
      }
      if (n === ERR_OUT_OF_SPACE) {
        // Past the allocator's limit there is nothing bigger to ask for: the slab is too big.
        if (this.outCap >= ALLOC_BYTES_MAX) throw new WasmAllocationError(this.outCap * 2, 'the encoded slab');
        want = Math.min(this.outCap * 2, ALLOC_BYTES_MAX);
        continue;
      }
      assert(n !== ERR_BAD_PLAN, 'the slab plan is malformed (unsorted keys or a bad reference)');
      if (n < 0) throw new AssertionError(`slab encoding failed (${n})`);
      this.refresh();
      return {
        out: Buffer.from(this.ex.memory.buffer, this.outPtr, this.outCap),
        outPtr: this.outPtr,
        len: n,
        slabCrc: this.ex.slabCrc() >>> 0,
      };
    }
  }

  /** Offset of entry `i` in the encoded output. */
  entryOffset(i: number): number {
    assert(!this.isDisposed, 'a slab plan used after dispose()');
    return this.dv.getUint32(this.tablePtr + i * TABLE_ROW_BYTES, true);
  }

  /** Whole length of entry `i`, header included. */
  entryLength(i: number): number {
    assert(!this.isDisposed, 'a slab plan used after dispose()');
    return this.dv.getUint32(this.tablePtr + i * TABLE_ROW_BYTES + 4, true);
  }
}
