// Range cursors over the writer's tree in linear memory (src/engine/wasm-tree-cursor.ts) against a
// model: trees of dirty and clean nodes (checkpoints appended between changes), read with random
// bounds, prefixes and directions through a node cache small enough to evict on most steps; and
// cursors kept open across the writer's changes and a checkpoint's switch, which frees nodes they
// stand on, reading the tree as it was when they opened. Then over a real store's own node cache
// (WasmNodeCache is a TreeMemory), against db.range on the same file.
import fc from 'fast-check';
import { Buffer } from 'node:buffer';
import { describe, expect, it } from 'vitest';
import { instance, type Instance, type Val } from './support/wasm-nodes.js';
import { del, encode, put, switchWritten, type Disk, type Root } from './support/wasm-tree.js';
import { WasmTreeCursor, type ByteBounds, type TreeMemory } from '../src/engine/wasm-tree-cursor.js';
import { ValueRef, type DiskRef } from '../src/engine/node.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { open, type Db } from '../src/index.js';
import type { WasmNodeCache } from '../src/engine/wasm-cache.js';

/** The instance's memory as a cursor reads it, clean nodes missing from the cache loaded from `disk`. */
function treeMemory(t: Instance, disk: Disk): TreeMemory & { loads: number } {
  let buf = t.ex.memory.buffer;
  let u8 = new Uint8Array(buf);
  let u32 = new Uint32Array(buf);
  let f64 = new Float64Array(buf);
  const views = (): void => {
    if (t.ex.memory.buffer === buf) return;
    buf = t.ex.memory.buffer;
    u8 = new Uint8Array(buf);
    u32 = new Uint32Array(buf);
    f64 = new Float64Array(buf);
  };
  return {
    loads: 0,
    get u8() {
      views();
      return u8;
    },
    get u32() {
      views();
      return u32;
    },
    get f64() {
      views();
      return f64;
    },
    get epoch() {
      views();
      return u32[(t.result + 16) >>> 2];
    },
    get treeEpoch() {
      views();
      return u32[(t.result + 20) >>> 2];
    },
    nodeAt(pos: number, len: number): number {
      const n = t.ex.cachedNode(pos) >>> 0;
      if (n !== 0) return n;
      const e = disk.get(pos)!;
      expect(e.body.length + 9).toBe(len);
      t.mem().set(e.body, t.input);
      expect(t.ex.cacheIngest(pos, len, e.kind, e.body.length)).toBe(0);
      this.loads++;
      return t.ex.cachedNode(pos) >>> 0;
    },
  };
}

/** The model's entries a range gives, in its order. */
function expected(model: Map<string, Val>, b: ByteBounds, limit: number): Array<[string, Val]> {
  const inRange = (k: Buffer): boolean => {
    if (b.low !== undefined) {
      const c = Buffer.compare(k, Buffer.from(b.low));
      if (b.lowInclusive === false ? c <= 0 : c < 0) return false;
    }
    if (b.high !== undefined) {
      const c = Buffer.compare(k, Buffer.from(b.high));
      if (b.highInclusive === false ? c >= 0 : c > 0) return false;
    }
    return b.prefix === undefined || k.subarray(0, b.prefix.length).equals(Buffer.from(b.prefix));
  };
  const all = [...model.entries()]
    .map(([h, v]) => [Buffer.from(h, 'hex'), v] as const)
    .filter(([k]) => inRange(k))
    .sort((a, c) => Buffer.compare(a[0], c[0]));
  if (b.reverse === true) all.reverse();
  return all.slice(0, limit).map(([k, v]) => [k.toString('hex'), v]);
}

/** Up to `limit` entries from a cursor, values as the model spells them. */
function take(c: WasmTreeCursor, limit: number): Array<[string, Val]> {
  const out: Array<[string, Val]> = [];
  while (out.length < limit && c.next()) {
    const v = c.value();
    out.push([c.key().toString('hex'), v instanceof ValueRef ? { ref: true, pos: v.pos, len: v.len } : { ref: false, bytes: v }]);
  }
  return out;
}

const key = (i: number): Buffer => Buffer.from(`k${String(i).padStart(6, '0')}`);
const boundArb: fc.Arbitrary<Buffer> = fc.oneof(
  fc.nat({ max: 4000 }).map(key),
  fc.nat({ max: 4000 }).map((i) => Buffer.concat([key(i), Buffer.from([0])])),
  fc.constantFrom(Buffer.alloc(0), Buffer.from('k'), Buffer.from('k0'), Buffer.from('k01'), Buffer.from([0xff])),
);
const rangeArb: fc.Arbitrary<{ b: ByteBounds; limit: number }> = fc.record({
  b: fc.record(
    {
      low: boundArb,
      lowInclusive: fc.boolean(),
      high: boundArb,
      highInclusive: fc.boolean(),
      prefix: fc.constantFrom(Buffer.from('k000'), Buffer.from('k0001'), Buffer.from('k00200'), Buffer.from('k003'), Buffer.from('x')),
      reverse: fc.boolean(),
    },
    { requiredKeys: ['reverse'] },
  ),
  limit: fc.constantFrom(1, 5, 100, 10_000),
});
type Change = { t: 'many'; from: number; n: number; step: number } | { t: 'del'; from: number; n: number } | { t: 'checkpoint' };
const changeArb: fc.Arbitrary<Change> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ t: fc.constant('many' as const), from: fc.nat({ max: 4000 }), n: fc.integer({ min: 1, max: 600 }), step: fc.constantFrom(1, 7, 613) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('del' as const), from: fc.nat({ max: 4000 }), n: fc.integer({ min: 1, max: 400 }) }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('checkpoint' as const) }) },
);

