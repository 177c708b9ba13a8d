// The writer's leaves in linear memory (asm/wleaf.ts, asm/dirty.ts) against a model: random
// sets, deletes, splits, rebuilds and journaled changes undone, with every invariant of the layout
// checked after each step, and the encoded bodies compared byte for byte with the reference codec.
import fc from 'fast-check';
import { Buffer } from 'node:buffer';
import { describe, expect, it } from 'vitest';
import { REF_FLAG, instance, type Instance, type Val } from './support/wasm-nodes.js';
import { LeafNode, ValueRef, leafBytes, type LeafValue } from '../src/engine/node.js';
import type { BinKey, InlineValue } from '../src/engine/keys.js';
import { ByteWriter, encodeLeafBody } from './support/reference-codec.js';

const SET_OVERWRITTEN = 0;
const SET_REPLACED = 1;
const SET_INSERTED = 2;
const SET_OVERWRITTEN_UNDOABLE = 3;
const NEEDS_REBUILD = -1;




/** Sets the key at PROBE and the value's bytes at INPUT; returns wleafSet's result. */
function set(t: Instance, n: number, key: Buffer, v: Val, keepOld: boolean): number {
  const m = t.mem();
  m.set(key, t.probe);
  if (!v.ref) m.set(v.bytes, t.input);
  return t.ex.wleafSet(n, key.length, t.input, v.ref ? v.len : v.bytes.length, v.ref ? 1 : 0, v.ref ? v.pos : 0, keepOld ? 1 : 0);
}

/** A set that rebuilds when it must (as the writer will), freeing the old node; returns the node. */
function setRebuilding(t: Instance, n: number, key: Buffer, v: Val): number {
  let r = set(t, n, key, v, false);
  if (r === NEEDS_REBUILD) {
    t.mem().set(key, t.probe);
    const m = t.ex.wleafRebuild(n, 1, key.length, key.length + (v.ref ? 0 : v.bytes.length) + 64);
    expect(m).toBeGreaterThan(0);
    expect(t.ex.wleafFree(n)).toBe(1);
    n = m;
    r = set(t, n, key, v, false);
  }
  expect([SET_OVERWRITTEN, SET_REPLACED, SET_INSERTED]).toContain(r);
  return n;
}

interface Read {
  keys: Buffer[];
  vals: Val[];
  prefix: Buffer;
  estimate: number;
}

/** Reads a dirty leaf through its documented layout and checks every invariant on the way. */
function readChecked(t: Instance, n: number): Read {
  const m = t.mem();
  const capacity = m.readUInt32LE(n);
  expect(m.readUInt32LE(n + 4)).toBe(2);
  expect(m.readDoubleLE(n + 8)).toBe(-1);
  const count = m.readUInt32LE(n + 16);
  const p = m.readUInt32LE(n + 24);
  const prefix = Buffer.from(m.subarray(n + 32, n + 32 + p));
  const low = m.readUInt32LE(n - 32);
  const garbage = m.readUInt32LE(n - 28);
  const estimate = m.readUInt32LE(n - 24);
  const slots = n + 32 + ((p + 7) & ~7);
  expect(slots + count * 8).toBeLessThanOrEqual(n + low);
  expect(low).toBeLessThanOrEqual(capacity);
  const keys: Buffer[] = [];
  const vals: Val[] = [];
  let liveBytes = 0;
  let est = 16;
  for (let i = 0; i < count; i++) {
    const word = m.readUInt32LE(slots + i * 8);
    const off = m.readUInt32LE(slots + i * 8 + 4);
    expect(off).toBeGreaterThanOrEqual(low);
    const rec = n + off;
    const kw = m.readUInt32LE(rec);
    const kl = (kw & ~REF_FLAG) >>> 0;
    const vl = m.readUInt32LE(rec + 4);
    const ref = (kw & REF_FLAG) !== 0;
    const key = Buffer.from(m.subarray(rec + (ref ? 16 : 8), rec + (ref ? 16 : 8) + kl));
    const size = ref ? (16 + kl + 7) & ~7 : (8 + kl + vl + 7) & ~7;
    expect(off + size).toBeLessThanOrEqual(capacity);
    liveBytes += size;
    est += kl + 2 + (ref ? 12 : vl + 3);
    vals.push(ref ? { ref: true, pos: m.readDoubleLE(rec + 8), len: vl } : { ref: false, bytes: Buffer.from(m.subarray(rec + 8 + kl, rec + 8 + kl + vl)) });
    // Every key shares the prefix, its slot's word is its next 4 bytes, keys ascend strictly.
    expect(key.subarray(0, p).equals(prefix)).toBe(true);
    const w = Buffer.alloc(4);
    key.copy(w, 0, p, Math.min(key.length, p + 4));
    expect(word).toBe(w.readUInt32BE(0));
    if (i > 0) expect(Buffer.compare(keys[i - 1], key)).toBe(-1);
    keys.push(key);
  }
  expect(liveBytes + garbage).toBe(capacity - low);
  expect(estimate).toBe(est);
  return { keys, vals, prefix, estimate };
}

