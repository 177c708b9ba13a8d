// Slab serialization in WebAssembly (asm/slab.ts through plan.ts and codec.ts) against the plain-JS
// reference codec (test/support/reference-codec.ts): the same bytes for random leaves, indexes and
// actions; Inner references resolved to the right Outer positions; the same decoded nodes; and
// the same verdict (data or CorruptionError) on mutated bodies.
import { Buffer } from 'node:buffer';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeActionsBody, decodeIndexBody, decodeLeafBody, type Action } from '../../src/engine/codec.js';
import { CorruptionError } from '../../src/engine/errors.js';
import { ENTRY_HEADER_BYTES, Kind } from '../../src/engine/format.js';
import type { BinKey, InlineValue } from '../../src/engine/keys.js';
import { DiskRef, IndexNode, LeafNode, ValueRef, type LeafValue } from '../../src/engine/node.js';
import { PlanWriter, type PlanRef } from '../../src/engine/plan.js';
import { crc32c } from '../../src/wasm/crc32c.js';
import * as ref from '../support/reference-codec.js';

/** An inline value (keys.ts InlineValue) with these bytes. */
const iv = (b: Uint8Array | string): InlineValue => Buffer.from(b).toString('latin1') as InlineValue;

const bin = (b: Uint8Array) => Buffer.from(b).toString('latin1') as BinKey;

/** Sorted unique keys, often sharing a prefix, some long (> 32 bytes), with bytes above 0x7f. */
const keysArb = fc
  .tuple(
    fc.uint8Array({ maxLength: 12 }),
    fc.uniqueArray(fc.uint8Array({ maxLength: 48 }), { minLength: 0, maxLength: 40, selector: (k) => Buffer.from(k).toString('hex') }),
  )
  .map(([prefix, rest]) => [...new Set(rest.map((k) => bin(Buffer.concat([prefix, k]))))].sort());

const posArb = fc.oneof(fc.integer({ min: 8192, max: 2 ** 32 }), fc.constant(2 ** 53 - 1), fc.integer({ min: 8192, max: 2 ** 40 }));

const valueArb: fc.Arbitrary<LeafValue> = fc.oneof(
  fc.uint8Array({ maxLength: 200 }).map((b) => iv(b)),
  fc.tuple(posArb, fc.integer({ min: 129, max: 1 << 26 })).map(([p, l]) => new ValueRef(p, l, undefined)),
);

const outer = (v: LeafValue): PlanRef => {
  const r = v as ValueRef;
  return { inner: false, at: r.pos, len: r.len };
};

function bodyOf(out: Buffer, off: number, kind: Kind): Buffer {
  const bodyLen = out.readUInt32LE(off + 4);
  expect(out[off + 8]).toBe(kind);
  expect(out.readUInt32LE(off)).toBe(crc32c(out, off + 4, off + ENTRY_HEADER_BYTES + bodyLen));
  return Buffer.from(out.subarray(off + ENTRY_HEADER_BYTES, off + ENTRY_HEADER_BYTES + bodyLen));
}

function referenceBody(encode: (w: ref.ByteWriter) => void): Buffer {
  const w = new ref.ByteWriter(64);
  encode(w);
  return Buffer.from(w.buf.subarray(0, w.off));
}

const plan = new PlanWriter();