/** A writer's tree over an instance with a small cache, its file and its model. */
function writerOver(maxNodeBytes: number) {
  const t = instance(64 << 20, 48 << 10); // a 48 KiB ring: most walks evict what they passed
  const disk: Disk = new Map();
  const mem = treeMemory(t, disk);
  let root: Root = { addr: 0, pos: 0, len: 0 };
  let model = new Map<string, Val>();
  let fileEnd = 8192;
  const apply = (c: Change): void => {
    if (c.t === 'many') {
      for (let i = 0; i < c.n; i++) {
        const k = (c.from + i * c.step) % 4001;
        const v: Val = k % 11 === 0 ? { ref: true, pos: 1e6 + k, len: 4096 + k } : { ref: false, bytes: Buffer.alloc(10 + (k % 30), k & 0xff) };
        root = put(t, root, key(k), v, maxNodeBytes, disk).root;
        model.set(key(k).toString('hex'), v);
      }
    } else if (c.t === 'del') {
      for (let i = 0; i < c.n; i++) {
        const k = key((c.from + i) % 4001);
        if (!model.has(k.toString('hex'))) continue;
        root = del(t, root, k, maxNodeBytes, disk)!;
        model.delete(k.toString('hex'));
      }
    } else if (root.addr !== 0) {
      // A checkpoint appended: the tree is switched to its written nodes (the epoch moves).
      const e = encode(t, root, fileEnd);
      for (const [pos, entry] of e.entries) disk.set(pos, entry);
      fileEnd = e.end;
      t.ex.free(e.plan);
      root = switchWritten(t, root);
    }
  };
  return {
    t,
    mem,
    apply,
    get root() {
      return root;
    },
    get model() {
      return model;
    },
    /** A snapshot: the root held (released by the returned function) and a copy of the model. */
    hold(): { root: Root; model: Map<string, Val>; release: () => void } {
      const r = { ...root };
      if (r.addr !== 0) t.ex.wtreeRetain(r.addr);
      return { root: r, model: new Map(model), release: () => r.addr !== 0 && t.ex.wtreeRelease(r.addr) };
    },
    end(): void {
      if (root.addr !== 0) t.ex.wtreeRelease(root.addr);
      root = { addr: 0, pos: 0, len: 0 };
      model = new Map();
      expect(t.ex.dirtyBytesInUse()).toBe(0);
    },
  };
}

