// The writer over the tree in linear memory (src/engine/wasm-tree-writer.ts) as the store would
// drive it, against a model: batches changing the published tree in place or copying, published
// or aborted, with transactions inside them (savepoints restored or dropped), reads of their own
// writes, readers of the published tree mid-batch (which seal), snapshots held, and checkpoints
// that leave parts of the tree clean (loaded again from the file when the cache lacks them).
// After every step the published tree and every snapshot read back their models with every
// reference count exact; once all is released, the region is as it was.
import fc from 'fast-check';
import { Buffer } from 'node:buffer';
import { describe, expect, it } from 'vitest';
import { instance, type Instance, type Val } from './support/wasm-nodes.js';
import { checkAll, dropHeld, encode, holdTree, expectContents, expectRefs, readTree, switchWritten, takeUndoArea, type Disk, type Root, type Tree } from './support/wasm-tree.js';
import { CacheTooSmallError, TreeMemoryFullError, WasmTreeWriter, type TreeHost, type TreeValue } from '../src/engine/wasm-tree-writer.js';
import { ValueRef } from '../src/engine/node.js';
import { StagedSets } from '../src/engine/staged-sets.js';

function hostOver(t: Instance, disk: Disk): TreeHost & { loads: number } {
  return {
    ex: t.ex,
    probe: t.probe,
    input: t.input,
    result: t.result,
    mem: () => t.mem(),
    loads: 0,
    load(pos: number, len: number): void {
      const e = disk.get(pos)!;
      expect(e.body.length + 9).toBe(len);
      t.mem().set(e.body, t.input);
      // 0 cached, 1 too big for this ring (the writer finds it missing again and says so).
      expect([0, 1]).toContain(t.ex.cacheIngest(pos, len, e.kind, e.body.length));
      this.loads++;
    },
  };
}

const key = (i: number): Buffer => Buffer.from(`k${String(i).padStart(5, '0')}`);
const valueOf = (v: Val): TreeValue => (v.ref ? new ValueRef(v.pos, v.len, undefined) : v.bytes);
const valArb: fc.Arbitrary<Val> = fc.oneof(
  { weight: 6, arbitrary: fc.uint8Array({ maxLength: 60 }).map((b) => ({ ref: false as const, bytes: Buffer.from(b) })) },
  { weight: 1, arbitrary: fc.record({ ref: fc.constant(true as const), pos: fc.integer({ min: 1, max: 2 ** 40 }), len: fc.integer({ min: 129, max: 1 << 20 }) }) },
);
type Change =
  | { t: 'put'; k: number; v: Val }
  | { t: 'many'; from: number; n: number; step: number; staged: boolean }
  | { t: 'del'; k: number; n: number }
  | { t: 'get'; k: number }
  | { t: 'txn'; changes: Array<{ k: number; v: Val }>; abort: boolean }
  | { t: 'read' };
const changeArb: fc.Arbitrary<Change> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ t: fc.constant('put' as const), k: fc.nat({ max: 1000 }), v: valArb }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('many' as const), from: fc.nat({ max: 1000 }), n: fc.integer({ min: 1, max: 120 }), step: fc.constantFrom(1, 7, 389), staged: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('del' as const), k: fc.nat({ max: 1000 }), n: fc.integer({ min: 1, max: 80 }) }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('get' as const), k: fc.nat({ max: 1000 }) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('txn' as const), changes: fc.array(fc.record({ k: fc.nat({ max: 1000 }), v: valArb }), { maxLength: 20 }), abort: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('read' as const) }) },
);
type Op = { t: 'batch'; inPlace: boolean; abort: boolean; evict: boolean; changes: Change[] } | { t: 'hold' } | { t: 'drop'; pick: number } | { t: 'checkpoint' };
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ t: fc.constant('batch' as const), inPlace: fc.boolean(), abort: fc.boolean(), evict: fc.boolean(), changes: fc.array(changeArb, { minLength: 1, maxLength: 10 }) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('hold' as const) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('drop' as const), pick: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('checkpoint' as const) }) },
);