describe('WebAssembly slab encoding matches the reference codec', () => {
  it('leaves', () => {
    fc.assert(
      fc.property(keysArb.chain((keys) => fc.tuple(fc.constant(keys), fc.array(valueArb, { minLength: keys.length, maxLength: keys.length }))), ([keys, vals]) => {
        const leaf = new LeafNode(0, keys, vals, 0);
        plan.reset();
        plan.leaf(keys, vals, vals.map((v) => (v instanceof ValueRef ? outer(v) : { inner: false, at: 0, len: 0 })));
        const enc = plan.encode(123_456, 0);
        const body = bodyOf(enc.out, plan.entryOffset(0), Kind.Leaf);
        expect(body).toEqual(referenceBody((w) => ref.encodeLeafBody(w, leaf)));
        expect(plan.entryLength(0)).toBe(enc.len);
        // Decoding agrees too: keys, vals, size estimate, every field.
        expect(decodeLeafBody(body, 0, body.length, 99)).toEqual(ref.decodeLeafBody(body, 0, body.length, 99));
      }),
      { numRuns: 300, seed: 20261122 },
    );
  });

  it('indexes', () => {
    fc.assert(
      fc.property(keysArb.chain((keys) => fc.tuple(fc.constant(keys), fc.array(fc.tuple(posArb, fc.integer({ min: 9, max: 1 << 24 })), { minLength: keys.length + 1, maxLength: keys.length + 1 }))), ([keys, kids]) => {
        const refs = kids.map(([p, l]) => new DiskRef(p, l));
        const node = new IndexNode(0, keys, refs, 0);
        plan.reset();
        plan.index(keys, refs.map((r) => ({ inner: false, at: r.pos, len: r.len })));
        const enc = plan.encode(8192, 0);
        const body = bodyOf(enc.out, 0, Kind.Index);
        expect(body).toEqual(referenceBody((w) => ref.encodeIndexBody(w, node, (c) => c as DiskRef)));
        // Decoding agrees too: keys, kids, size estimate, every field.
        expect(decodeIndexBody(body, 0, body.length, 99)).toEqual(ref.decodeIndexBody(body, 0, body.length, 99));
      }),
      { numRuns: 300, seed: 20261123 },
    );
  });

  it('actions, in any key order and with repeats', () => {
    // Inline values as binary strings (read back from a log) or as bytes (the store's own writes,
    // db.ts makeValue), mixed in one entry.
    const actionArb = fc
      .tuple(fc.uint8Array({ maxLength: 40 }), fc.option(valueArb, { nil: null }), fc.boolean())
      .map(([k, v, asBytes]): Action => ({ key: bin(k), val: asBytes && typeof v === 'string' ? Buffer.from(v, 'latin1') : v }));
    fc.assert(
      fc.property(fc.array(actionArb, { maxLength: 60 }), (actions) => {
        plan.reset();
        plan.actions(actions, actions.map((a) => (a.val instanceof ValueRef ? outer(a.val) : { inner: false, at: 0, len: 0 })));
        const enc = plan.encode(8192, 0);
        const body = bodyOf(enc.out, 0, Kind.Actions);
        expect(body).toEqual(referenceBody((w) => ref.encodeActionsBody(w, actions)));
        expect(decodeActionsBody(body, 0, body.length, 99)).toEqual(ref.decodeActionsBody(body, 0, body.length, 99));
      }),
      { numRuns: 300, seed: 20261124 },
    );
  });

  it('resolves Inner references to Outer positions and lengths, and grows past its first megabyte', () => {
    const start = 1_000_000;
    const big = Buffer.alloc(3 << 20, 7); // more than the plan's first 1 MiB
    plan.reset();
    const v0 = plan.value(Buffer.from('a value kept in its own entry'));
    const v1 = plan.value(big);
    const leafKeys = ['k1', 'k2', 'k3'] as BinKey[];
    const leafVals: LeafValue[] = [new ValueRef(-1, 29, undefined), iv('inline'), new ValueRef(-1, big.length, undefined)];
    const l0 = plan.leaf(leafKeys, leafVals, [{ inner: true, at: v0, len: 29 }, { inner: false, at: 0, len: 0 }, { inner: true, at: v1, len: big.length }]);
    const l1 = plan.leaf(['m'] as BinKey[], [iv('x')], null);
    const ix = plan.index(['m'] as BinKey[], [{ inner: true, at: l0, len: 0 }, { inner: true, at: l1, len: 0 }]);
    const enc = plan.encode(start, 0);
    expect(ix).toBe(4);
    let off = 0;
    for (let e = 0; e < 5; e++) {
      expect(plan.entryOffset(e)).toBe(off);
      off += plan.entryLength(e);
    }
    expect(off).toBe(enc.len);
    expect(bodyOf(enc.out, plan.entryOffset(v1), Kind.Value).equals(big)).toBe(true);
    const leaf = decodeLeafBody(bodyOf(enc.out, plan.entryOffset(l0), Kind.Leaf), 0, plan.entryLength(l0) - ENTRY_HEADER_BYTES, 0);
    expect(leaf.vals[0]).toEqual(new ValueRef(start + plan.entryOffset(v0), 29, undefined));
    expect(leaf.vals[2]).toEqual(new ValueRef(start + plan.entryOffset(v1), big.length, undefined));
    const index = decodeIndexBody(bodyOf(enc.out, plan.entryOffset(ix), Kind.Index), 0, plan.entryLength(ix) - ENTRY_HEADER_BYTES, 0);
    expect(index.kids).toEqual([
      new DiskRef(start + plan.entryOffset(l0), plan.entryLength(l0)),
      new DiskRef(start + plan.entryOffset(l1), plan.entryLength(l1)),
    ]);
  });

  it('refuses a plan that breaks its invariants: unsorted keys, a forward Inner reference', () => {
    plan.reset();
    plan.leaf(['b', 'a'] as BinKey[], [iv('1'), iv('2')], null);
    expect(() => plan.encode(8192, 0)).toThrow(/malformed/);
    plan.reset();
    plan.leaf(['a', 'a'] as BinKey[], [iv('1'), iv('2')], null);
    expect(() => plan.encode(8192, 0)).toThrow(/malformed/);
    plan.reset();
    plan.index([] as BinKey[], [{ inner: true, at: 0, len: 0 }]); // refers to itself
    expect(() => plan.encode(8192, 0)).toThrow(/malformed/);
  });

  it.each(['leaf', 'actions'])('a %s plan cut short or with damaged headers is refused or encoded within bounds, never a trap', (kind) => {
    // A leaf's or actions' keys and values follow its item headers (asm/slab.ts): lengths there
    // that point past the plan must be refused, as a cut anywhere must.
    const internals = plan as unknown as { p: number; planPtr: number; mem: Uint8Array };
    const keys = ['alpha', 'beta', 'gamma', 'kappa'] as BinKey[];
    const vals: LeafValue[] = [iv('one'), new ValueRef(10_000, 300, undefined), iv(''), iv('x'.repeat(100))];
    const refs = vals.map((v) => (v instanceof ValueRef ? outer(v) : { inner: false, at: 0, len: 0 }));
    const stage = (): void => {
      plan.reset();
      if (kind === 'leaf') plan.leaf(keys, vals, refs);
      else plan.actions(keys.map((key, i) => ({ key, val: i === 2 ? null : vals[i] })), refs);
    };
    stage();
    const whole = internals.p - internals.planPtr;
    let refused = 0;
    for (let cut = 1; cut < whole; cut++) {
      stage();
      internals.p -= cut;
      try {
        plan.encode(8192, 0);
      } catch (err) {
        expect(String(err)).toMatch(/malformed/);
        refused++;
      }
    }
    expect(refused).toBe(whole - 1);
    const rnd = fc.sample(fc.tuple(fc.nat({ max: 40 }), fc.integer({ min: 1, max: 255 })), { numRuns: 300, seed: 19 });
    for (const [at, xor] of rnd) {
      stage();
      internals.mem[internals.planPtr + 1 + (at % (whole - 1))] ^= xor;
      try {
        const enc = plan.encode(8192, 0);
        expect(enc.len).toBeGreaterThan(0);
      } catch (err) {
        expect(String(err)).toMatch(/malformed|space|encoding failed \(-3\)/); // -3: more entries than staged
      }
    }
  });
});