describe('range cursors over the writer\'s tree (src/engine/wasm-tree-cursor.ts)', () => {
  it('give what the model holds between any bounds, over dirty and clean nodes through a cache that evicts', () => {
    let loads = 0;
    fc.assert(
      fc.property(fc.array(changeArb, { minLength: 1, maxLength: 8 }), fc.array(rangeArb, { minLength: 1, maxLength: 12 }), fc.constantFrom(256, 512, 4096), (changes, ranges, maxNodeBytes) => {
        const w = writerOver(maxNodeBytes);
        for (const c of changes) w.apply(c);
        for (const { b, limit } of ranges) {
          expect(take(new WasmTreeCursor(w.mem, w.root, b), limit)).toEqual(expected(w.model, b, limit));
        }
        // The whole tree both ways, unbounded.
        expect(take(new WasmTreeCursor(w.mem, w.root), Infinity)).toEqual(expected(w.model, {}, Infinity));
        expect(take(new WasmTreeCursor(w.mem, w.root, { reverse: true }), Infinity)).toEqual(expected(w.model, { reverse: true }, Infinity));
        loads += w.mem.loads;
        w.end();
      }),
      {
        numRuns: 60,
        // First, one that must evict: 2,000 keys written whole, then walked three times.
        examples: [[[{ t: 'many', from: 0, n: 2000, step: 1 }, { t: 'checkpoint' }], [{ b: { reverse: false }, limit: 10_000 }], 512]],
      },
    );
    expect(loads).toBeGreaterThan(200); // the cache did evict: clean nodes were loaded again
  });

  it('read the tree they opened on while the writer changes it and a checkpoint switches it', () => {
    fc.assert(
      fc.property(
        fc.array(changeArb, { minLength: 1, maxLength: 6 }),
        rangeArb,
        fc.nat({ max: 300 }),
        fc.array(changeArb, { minLength: 1, maxLength: 4 }),
        fc.constantFrom(256, 4096),
        (before, range, readFirst, during, maxNodeBytes) => {
          const w = writerOver(maxNodeBytes);
          for (const c of before) w.apply(c);
          const snap = w.hold();
          const cursor = new WasmTreeCursor(w.mem, snap.root, range.b);
          const want = expected(snap.model, range.b, range.limit);
          const got = take(cursor, Math.min(readFirst, range.limit));
          // The writer goes on (copying what the cursor's root reaches) and is checkpointed: the
          // switch frees written nodes, some of them the cursor's, and the tree epoch moves.
          for (const c of during) w.apply(c);
          w.apply({ t: 'checkpoint' });
          // More puts take the blocks the switch freed: a cursor still reading them would see it.
          w.apply({ t: 'many', from: readFirst, n: 300, step: 7 });
          if (got.length > 0 && got.length === Math.min(readFirst, range.limit)) {
            // The entry it stands on reads the same after the switch.
            const v = cursor.value();
            expect([cursor.key().toString('hex'), v instanceof ValueRef ? { ref: true, pos: v.pos, len: v.len } : { ref: false, bytes: v }]).toEqual(got[got.length - 1]);
          }
          got.push(...take(cursor, range.limit - got.length));
          expect(got).toEqual(want);
          snap.release();
          w.end();
        },
      ),
      { numRuns: 80 },
    );
  });

  it('reads nothing from an empty tree, and refuses to be read before next() or after its end', () => {
    const w = writerOver(512);
    const c = new WasmTreeCursor(w.mem, w.root);
    expect(() => c.key()).toThrow(/before next\(\)/);
    expect(c.next()).toBe(false);
    expect(() => c.value()).toThrow(/after its end/);
    w.apply({ t: 'many', from: 0, n: 10, step: 1 });
    const d = new WasmTreeCursor(w.mem, w.root, { low: key(3), high: key(4) });
    expect(d.next()).toBe(true);
    expect(d.key()).toEqual(key(3));
    expect(d.next()).toBe(true);
    expect(d.key()).toEqual(key(4));
    expect(d.next()).toBe(false);
    expect(d.next()).toBe(false);
    w.end();
  });

  it('give what db.range gives over a store\'s own node cache, clean nodes read from the file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'solifuge-wasm-cursor-'));
    try {
      // 150,000 keys (~8 MB of nodes), some values in Value entries, in a 4 MiB cache: walks load
      // and evict.
      let db: Db = await open(join(dir, 'store.db'), { durable: false, cacheBytes: 4 << 20 });
      for (let b = 0; b < 150_000; b += 5000) {
        await db.transaction((tx) => {
          for (let i = b; i < b + 5000; i++) {
            const k = (i * 7919) % 150_000;
            tx.set(key(k), k % 97 === 0 ? Buffer.alloc(3000, k & 0xff) : Buffer.alloc(8 + (k % 40), k & 0xff));
          }
        });
      }
      await db.close();
      db = await open(join(dir, 'store.db'), { durable: false, cacheBytes: 4 << 20 });
      const inner = db as unknown as { tree: { cache: WasmNodeCache }; published: { root: DiskRef } };
      const mem: TreeMemory = inner.tree.cache;
      const root = { addr: 0, pos: inner.published.root.pos, len: inner.published.root.len };
      const wide = fc.oneof(fc.nat({ max: 151_000 }).map(key), boundArb);
      fc.assert(
        fc.property(
          fc.record({ low: wide, lowInclusive: fc.boolean(), high: wide, highInclusive: fc.boolean(), prefix: fc.constantFrom(Buffer.from('k1'), Buffer.from('k059'), Buffer.from('k00'), Buffer.from('k14999')), reverse: fc.boolean() }, { requiredKeys: ['reverse'] }),
          fc.constantFrom(1, 10, 1000, 200_000),
          (b, limit) => {
            const opts = {
              ...(b.low !== undefined ? (b.lowInclusive === false ? { gt: b.low } : { gte: b.low }) : {}),
              ...(b.high !== undefined ? (b.highInclusive === false ? { lt: b.high } : { lte: b.high }) : {}),
              ...(b.prefix !== undefined ? { prefix: b.prefix } : {}),
              reverse: b.reverse,
              limit,
            };
            const want = [...db.range(opts)].map(([k, v]) => [k.toString('hex'), v.toString('hex')]);
            const c = new WasmTreeCursor(mem, root, b);
            const got: string[][] = [];
            while (got.length < limit && c.next()) {
              const v = c.value();
              got.push([c.key().toString('hex'), (v instanceof ValueRef ? db.materialize(v) : v).toString('hex')]);
            }
            expect(got).toEqual(want);
          },
        ),
        // First a walk of everything, forward and back: the draws below mostly read little (bounds
        // among the first 4,000 keys, prefixes of at most 50,000), and in 3 of ~20 runs with
        // random seeds none read past what the 4 MiB ring holds, so nothing was evicted and the
        // epoch stayed 1 (868 nodes loaded in one such run; bench/RESULTS.md round 28).
        { numRuns: 150, examples: [[{ reverse: false }, 200_000], [{ reverse: true }, 200_000]] },
      );
      expect(inner.tree.cache.epoch, JSON.stringify({ misses: inner.tree.cache.misses, nodes: inner.tree.cache.nodes, epoch: inner.tree.cache.epoch })).toBeGreaterThan(100); // the ring evicted, over and over
      await db.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