function asLeafNode(r: Read): LeafNode {
  const keys = r.keys.map((k) => k.toString('latin1') as BinKey);
  const vals: LeafValue[] = r.vals.map((v) => (v.ref ? new ValueRef(v.pos, v.len, undefined) : (v.bytes.toString('latin1') as InlineValue)));
  return new LeafNode(0, keys, vals, leafBytes(keys, vals));
}

type Model = Map<string, Val>;
const hex = (b: Buffer) => b.toString('hex');

/** The leaf holds exactly the model; searches, the estimate and the encoding agree. */
function expectModel(t: Instance, n: number, model: Model): Read {
  const r = readChecked(t, n);
  const want = [...model.keys()].sort((a, b) => Buffer.compare(Buffer.from(a, 'hex'), Buffer.from(b, 'hex')));
  expect(r.keys.map(hex)).toEqual(want);
  for (let i = 0; i < r.keys.length; i++) {
    const v = model.get(want[i])!;
    const got = r.vals[i];
    if (v.ref) expect(got).toEqual(v);
    else expect(!got.ref && got.bytes.equals(v.bytes)).toBe(true);
    t.mem().set(r.keys[i], t.probe);
    expect(t.ex.wleafSearch(n, r.keys[i].length)).toBe((i << 1) | 1);
  }
  const leaf = asLeafNode(r);
  expect(r.estimate).toBe(leaf.bytes); // the JS writer's estimate (node.ts leafBytes)
  const w = new ByteWriter();
  encodeLeafBody(w, leaf);
  const out = t.input + (1 << 19); // the upper half of INPUT: values go in the lower
  const len = t.ex.wleafEncode(n, out, 1 << 19);
  expect(len).toBe(w.off);
  expect(Buffer.from(t.mem().subarray(out, out + len)).equals(w.buf.subarray(0, w.off))).toBe(true);
  return r;
}

/** Lower bound of `key` among the model's keys, and whether it is there. */
function lowerBound(model: Model, key: Buffer): [number, boolean] {
  const keys = [...model.keys()].map((k) => Buffer.from(k, 'hex')).sort(Buffer.compare);
  let i = 0;
  while (i < keys.length && Buffer.compare(keys[i], key) < 0) i++;
  return [i, i < keys.length && keys[i].equals(key)];
}

// Keys from a small space with shared prefixes, so sets overwrite, prefixes shrink and ties on
// the 4-byte words need the full comparison.
const keyArb = fc
  .tuple(fc.constantFrom('', 'a', 'ab', 'abcdef'), fc.array(fc.constantFrom(0, 1, 0x61, 0x62, 0xff), { maxLength: 6 }))
  .map(([s, tail]) => Buffer.concat([Buffer.from(s, 'latin1'), Buffer.from(tail)]));
const valArb: fc.Arbitrary<Val> = fc.oneof(
  { weight: 4, arbitrary: fc.uint8Array({ maxLength: 130 }).map((b) => ({ ref: false as const, bytes: Buffer.from(b) })) },
  { weight: 1, arbitrary: fc.record({ ref: fc.constant(true as const), pos: fc.integer({ min: 0, max: 2 ** 40 }), len: fc.integer({ min: 129, max: 1 << 20 }) }) },
);
type Op =
  | { t: 'set'; key: Buffer; val: Val }
  | { t: 'del'; pick: number }
  | { t: 'split'; at: number; keepRight: boolean }
  | { t: 'rebuild' }
  | { t: 'journal'; sets: Array<{ key: Buffer; val: Val }>; dels: number[]; undo: boolean };
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 8, arbitrary: fc.record({ t: fc.constant('set' as const), key: keyArb, val: valArb }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('del' as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('split' as const), at: fc.double({ min: 0, max: 1, noNaN: true }), keepRight: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('rebuild' as const) }) },
  {
    weight: 2,
    arbitrary: fc.record({
      t: fc.constant('journal' as const),
      sets: fc.array(fc.record({ key: keyArb, val: valArb }), { maxLength: 8 }),
      dels: fc.array(fc.nat(), { maxLength: 2 }),
      undo: fc.boolean(),
    }),
  },
);