describe('WebAssembly body parsing agrees with the reference on damaged bodies', () => {
  const sample = (): Array<{ kind: Kind; body: Buffer }> => {
    const keys = ['app', 'apple', 'apply', 'apt\u00ff', 'b'.repeat(40)] as BinKey[];
    const vals: LeafValue[] = [iv('one'), new ValueRef(10_000, 300, undefined), iv(''), iv('four'), iv(Buffer.alloc(140, 1))];
    const leaf = referenceBody((w) => ref.encodeLeafBody(w, new LeafNode(0, keys, vals, 0)));
    const index = referenceBody((w) => ref.encodeIndexBody(w, new IndexNode(0, keys, keys.concat(['c' as BinKey]).map((_, i) => new DiskRef(8192 + i * 4096, 4000 + i)), 0), (c) => c as DiskRef));
    const actions = referenceBody((w) => ref.encodeActionsBody(w, keys.map((key, i) => ({ key, val: i === 2 ? null : vals[i] }))));
    return [
      { kind: Kind.Leaf, body: leaf },
      { kind: Kind.Index, body: index },
      { kind: Kind.Actions, body: actions },
    ];
  };
  const decoders = {
    [Kind.Leaf]: [decodeLeafBody, ref.decodeLeafBody],
    [Kind.Index]: [decodeIndexBody, ref.decodeIndexBody],
    [Kind.Actions]: [decodeActionsBody, ref.decodeActionsBody],
  } as const;

  function verdict(f: (b: Buffer, s: number, e: number, p: number) => unknown, b: Buffer): unknown {
    try {
      return { ok: f(b, 0, b.length, 77) };
    } catch (err) {
      expect(err).toBeInstanceOf(CorruptionError);
      return 'corrupt';
    }
  }

  it('byte changes and truncations give the same data or a CorruptionError in both', () => {
    const bodies = sample();
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 }), fc.nat(), fc.integer({ min: 0, max: 255 }), fc.boolean(), (which, at, byte, cut) => {
        const { kind, body } = bodies[which];
        const b = Buffer.from(body);
        const i = at % b.length;
        const damaged = cut ? b.subarray(0, i) : (b[i] = byte, b);
        const [wasm, js] = decoders[kind as Kind.Leaf | Kind.Index | Kind.Actions];
        const got = verdict(wasm as never, damaged);
        const want = verdict(js as never, damaged);
        if (got === 'corrupt' || want === 'corrupt') expect(got).toBe(want);
        else expect(JSON.stringify(got)).toBe(JSON.stringify(want));
      }),
      { numRuns: 2000, seed: 20261125 },
    );
  });
});
