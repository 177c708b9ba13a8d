// The decoded-node cache holds the live tree, not every version ever written: each checkpoint
// writes new versions of the nodes it changed, and the versions they replace must leave the cache
// (they kept ~24 index nodes a checkpoint at 100k keys, for good: the heap grew without end).
import v8 from 'node:v8';
import { afterAll, describe, expect, it } from 'vitest';
import { open, type Db } from '../../src/index.js';
import { tempDir } from '../support/tmp.js';

const tmp = tempDir('decoded-cache');
afterAll(() => tmp.cleanup());
let n = 0;

const key = (i: number) => `k${String(i).padStart(8, '0')}`;
const cached = (db: Db) => (db as unknown as { cache: { bytes: { leaves: number; index: number; nodes: number } } }).cache.bytes;

describe('decoded-node cache', () => {
  it('stays the size of the live tree over many checkpoints of scattered overwrites', async () => {
    const KEYS = 20_000;
    const db = await open(tmp.file(`c${n++}.db`), { checkpointIdleMs: 0 });
    for (let b = 0; b < KEYS / 1000; b++) {
      await db.transaction((tx) => {
        for (let i = b * 1000; i < (b + 1) * 1000; i++) tx.set(key(i), Buffer.alloc(100, i & 0xff));
      });
    }
    await db.checkpoint();
    let seed = 7;
    const rnd = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
    const round = async (r: number) => {
      await db.transaction((tx) => {
        for (let j = 0; j < 300; j++) tx.set(key(Math.floor(rnd() * KEYS)), Buffer.alloc(100, r & 0xff));
      });
      await db.checkpoint();
    };
    for (let r = 0; r < 10; r++) await round(r);
    const early = cached(db);
    for (let r = 10; r < 150; r++) await round(r);
    const late = cached(db);
    // Every round rewrites the index nodes on ~300 paths and ~300 leaves: kept, the 140 rounds
    // would add ~140 versions of each index node and ~40k leaves.
    expect(late.index).toBeLessThanOrEqual(early.index * 1.1);
    expect(late.nodes).toBeLessThanOrEqual(early.nodes * 1.1);
    // The tree itself is intact (the forgotten versions are never the live ones).
    expect(db.check().problems).toEqual([]);
    expect(db.count()).toBe(KEYS);
    for (let i = 0; i < KEYS; i += 997) expect(db.get(key(i))?.length).toBe(100);
    await db.close();
  });

  it('a snapshot keeps reading the versions the writer replaced', async () => {
    const db = await open(tmp.file(`c${n++}.db`), { checkpointIdleMs: 0 });
    await db.transaction((tx) => {
      for (let i = 0; i < 5000; i++) tx.set(key(i), 'old');
    });
    await db.checkpoint();
    const snap = db.snapshot();
    await db.transaction((tx) => {
      for (let i = 0; i < 5000; i += 3) tx.set(key(i), 'new');
    });
    await db.checkpoint();
    for (let i = 0; i < 5000; i++) expect(snap.get(key(i))?.toString()).toBe('old');
    expect([...snap.range({ gte: key(100), limit: 5 })].map(([, v]) => v.toString())).toEqual(['old', 'old', 'old', 'old', 'old']);
    for (let i = 0; i < 5000; i++) expect(db.get(key(i))?.toString()).toBe(i % 3 === 0 ? 'new' : 'old');
    snap.release();
    await db.close();
  });

  it('index nodes past a quarter of the bound are evicted like leaves, and load again', async () => {
    // Gets on the decoded path (no WebAssembly cache) over a tree of 512-byte nodes, whose index
    // nodes (~6 KB) pass a 4 KiB bound on their own: they must not crowd the leaves out.
    const boundBytes = 4096;
    const db = await open(tmp.file(`c${n++}.db`), { checkpointIdleMs: 0, nodeBytesMax: 512, decodedCacheBytes: boundBytes, cacheBytes: 0 });
    await db.transaction((tx) => {
      for (let i = 0; i < 20_000; i++) tx.set(key(i), `v${i}`);
    });
    await db.checkpoint();
    let indexMax = 0;
    for (let i = 0; i < 20_000; i += 13) {
      expect(db.get(key(i))?.toString()).toBe(`v${i}`);
      const c = cached(db);
      expect(c.leaves + c.index).toBeLessThanOrEqual(boundBytes);
      indexMax = Math.max(indexMax, c.index);
    }
    // Their quarter, plus what came in since the last eviction (kept for good: ~3.5 KB, the bound).
    expect(indexMax).toBeLessThanOrEqual(boundBytes / 2);
    expect(indexMax).toBeGreaterThan(0);
    expect(db.check().problems).toEqual([]);
    await db.close();
  });

  it('keeps the leaves a sorted load wrote out of it, but the ones scattered writes come back to', async () => {
    // Why (cache.ts addWritten): kept as JS objects, every leaf of a sorted load survived its
    // scavenges and was copied into the old generation, for nothing: the load only comes back
    // to the last one, which is decoded again from the WebAssembly cache.
    const KEYS = 30_000;
    const db = await open(tmp.file(`c${n++}.db`), { checkpointIdleMs: 0 });
    const stats = (db as unknown as { stats: { checkpoints: number } }).stats;
    for (let b = 0; b < KEYS / 1000; b++) {
      await db.transaction((tx) => {
        for (let i = b * 1000; i < (b + 1) * 1000; i++) tx.set(key(i), Buffer.alloc(100, i & 0xff));
      });
    }
    expect(stats.checkpoints).toBe(KEYS / 1000); // each sorted batch wrote its leaves
    const afterLoad = cached(db);
    // ~900 leaves of ~35 keys were written; about one a batch (the one it came back to) is kept.
    expect(afterLoad.leaves).toBeLessThan(KEYS * 110 * 0.1);
    let seed = 11;
    const rnd = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
    const touched = new Set<number>();
    await db.transaction((tx) => {
      for (let j = 0; j < 200; j++) {
        const i = Math.floor(rnd() * KEYS);
        touched.add(i);
        tx.set(key(i), 'again');
      }
    });
    await db.checkpoint();
    // The scattered batch came back to ~190 leaves; their new versions stay decoded.
    expect(cached(db).nodes - afterLoad.nodes).toBeGreaterThan(100);
    expect(db.check().problems).toEqual([]);
    for (let i = 0; i < KEYS; i += 7) expect(db.get(key(i))).toEqual(touched.has(i) ? Buffer.from('again') : Buffer.alloc(100, i & 0xff));
    expect([...db.keys()].length).toBe(KEYS);
    await db.close();
  });

  it("a sorted load's leaves do not outlive their commit in the old generation", async () => {
    // Why (slab.ts BuiltSlab.release): nothing reaches a commit's staged nodes after it, but V8's
    // scavenger also follows pointers from dead old-generation objects, and every written leaf,
    // with its keys and values, survived its first scavenge and was promoted. With the decoded
    // cache off, nothing the load wrote needs to stay on the heap.
    const db = await open(tmp.file(`c${n++}.db`), { checkpointIdleMs: 0, decodedCacheBytes: 0 });
    const oldSpaceBytes = () => v8.getHeapSpaceStatistics().find((s) => s.space_name === 'old_space')?.space_used_size ?? 0;
    const value = Buffer.alloc(100, 1);
    await db.set('warm-up', 'x');
    const before = oldSpaceBytes();
    for (let b = 0; b < 200; b++) {
      await db.transaction((tx) => {
        for (let i = b * 1000; i < (b + 1) * 1000; i++) tx.set(key(i), value);
      });
    }
    const grownBytes = oldSpaceBytes() - before;
    // ~24 MB of keys, values and leaves went through; promoted, they grew the old generation by
    // 7-10 MB per 100k keys (a major GC in between can only make this smaller).
    expect(grownBytes).toBeLessThan(8 << 20);
    expect(db.count()).toBe(200_001);
    expect(db.get(key(123_456))).toEqual(value);
    await db.close();
  });

  it('holds the values it was given on the V8 heap, not in new ArrayBuffers', async () => {
    // Why (keys.ts InlineValue): ArrayBuffers count as V8 external memory, and ~100 MB of value
    // chunks per 1M keys set off full marks of the caller's whole heap during loads.
    const db = await open(tmp.file(`c${n++}.db`), { checkpointIdleMs: 0 });
    const source = Buffer.alloc(100 * 1000, 5);
    await db.set('warm-up', 'x');
    const before = process.memoryUsage().arrayBuffers;
    await db.transaction((tx) => {
      for (let i = 0; i < 30_000; i++) tx.set(key(i), source.subarray((i % 1000) * 100, (i % 1000) * 100 + 100));
    });
    const grownBytes = process.memoryUsage().arrayBuffers - before;
    // 3 MB of values went in and stay in the decoded leaves; a copy of each in ArrayBuffer chunks
    // grew this by as much (no GC runs in between to hide it).
    expect(grownBytes).toBeLessThan(1 << 20);
    expect(db.get(key(12_345))).toEqual(source.subarray(34_500, 34_600));
    source.fill(9); // the store kept copies
    expect(db.get(key(12_345))).toEqual(Buffer.alloc(100, 5));
    await db.close();
  });
});
