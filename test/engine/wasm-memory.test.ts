// Linear memory of the process-wide core instance (src/wasm/module.ts), shared by every store:
// a failed or refused allocation must leave it usable (the scratch area, the slab plan), a value
// the store accepts must fit the allocator's largest block with its slab, and a slab builder's
// buffers must go back when it is disposed. Each of these once broke every store in the process.
import { Buffer } from 'node:buffer';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { decodeActionsBody, decodeIndexBody, decodeLeafBody } from '../../src/engine/codec.js';
import { AssertionError, CorruptionError } from '../../src/engine/errors.js';
import type { BinKey } from '../../src/engine/keys.js';
import { ValueRef } from '../../src/engine/node.js';
import { PLAN_VALUE_BYTES_MAX, PlanWriter, outputBytesWanted, planCapacity } from '../../src/engine/plan.js';
import { SlabBuilder } from '../support/js-slab.js';
import { crc32c } from '../../src/wasm/crc32c.js';
import { varintBytesOf } from '../support/reference-codec.js';
import { ALLOC_BYTES_MAX, WasmAllocationError, core, growCapacity, scratch } from '../../src/wasm/module.js';

const MiB = 2 ** 20;
const CRC_123456789 = 0xe3069283; // CRC32C check value (RFC 3720 B.4)
const digits = Buffer.from('123456789');

/** A LEB128 varint. */
const varint = (n: number): Buffer => Buffer.from(varintBytesOf(n));

afterEach(() => {
  vi.restoreAllMocks();
});

describe('A: a failed allocation leaves the scratch area and the plan usable', () => {
  it('a scratch request over the allocator limit fails clearly, and crc32c still works afterwards', () => {
    expect(crc32c(digits)).toBe(CRC_123456789);
    const before = scratch(0);
    expect(() => scratch(ALLOC_BYTES_MAX + 1)).toThrow(WasmAllocationError);
    expect(() => scratch(3.5 * 2 ** 30)).toThrow(/no linear memory for the scratch area/);
    // The old area is still the scratch area, still usable.
    const after = scratch(1000);
    expect(after.ptr).toBe(before.ptr);
    expect(after.view.length).toBe(before.view.length);
    expect(crc32c(digits)).toBe(CRC_123456789);
    expect(crc32c(Buffer.alloc(200_000, 1))).toBe(crc32c(Buffer.alloc(200_000, 1)));
  });

  it('a scratch request the allocator fails (memory exhausted) changes nothing', () => {
    const before = scratch(0);
    const size = before.view.length + 1;
    vi.spyOn(core, 'alloc').mockImplementation(() => {
      throw new WebAssembly.RuntimeError('unreachable');
    });
    expect(() => scratch(size)).toThrow(WasmAllocationError);
    vi.restoreAllMocks();
    expect(scratch(0).ptr).toBe(before.ptr);
    expect(crc32c(digits)).toBe(CRC_123456789);
    expect(scratch(size).view.length).toBeGreaterThanOrEqual(size); // and it can grow later
  });

  it('a plan whose growth fails keeps what it staged and goes on', () => {
    const plan = new PlanWriter();
    plan.reset();
    expect(plan.value(Buffer.from('kept'))).toBe(0);
    vi.spyOn(core, 'alloc').mockImplementation(() => {
      throw new WebAssembly.RuntimeError('unreachable');
    });
    expect(() => plan.value(Buffer.alloc(2 * MiB, 3))).toThrow(WasmAllocationError);
    vi.restoreAllMocks();
    expect(plan.entries).toBe(1);
    const big = plan.value(Buffer.alloc(2 * MiB, 3));
    const enc = plan.encode(8192, 128);
    expect(enc.out.subarray(plan.entryOffset(0) + 9, plan.entryOffset(0) + 13).toString()).toBe('kept');
    expect(plan.entryLength(big)).toBe(9 + 2 * MiB);
    plan.dispose();
  });

  it('an encode whose output allocation fails leaves the writer usable', () => {
    const plan = new PlanWriter();
    plan.reset();
    plan.value(Buffer.alloc(4 * MiB, 1));
    vi.spyOn(core, 'alloc').mockImplementation(() => {
      throw new WebAssembly.RuntimeError('unreachable');
    });
    expect(() => plan.encode(8192, 128)).toThrow(WasmAllocationError);
    vi.restoreAllMocks();
    expect(plan.encode(8192, 128).len).toBe(9 + 4 * MiB);
    plan.dispose();
  });

  it('a body whose count claims more items than it can hold is corruption, refused before sizing the row table; the smallest items still decode', () => {
    const len = 4 * MiB;
    for (const [kind, decode] of [
      ['leaf', decodeLeafBody],
      ['index', decodeIndexBody],
      ['actions', decodeActionsBody],
    ] as const) {
      for (const count of [len, Math.floor(len / 2), 2 ** 40]) {
        const body = Buffer.alloc(len);
        varint(count).copy(body);
        const scratchBytes = scratch(0).view.length;
        const memBytes = core.memory.buffer.byteLength;
        let err: unknown;
        try {
          decode(body, 0, len, 1234);
        } catch (e) {
          err = e;
        }
        expect(err, `${kind} claiming ${count}`).toBeInstanceOf(CorruptionError);
        expect((err as CorruptionError).offset).toBe(1234);
        expect((err as Error).message).toMatch(/item count exceeds its size/);
        // Nothing was allocated for the claimed rows (40 bytes each: up to 160 MiB here).
        expect(scratch(0).view.length).toBe(scratchBytes);
        expect(core.memory.buffer.byteLength).toBe(memBytes);
      }
    }
    expect(crc32c(digits)).toBe(CRC_123456789);
    // The bound is the real minimum: bodies with items of the smallest possible size still decode.
    // Leaf: count, prefix length 0, then per item: suffix length 0, inline, value length 0.
    const n = 1000;
    const leaf = Buffer.concat([varint(n), Buffer.from([0]), Buffer.alloc(3 * n)]);
    expect(decodeLeafBody(leaf, 0, leaf.length, 0).keys).toHaveLength(n);
    // Actions: count, then per item: delete, key length 0.
    const actions = Buffer.concat([varint(n), Buffer.alloc(2 * n)]);
    expect(decodeActionsBody(actions, 0, actions.length, 0)).toHaveLength(n);
    // Index: count, prefix length 0, child0 (pos, len), then per child: suffix length, pos, len.
    const index = Buffer.concat([varint(n), Buffer.from([0, 0, 0]), Buffer.alloc(3 * (n - 1))]);
    expect(decodeIndexBody(index, 0, index.length, 0).kids).toHaveLength(n);
  });
});