describe('the writer over the tree in linear memory (src/engine/wasm-tree-writer.ts)', () => {
  it('runs batches, transactions and readers as the store would, against a model', () => {
    let inPlaceBatches = 0;
    let loads = 0;
    let stagedGroups = 0;
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 3, maxLength: 14 }), fc.constantFrom(256, 512, 4096), (ops, maxNodeBytes) => {
        const t = instance(64 << 20);
        const base = takeUndoArea(t, maxNodeBytes);
        const disk: Disk = new Map();
        const host = hostOver(t, disk);
        let fileEnd = 8192;
        /** The published tree: the store's reference on its root. */
        const pub: Tree = { root: { addr: 0, pos: 0, len: 0 }, model: new Map() };
        const held: Tree[] = [];
        // First a tree written whole: later batches, some after the cache forgot it, load what they need.
        const start: Op[] = [{ t: 'batch', inPlace: false, abort: false, evict: false, changes: [{ t: 'many', from: 0, n: 600, step: 1, staged: false }] }, { t: 'checkpoint' }];
        const staged = new StagedSets(t.ex, () => t.mem(), () => {});
        for (const op of [...start, ...ops]) {
          if (op.t === 'hold') holdTree(t, pub, held);
          else if (op.t === 'drop') dropHeld(t, held, op.pick);
          else if (op.t === 'checkpoint') {
            if (pub.root.addr !== 0) {
              const e = encode(t, pub.root, fileEnd);
              for (const [pos, entry] of e.entries) disk.set(pos, entry);
              fileEnd = e.end;
              t.ex.free(e.plan);
              pub.root = switchWritten(t, pub.root);
            }
          } else {
            if (op.evict) t.ex.cacheClear(); // every clean node is read from the file again when needed
            const w = new WasmTreeWriter(host, pub.root, pub.model.size, maxNodeBytes, op.inPlace);
            if (op.inPlace && pub.root.addr !== 0) inPlaceBatches++;
            const model = new Map(pub.model);
            const set = (k: Buffer, v: Val): void => {
              expect(w.set(k, valueOf(v))).toBe(!model.has(k.toString('hex')));
              model.set(k.toString('hex'), v);
            };
            for (const c of op.changes) {
              if (c.t === 'put') set(key(c.k), c.v);
              else if (c.t === 'many' && c.staged) {
                // The same sets made as a group in one call (staged-sets.ts): misses, a seal
                // half-way through an in-place batch, and references among them.
                let isNew = 0;
                const seen = new Set<string>();
                for (let i = 0; i < c.n; i++) {
                  const k = key((c.from + i * c.step) % 1001);
                  const v: Val = i % 5 === 4 ? { ref: true, pos: 4096 + i, len: 200 + i } : { ref: false, bytes: Buffer.alloc(8 + (i % 30), i & 0xff) };
                  const hex = k.toString('hex');
                  if (!model.has(hex) && !seen.has(hex)) isNew++;
                  seen.add(hex);
                  model.set(hex, v);
                  staged.add(k, valueOf(v));
                }
                const count = w.count;
                expect(w.putStaged(staged)).toBe(isNew);
                expect(w.count).toBe(count + isNew);
                staged.allMade();
                staged.clear();
                stagedGroups++;
              } else if (c.t === 'many') {
                for (let i = 0; i < c.n; i++) {
                  const k = (c.from + i * c.step) % 1001;
                  set(key(k), { ref: false, bytes: Buffer.alloc(8 + (k % 30), (k + i) & 0xff) });
                }
              } else if (c.t === 'del') {
                for (let i = 0; i < c.n; i++) {
                  const k = key((c.k + i) % 1001);
                  expect(w.delete(k)).toBe(model.delete(k.toString('hex')));
                }
              } else if (c.t === 'get') {
                // The batch reads its own writes.
                const got = w.get(key(c.k));
                const want = model.get(key(c.k).toString('hex'));
                if (want === undefined) expect(got).toBeUndefined();
                else if (want.ref) expect(got).toEqual(new ValueRef(want.pos, want.len, undefined));
                else expect(Buffer.from(got as Buffer).equals(want.bytes)).toBe(true);
              } else if (c.t === 'txn') {
                const sp = w.savepoint();
                const before = new Map(model);
                for (const { k, v } of c.changes) set(key(k), v);
                expect(w.count).toBe(model.size);
                if (c.abort) {
                  w.restore(sp);
                  model.clear();
                  for (const [k, v] of before) model.set(k, v);
                } else w.drop(sp);
              } else {
                // A reader of the published tree mid-batch: changes in place are sealed away.
                w.seal();
                expectContents(readTree(t, pub.root, new Map(), new Set(), disk), pub.model);
              }
              expect(w.count).toBe(model.size);
            }
            expectContents(readTree(t, w.root, new Map(), new Set(), disk), model);
            if (op.abort) {
              w.abort();
            } else {
              const next = w.publish();
              if (pub.root.addr !== 0) t.ex.wtreeRelease(pub.root.addr);
              pub.root = next;
              pub.model = model;
            }
          }
          expect(t.ex.wtreeJournaled()).toBe(0);
          // Every tree as its model, every count exact (lookups key by key once, at the end: each
          // may load nodes through the small ring).
          const refs = new Map<number, number>();
          const seen = new Set<number>();
          expectContents(readTree(t, pub.root, refs, seen, disk), pub.model);
          for (const h of held) expectContents(readTree(t, h.root, refs, seen, disk), h.model);
          expectRefs(t, refs);
        }
        checkAll(t, pub, held, disk);
        loads += host.loads;
        for (const h of held) if (h.root.addr !== 0) t.ex.wtreeRelease(h.root.addr);
        if (pub.root.addr !== 0) t.ex.wtreeRelease(pub.root.addr);
        expect(t.ex.dirtyBytesInUse()).toBe(base);
      }),
      { numRuns: 30 },
    );
    expect(inPlaceBatches).toBeGreaterThan(10); // batches that changed the published tree in place (~28)
    expect(loads).toBeGreaterThan(100); // clean nodes read from the file (~700)
    expect(stagedGroups).toBeGreaterThan(10);
  });

  it('says so when the cache cannot hold a change\'s path, instead of loading forever', () => {
    const t = instance(64 << 20);
    const disk: Disk = new Map();
    let root: Root = { addr: 0, pos: 0, len: 0 };
    const w0 = new WasmTreeWriter(hostOver(t, disk), root, 0, 512, false);
    for (let i = 0; i < 3000; i++) w0.set(key(i), Buffer.alloc(30, i & 0xff));
    root = w0.publish();
    const e = encode(t, root, 8192);
    for (const [pos, entry] of e.entries) disk.set(pos, entry);
    root = switchWritten(t, root);
    expect(root.addr).toBe(0);
    // A second instance whose ring holds two or three of these nodes at a time.
    const small = instance(1 << 20, 2 << 10);
    const w = new WasmTreeWriter(hostOver(small, disk), root, 3000, 512, false);
    expect(() => w.set(key(1500), Buffer.alloc(30, 1))).toThrow(CacheTooSmallError);
    expect(small.ex.dirtyBytesInUse()).toBe(0);
  });

  it('says so when its node region is full, changing nothing', () => {
    const t = instance(1 << 20); // a 1 MiB region
    const host = hostOver(t, new Map());
    const w = new WasmTreeWriter(host, { addr: 0, pos: 0, len: 0 }, 0, 4096, false);
    let i = 0;
    let full: unknown = null;
    try {
      for (; i < 100_000; i++) w.set(key(i), Buffer.alloc(60, i & 0xff));
    } catch (err) {
      full = err;
    }
    expect(full).toBeInstanceOf(TreeMemoryFullError);
    expect(w.count).toBe(i);
    for (let j = 0; j < i; j += 97) expect(Buffer.from(w.get(key(j)) as Buffer).equals(Buffer.alloc(60, j & 0xff))).toBe(true);
    expect(w.get(key(i))).toBeUndefined();
    const root: Root = w.publish();
    t.ex.wtreeRelease(root.addr);
    expect(t.ex.dirtyBytesInUse()).toBe(0);
  });

  it('says so when its node region fills in the middle of a staged group, with the sets before it made and counted', () => {
    const t = instance(1 << 20);
    const w = new WasmTreeWriter(hostOver(t, new Map()), { addr: 0, pos: 0, len: 0 }, 0, 4096, false);
    const staged = new StagedSets(t.ex, () => t.mem(), () => {});
    let full: unknown = null;
    let taken = 0;
    try {
      for (let g = 0; g < 1000; g++) {
        for (let j = 0; j < 100; j++) staged.add(key(taken + j), Buffer.alloc(60, (taken + j) & 0xff));
        taken += 100;
        w.putStaged(staged);
        staged.allMade();
        staged.clear();
      }
    } catch (err) {
      full = err;
    }
    expect(full).toBeInstanceOf(TreeMemoryFullError);
    const made = w.count;
    // Stopped inside the last group: some of it made, not all.
    expect(made).toBeGreaterThan(taken - 100);
    expect(made).toBeLessThan(taken);
    for (let j = 0; j < made; j += 97) expect(Buffer.from(w.get(key(j)) as Buffer).equals(Buffer.alloc(60, j & 0xff))).toBe(true);
    expect(Buffer.from(w.get(key(made - 1)) as Buffer).equals(Buffer.alloc(60, (made - 1) & 0xff))).toBe(true);
    expect(w.get(key(made))).toBeUndefined();
    const root: Root = w.publish();
    t.ex.wtreeRelease(root.addr);
    expect(t.ex.dirtyBytesInUse()).toBe(0);
  });
});
