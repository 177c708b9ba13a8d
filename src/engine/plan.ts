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
import { core } from '../wasm/module.js';
import { assert } from './errors.js';
import { Kind } from './format.js';
import type { BinKey, InlineValue } from './keys.js';
import { ValueRef, type LeafValue } from './node.js';

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

export interface EncodedSlab {
  /** The encoded entries and whatever follows them in the output area (a view on linear memory). */
  out: Buffer;
  /** Address of `out` in linear memory (for checksumming bytes appended after the entries). */
  outPtr: number;
  /** Bytes of encoded entries. */
  len: number;
  slabCrc: number;
}

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

  reset(): void {
    if (this.planCap === 0) this.growPlan(1 << 20);
    this.refresh();
    this.p = this.planPtr;
    this.entries = 0;
  }

  /**
   * Re-creates the views on linear memory if it grew (which detaches them): after allocating
   * there, and after any pause, in which other stores' work may have grown it.
   */
  refresh(): void {
    const ab = core.memory.buffer;
    if (this.mem.buffer === ab) return;
    this.mem = new Uint8Array(ab);
    this.buf = Buffer.from(ab);
    this.dv = new DataView(ab);
  }

  private growPlan(need: number): void {
    const used = this.p - this.planPtr;
    const cap = Math.max(need, this.planCap * 2, 1 << 20);
    const ptr = core.alloc(cap);
    assert(ptr !== 0, 'no linear memory for the slab plan');
    this.refresh();
    if (this.planPtr !== 0) {
      this.mem.copyWithin(ptr, this.planPtr, this.planPtr + used);
      core.free(this.planPtr);
    }
    this.planPtr = ptr;
    this.planCap = cap;
    this.p = ptr + used;
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

  /** Stages an Actions entry; `refs[i]` for a set whose value is kept in a Value entry. */
  actions(list: ReadonlyArray<{ key: BinKey; val: LeafValue | null }>, refs: readonly PlanRef[] | null): number {
    let bound = 5;
    for (const a of list) bound += 5 + a.key.length + (a.val === null ? 0 : a.val instanceof ValueRef ? 13 : 4 + a.val.length);
    this.ensure(bound);
    this.u8(Kind.Actions);
    this.u32(list.length);
    // As in leaf(): the headers, then the keys and inline values with one write.
    let bytes = '';
    for (let i = 0; i < list.length; i++) {
      const k = list[i].key;
      const v = list[i].val;
      this.u8(v === null ? 0 : v instanceof ValueRef ? 2 : 1);
      this.u32(k.length);
      bytes += k;
      if (v === null) continue;
      if (v instanceof ValueRef) {
        assert(refs !== null && refs[i] !== undefined, 'a value entry without its reference');
        this.ref(refs[i]);
      } else {
        this.u32(v.length);
        bytes += v;
      }
    }
    this.joined(bytes);
    return this.entries++;
  }

  /**
   * Encodes the staged entries for a slab starting at file position `start`, leaving at least
   * `tailBytes` free after them (for the Commit entry). The output is valid until the next
   * reset(), or anything else that allocates in the core instance's memory.
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
    const planLen = this.p - this.planPtr;
    const rows = this.entries;
    let want = Math.ceil(planLen * 1.25) + 32 * rows + tailBytes + 256;
    if (sliceBytes > 0 && this.statePtr === 0) {
      this.statePtr = core.alloc(16);
      assert(this.statePtr !== 0, 'no linear memory for the slab encoder');
    }
    for (;;) {
      if (this.outCap < want) {
        if (this.outPtr !== 0) core.free(this.outPtr);
        this.outCap = Math.max(want, this.outCap * 2);
        this.outPtr = core.alloc(this.outCap);
      }
      if (this.tableCap < rows) {
        if (this.tablePtr !== 0) core.free(this.tablePtr);
        this.tableCap = Math.max(rows, this.tableCap * 2, 1024);
        this.tablePtr = core.alloc(this.tableCap * TABLE_ROW_BYTES);
      }
      let n: number;
      if (sliceBytes === 0) {
        n = core.slabEncode(this.planPtr, planLen, this.outPtr, this.outCap - tailBytes, this.tablePtr, rows, start);
      } else {
        this.refresh();
        this.mem.fill(0, this.statePtr, this.statePtr + 16);
        for (;;) {
          n = core.slabEncodePart(this.planPtr, planLen, this.outPtr, this.outCap - tailBytes, this.tablePtr, rows, start, this.statePtr, sliceBytes);
          if (n !== ENCODE_PAUSED) break;
          yield;
        }
      }
      if (n === ERR_OUT_OF_SPACE) {
        want = this.outCap * 2;
        continue;
      }
      assert(n !== ERR_BAD_PLAN, 'the slab plan is malformed (unsorted keys or a bad reference)');
      assert(n >= 0, `slab encoding failed (${n})`);
      this.refresh();
      return {
        out: Buffer.from(core.memory.buffer, this.outPtr, this.outCap),
        outPtr: this.outPtr,
        len: n,
        slabCrc: core.slabCrc() >>> 0,
      };
    }
  }

  /** Offset of entry `i` in the encoded output. */
  entryOffset(i: number): number {
    return this.dv.getUint32(this.tablePtr + i * TABLE_ROW_BYTES, true);
  }

  /** Whole length of entry `i`, header included. */
  entryLength(i: number): number {
    return this.dv.getUint32(this.tablePtr + i * TABLE_ROW_BYTES + 4, true);
  }
}