describe('B: the plan never asks the allocator for more than its largest block', () => {
  it('doubling stops at the limit: only what is needed (and a little slack) is asked for', () => {
    // A 520 MiB value, then the Actions entry after it: doubling asked for 1040 MiB.
    const cap = planCapacity(520 * MiB + 5, 1 * MiB);
    expect(cap).toBe(520 * MiB + 5);
    const next = planCapacity(cap + 40, cap);
    expect(next).toBeGreaterThanOrEqual(cap + 40);
    expect(next).toBeLessThanOrEqual(ALLOC_BYTES_MAX);
    expect(next).toBeLessThan(cap + 2 * MiB);
    // Growth below the limit still doubles.
    expect(planCapacity(3 * MiB, 2 * MiB)).toBe(4 * MiB);
    expect(planCapacity(10, 0)).toBe(1 * MiB);
    for (const need of [511 * MiB, 600 * MiB, 900 * MiB, ALLOC_BYTES_MAX - 1, ALLOC_BYTES_MAX]) {
      for (const have of [0, 1 * MiB, 300 * MiB, 512 * MiB, need - 1]) {
        const c = planCapacity(need, have);
        expect(c).toBeGreaterThanOrEqual(need);
        expect(c).toBeLessThanOrEqual(ALLOC_BYTES_MAX);
      }
    }
    expect(growCapacity(700 * MiB, 600 * MiB, 64 * 1024)).toBe(700 * MiB);
  });

  it('a value of PLAN_VALUE_BYTES_MAX fits one slab: its plan and its output area', () => {
    expect(PLAN_VALUE_BYTES_MAX).toBe(768 * MiB);
    const planLen = 5 + PLAN_VALUE_BYTES_MAX + 1 * MiB; // the value, its Actions entry, a path of nodes
    expect(planCapacity(planLen, PLAN_VALUE_BYTES_MAX)).toBeLessThanOrEqual(ALLOC_BYTES_MAX);
    expect(outputBytesWanted(planLen, 1000, 92)).toBeLessThanOrEqual(ALLOC_BYTES_MAX);
  });
});

describe('C: disposing a plan or a slab builder gives its linear memory back', () => {
  it('30 create-use-dispose cycles of a 4 MiB plan keep linear memory flat', () => {
    const value = Buffer.alloc(4 * MiB, 9);
    const cycle = () => {
      const plan = new PlanWriter();
      plan.reset();
      plan.value(value);
      plan.actions([{ key: 'k' as BinKey, val: null }], null);
      expect(plan.encode(8192, 128).len).toBeGreaterThan(4 * MiB);
      plan.dispose();
    };
    cycle();
    cycle();
    const base = core.memory.buffer.byteLength;
    for (let i = 0; i < 30; i++) cycle();
    // Each undisposed writer keeps ~13 MiB (plan, output, table): 30 would take ~400 MiB.
    expect(core.memory.buffer.byteLength - base).toBeLessThanOrEqual(16 * MiB);
  });

  it('30 slab builders each writing a 4 MiB value, disposed, keep linear memory flat', () => {
    const value = Buffer.alloc(4 * MiB, 5);
    const cycle = () => {
      const slabs = new SlabBuilder();
      const ref = new ValueRef(-1, value.length, value);
      const slab = slabs.build({
        actions: [{ key: 'key' as BinKey, val: ref }],
        keyCount: 1,
        tag: undefined,
        prev: null,
        start: 8192,
        checkpoint: null,
      });
      expect(slab.bytes().length).toBe(slab.len);
      slab.apply();
      slab.release();
      slabs.dispose();
      slabs.dispose(); // twice is harmless
      expect(() => slab.bytes()).toThrow(AssertionError);
    };
    cycle();
    cycle();
    const base = core.memory.buffer.byteLength;
    for (let i = 0; i < 30; i++) cycle();
    expect(core.memory.buffer.byteLength - base).toBeLessThanOrEqual(16 * MiB);
  });

  it('a disposed plan refuses further use with an assertion', () => {
    const plan = new PlanWriter();
    plan.reset();
    plan.value(Buffer.from('v'));
    plan.encode(8192, 128);
    plan.dispose();
    plan.dispose();
    expect(plan.disposed).toBe(true);
    expect(() => plan.reset()).toThrow(AssertionError);
    expect(() => plan.value(Buffer.from('x'))).toThrow(AssertionError);
    expect(() => plan.encode(8192, 128)).toThrow(AssertionError);
    expect(() => plan.entryOffset(0)).toThrow(AssertionError);
    expect(() => plan.refresh()).toThrow(AssertionError);
    // The freed blocks went back to the allocator and serve others; crc32c is unaffected.
    expect(crc32c(digits)).toBe(CRC_123456789);
  });
});
