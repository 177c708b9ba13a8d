// An idle store gives its emptied region of changed nodes back to the kernel (Db.trimIdle,
// asm/dirty.ts dirtyTrim): after the idle checkpoint, with nothing holding a changed node, the
// region's pages are discarded and the allocator starts over; writes after it fault in fresh
// pages and everything reads back as before.
import crypto from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { open, type Db } from '../../src/index.js';
import { addon } from '../../src/native/addon.js';
import type { StoreTree } from '../../src/engine/store-tree.js';
import { tempDir } from '../support/tmp.js';

const tmp = tempDir('idle-trim');
afterAll(() => tmp.cleanup());
let n = 0;

const IDLE_MS = 40;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Random 16-byte keys in transactions of 1,000, into `model` too: each dirties its own leaves. */
async function loadRandom(db: Db, count: number, model: Map<string, string>): Promise<void> {
  for (let b = 0; b < count; b += 1000) {
    await db.transaction((tx) => {
      for (let i = 0; i < 1000; i++) {
        const k = crypto.randomBytes(16).toString('hex');
        const v = `v${b + i}`;
        tx.set(k, v);
        model.set(k, v);
      }
    });
  }
}

function expectModel(db: Db, model: Map<string, string>): void {
  expect(db.count()).toBe(model.size);
  for (const [k, v] of model) expect(db.get(k)?.toString()).toBe(v);
}

/** Waits (up to 5 s) until `done` holds. */
async function until(done: () => boolean): Promise<void> {
  for (let i = 0; i < 5000 / IDLE_MS && !done(); i++) await sleep(IDLE_MS);
}

/**
 * Waits for the idle checkpoint, then for the region's trim that follows it one idle period
 * later, or (`trimExpected` false) for several idle periods in which one could have come.
 */
async function untilIdle(db: Db, trimExpected = true): Promise<void> {
  const checkpoints = db.stats.checkpoints;
  const trims = db.stats.regionTrims;
  await until(() => db.stats.checkpoints > checkpoints);
  expect(db.stats.checkpoints).toBeGreaterThan(checkpoints);
  if (trimExpected) await until(() => db.stats.regionTrims > trims);
  else await sleep(5 * IDLE_MS);
}

/** A fresh store whose idle period is IDLE_MS, holding `keys` random keys (also in its model). */
async function idleStore(keys: number): Promise<{ file: string; db: Db; model: Map<string, string> }> {
  const file = tmp.file(`t${n++}.db`);
  const model = new Map<string, string>();
  const db = await open(file, { checkpointIdleMs: IDLE_MS, hugePages: false });
  await loadRandom(db, keys, model);
  return { file, db, model };
}

describe.skipIf(addon?.discardPages === undefined)('an idle store gives its region of changed nodes back', () => {
  it('after the idle checkpoint the region is discarded; later writes and reads are exact, and so is a reopen', async () => {
    const file = tmp.file(`t${n++}.db`);
    const model = new Map<string, string>();
    let db = await open(file, { checkpointIdleMs: IDLE_MS, hugePages: false, slicedCheckpointBytesMin: 1 << 20 });
    await loadRandom(db, 60_000, model);
    const tree = (db as unknown as { storeTree: StoreTree }).storeTree;
    expect(tree.dirtyRegionBytesInUse).toBeGreaterThan(2 << 20); // logged, not checkpointed yet
    // The checkpoint first (it empties the region), then, one idle period after its commit, the trim.
    await db.checkpoint();
    expect(db.stats.regionTrims).toBe(0);
    const start = tree.ex.dirtyCarvedStart() >>> 0;
    // (Whole 4 KiB pages only: the first one also holds the allocator's lists, and is kept.)
    const page = 4096;
    const carved = () => tree.mem().subarray(Math.ceil(start / page) * page, Math.floor((start + db.stats.regionBytesTrimmed) / page) * page);
    await until(() => db.stats.regionTrims > 0);
    expect(db.stats.regionTrims).toBe(1);
    expect(db.stats.regionBytesTrimmed).toBeGreaterThan(2 << 20);
    // The pages were discarded: they read as zeros now, where the nodes' blocks were (nothing in
    // the store writes zeros over freed blocks). In the bench's 1M-key run the store's resident
    // memory fell by ~230 MB (bench/RESULTS.md round 34).
    // The slab builder's buffers, which kept the checkpoint's plan and encoded slab, went too;
    // the writes, checkpoints and reopen below build slabs over their zeroed pages.
    expect(db.stats.slabBytesTrimmed).toBeGreaterThan(2 << 20);
    expect(carved().length).toBeGreaterThan(2 << 20);
    expect(carved().equals(Buffer.alloc(carved().length))).toBe(true);
    expectModel(db, model);

    // Writes carve the region from its start again, over pages that read as zeros.
    await loadRandom(db, 20_000, model);
    await Promise.all([...model.keys()].slice(0, 5000).map((k) => {
      model.delete(k);
      return db.delete(k);
    }));
    expectModel(db, model);
    expect(db.check().ok).toBe(true);
    await untilIdle(db);
    expect(db.stats.regionTrims).toBe(2);
    // A big checkpoint, in slices, over the discarded buffers.
    const sliced = db.stats.slicedCheckpoints;
    await loadRandom(db, 60_000, model);
    await db.checkpoint();
    expect(db.stats.slicedCheckpoints).toBeGreaterThan(sliced);
    expectModel(db, model);
    await db.close();
    db = await open(file);
    expectModel(db, model);
    expect(db.check().ok).toBe(true);
    await db.close();
  });

  it('after overwrites in place (same-length values, their old bytes saved for undo) it is given back too', async () => {
    // An overwrite of an inline value by one of the same length saves the old bytes in an undo
    // block of the region (asm/wleaf.ts); that block stayed taken, and no trim ever ran again.
    const { db, model } = await idleStore(20_000);
    const keys = [...model.keys()];
    for (let round = 0; round < 3; round++) {
      const sets = keys.slice(0, 2000).map((k, i) => {
        const v = `w${String(round * 10_000 + i).padStart(5, '0')}`; // as long as every other
        model.set(k, v);
        return db.set(k, v);
      });
      await Promise.all(sets);
      await db.transaction((tx) => {
        tx.set(keys[0], 'x'.repeat(6));
        model.set(keys[0], 'x'.repeat(6));
      });
      await untilIdle(db);
      expect(db.stats.regionTrims).toBe(round + 1);
      expectModel(db, model);
    }
    expect(db.stats.inPlaceChanges).toBeGreaterThan(0);
    expect(db.check().ok).toBe(true);
    await db.close();
  });

  it('nothing is given back while a snapshot holds changed nodes, and the snapshot reads what it pinned', async () => {
    const { db, model } = await idleStore(20_000);
    const snap = db.snapshot();
    const pinned = new Map(model);
    await loadRandom(db, 5_000, model);
    await untilIdle(db, false);
    expect(db.stats.regionTrims).toBe(0);
    for (const [k, v] of pinned) expect(snap.get(k)?.toString()).toBe(v);
    expect(snap.count()).toBe(pinned.size);
    snap.release();
    expectModel(db, model);
    // The next idle period, with the snapshot gone, gives it back.
    await db.set('one-more', 'x');
    model.set('one-more', 'x');
    await untilIdle(db);
    expect(db.stats.regionTrims).toBe(1);
    expectModel(db, model);
    await db.close();
  });
});