describe('the writer\'s leaves in linear memory (asm/wleaf.ts)', () => {
  it('hold exactly what a model holds through random sets, deletes, splits, rebuilds and undone journals', () => {
    const t = instance(64 << 20);
    // The undo area takes its block on first use: take it before counting the blocks in use.
    const first = setRebuilding(t, t.ex.wleafEmpty(64), Buffer.from('k'), { ref: false, bytes: Buffer.from('v') });
    expect(set(t, first, Buffer.from('k'), { ref: false, bytes: Buffer.from('w') }, true)).toBe(SET_OVERWRITTEN_UNDOABLE);
    t.ex.wleafUndoReset();
    expect(t.ex.wleafFree(first)).toBe(1);
    const base = t.ex.dirtyBytesInUse();
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 60 }), (ops) => {
        let n = t.ex.wleafEmpty(64);
        expect(n).toBeGreaterThan(0);
        let model: Model = new Map();
        for (const op of ops) {
          if (op.t === 'set') {
            // A probe before the set: the search's index and flag match the model's.
            t.mem().set(op.key, t.probe);
            const [at, found] = lowerBound(model, op.key);
            expect(t.ex.wleafSearch(n, op.key.length)).toBe((at << 1) | (found ? 1 : 0));
            n = setRebuilding(t, n, op.key, op.val);
            model.set(hex(op.key), op.val);
          } else if (op.t === 'del') {
            if (model.size === 0) continue;
            const keys = [...model.keys()].map((k) => Buffer.from(k, 'hex')).sort(Buffer.compare);
            const i = op.pick % keys.length;
            t.ex.wleafRemove(n, i);
            model.delete(hex(keys[i]));
          } else if (op.t === 'split') {
            if (model.size < 2) continue;
            const keys = [...model.keys()].map((k) => Buffer.from(k, 'hex')).sort(Buffer.compare);
            const at = 1 + Math.floor(op.at * (keys.length - 2));
            const right = t.ex.wleafSplit(n, at, 32);
            expect(right).toBeGreaterThan(0);
            const leftModel: Model = new Map(keys.slice(0, at).map((k) => [hex(k), model.get(hex(k))!]));
            const rightModel: Model = new Map(keys.slice(at).map((k) => [hex(k), model.get(hex(k))!]));
            expectModel(t, n, leftModel);
            expectModel(t, right, rightModel);
            expect(t.ex.wleafFree(op.keepRight ? n : right)).toBe(1);
            n = op.keepRight ? right : n;
            model = op.keepRight ? rightModel : leftModel;
          } else if (op.t === 'rebuild') {
            const m = t.ex.wleafRebuild(n, 0, 0, 0);
            expect(m).toBeGreaterThan(0);
            expect(t.ex.wleafFree(n)).toBe(1);
            n = m;
          } else {
            // Changes kept undoable (keepOld), as the in-place writer journals them; then either
            // kept or undone newest first, which must give back exactly the leaf before.
            const before = new Map(model);
            const undo: Array<{ slot: number; code: number; at: number }> = [];
            for (const s of op.sets) {
              const r = set(t, n, s.key, s.val, true);
              if (r === NEEDS_REBUILD) continue; // the writer would copy the leaf instead
              const res = t.mem();
              expect([SET_REPLACED, SET_INSERTED, SET_OVERWRITTEN_UNDOABLE]).toContain(r);
              undo.push({ slot: res.readUInt32LE(t.ex.resultAddress() + 4), code: r, at: res.readUInt32LE(t.ex.resultAddress()) });
              model.set(hex(s.key), s.val);
            }
            expectModel(t, n, model);
            if (op.undo) {
              for (let k = undo.length - 1; k >= 0; k--) {
                const u = undo[k];
                if (u.code === SET_INSERTED) t.ex.wleafRemove(n, u.slot);
                else if (u.code === SET_REPLACED) t.ex.wleafUndoReplace(n, u.slot, u.at);
                else t.ex.wleafUndoOverwrite(n, u.slot, u.at);
              }
              model = before;
            }
            t.ex.wleafUndoReset(); // the journal is empty again
          }
          expectModel(t, n, model);
        }
        // Absent keys: the search's insertion point matches the model's.
        for (const probe of [Buffer.alloc(0), Buffer.from('a'), Buffer.from('abz'), Buffer.from([0xff, 0xff])]) {
          t.mem().set(probe, t.probe);
          const [at, found] = lowerBound(model, probe);
          expect(t.ex.wleafSearch(n, probe.length)).toBe((at << 1) | (found ? 1 : 0));
        }
        expect(t.ex.wleafFree(n)).toBe(1);
        expect(t.ex.dirtyBytesInUse()).toBe(base); // every block given back
      }),
      { numRuns: 300 },
    );
  });

  it('overwrites a value of the same length in place, and only when no undo is kept', () => {
    const t = instance(1 << 20);
    let n = t.ex.wleafEmpty(256);
    const k = Buffer.from('key');
    n = setRebuilding(t, n, k, { ref: false, bytes: Buffer.from('one') });
    const low = t.mem().readUInt32LE(n - 32);
    expect(set(t, n, k, { ref: false, bytes: Buffer.from('two') }, false)).toBe(SET_OVERWRITTEN);
    expect(t.mem().readUInt32LE(n - 32)).toBe(low); // no new record
    // Undoable: the old bytes go to the undo area, the record stays where it is.
    expect(set(t, n, k, { ref: false, bytes: Buffer.from('six') }, true)).toBe(SET_OVERWRITTEN_UNDOABLE);
    expect(t.mem().readUInt32LE(n - 32)).toBe(low);
    // Undoable with another length: a new record.
    expect(set(t, n, k, { ref: false, bytes: Buffer.from('seven') }, true)).toBe(SET_REPLACED);
    expect(t.mem().readUInt32LE(n - 32)).toBeLessThan(low);
    expectModel(t, n, new Map([[hex(k), { ref: false, bytes: Buffer.from('seven') }]]));
  });

  it('saves overwritten values until the undo area is full, then adds records; undone newest first, the first value is back', () => {
    const t = instance(16 << 20);
    const k = Buffer.from('key');
    let n = t.ex.wleafEmpty(200_000);
    expect(n).toBeGreaterThan(0);
    n = setRebuilding(t, n, k, { ref: false, bytes: Buffer.alloc(100, 0xee) });
    const undo: Array<{ code: number; at: number }> = [];
    for (let i = 0; i < 3000; i++) {
      const r = set(t, n, k, { ref: false, bytes: Buffer.alloc(100, i & 0xff) }, true);
      if (r === NEEDS_REBUILD) break;
      undo.push({ code: r, at: t.mem().readUInt32LE(t.ex.resultAddress()) });
    }
    const saved = undo.filter((u) => u.code === SET_OVERWRITTEN_UNDOABLE).length;
    expect(saved).toBe(Math.floor(((1 << 18) - 32) / 100)); // one 256 KiB block less its pre-header
    expect(undo.slice(saved).every((u) => u.code === SET_REPLACED)).toBe(true);
    expect(undo.length).toBeGreaterThan(saved + 100);
    for (let i = undo.length - 1; i >= 0; i--) {
      if (undo[i].code === SET_REPLACED) t.ex.wleafUndoReplace(n, 0, undo[i].at);
      else t.ex.wleafUndoOverwrite(n, 0, undo[i].at);
    }
    t.ex.wleafUndoReset();
    expectModel(t, n, new Map([[hex(k), { ref: false, bytes: Buffer.alloc(100, 0xee) }]]));
  });

  it('grows by rebuilding to a thousand keys and more, then splits by the estimate', () => {
    const t = instance(16 << 20);
    let n = t.ex.wleafEmpty(0);
    const model: Model = new Map();
    for (let i = 0; i < 1500; i++) {
      const key = Buffer.from(`k${String((i * 7919) % 100_000).padStart(6, '0')}`);
      const val: Val = { ref: false, bytes: Buffer.alloc(100, i) };
      n = setRebuilding(t, n, key, val);
      model.set(hex(key), val);
    }
    const r = expectModel(t, n, model);
    expect(r.estimate).toBeGreaterThan(4096 * 30);
    const right = t.ex.wleafSplit(n, 750, 0);
    expect(t.mem().readUInt32LE(n + 16) + t.mem().readUInt32LE(right + 16)).toBe(1500);
    expect(t.mem().readUInt32LE(n - 24) + t.mem().readUInt32LE(right - 24) - 16).toBe(r.estimate);
  });

  it('reads a cached (clean) leaf: a rebuilt copy searches alike and encodes to the bytes it was parsed from', () => {
    const t = instance(1 << 20);
    const keys = Array.from({ length: 40 }, (_, i) => `pre-${String(i * 3).padStart(3, '0')}` as BinKey);
    const vals: LeafValue[] = keys.map((k, i) => (i % 7 === 3 ? new ValueRef(1000 + i, 500, undefined) : (`v${k}` as InlineValue)));
    const w = new ByteWriter();
    encodeLeafBody(w, new LeafNode(0, keys, vals, leafBytes(keys, vals)));
    t.mem().set(w.buf.subarray(0, w.off), t.input);
    expect(t.ex.cacheIngest(4096, w.off + 9, 2, w.off)).toBe(0);
    const clean = t.ex.cachedNode(4096);
    expect(clean).toBeGreaterThan(0);
    for (const [i, k] of keys.entries()) {
      t.mem().write(k, t.probe, 'latin1');
      expect(t.ex.wleafSearch(clean, k.length)).toBe((i << 1) | 1);
    }
    const copy = t.ex.wleafRebuild(clean, 0, 0, 0);
    const model: Model = new Map(keys.map((k, i) => {
      const v = vals[i];
      return [hex(Buffer.from(k, 'latin1')), v instanceof ValueRef ? { ref: true, pos: v.pos, len: v.len } : { ref: false, bytes: Buffer.from(v, 'latin1') }];
    }));
    expectModel(t, copy, model);
    const out = t.input + (1 << 19);
    const len = t.ex.wleafEncode(copy, out, 1 << 19);
    expect(Buffer.from(t.mem().subarray(out, out + len)).equals(w.buf.subarray(0, w.off))).toBe(true);
  });

  it('refuses what does not fit: a full region, a node past the largest block, an unwritten value, a bad free', () => {
    const t = instance(64 << 10);
    const blocks: number[] = [];
    for (;;) {
      const n = t.ex.wleafEmpty(1000);
      if (n === 0) break;
      blocks.push(n);
    }
    expect(blocks.length).toBeGreaterThan(10);
    expect(t.ex.wleafEmpty(1 << 20)).toBe(0);
    expect(t.ex.wleafFree(blocks[0])).toBe(1);
    expect(t.ex.wleafFree(blocks[0])).toBe(0); // twice
    expect(t.ex.wleafFree(12345)).toBe(0);
    // Reused: the same block (nodes start a varying multiple of 64 bytes into theirs).
    const again = t.ex.wleafEmpty(1000);
    expect(again).toBeGreaterThanOrEqual(blocks[0] - 1024);
    expect(again).toBeLessThanOrEqual(blocks[0] + 1024);
    expect(t.ex.wleafEmpty(1000)).toBe(0); // and no other was free
    // A set that does not fit changes nothing.
    const n = blocks[1];
    const big: Val = { ref: false, bytes: Buffer.alloc(2000, 1) };
    expect(set(t, n, Buffer.from('k'), big, false)).toBe(NEEDS_REBUILD);
    expect(readChecked(t, n).keys).toEqual([]);
    // A value not written yet (a negative position) cannot be encoded.
    expect(set(t, n, Buffer.from('k'), { ref: true, pos: -1, len: 300 }, false)).toBe(SET_INSERTED);
    expect(t.ex.wleafEncode(n, t.input, 1 << 19)).toBe(-2);
    // Too little room for the body: NO_ROOM, however little is missing.
    expect(t.ex.wleafEncode(blocks[2], t.input, 1)).toBe(-1);
    expect(t.ex.wleafEncode(blocks[2], t.input, 1 << 19)).toBe(2); // count 0, prefix 0
  });
});
