// Adaptive checkpoints (checkpointTreeOverLogMax): a commit whose changed nodes are about the size
// of its log record writes the tree instead of its actions; a scattered one keeps logging. Either
// way, a crash copy of the file reopens with every acknowledged write.
import { afterAll, describe, expect, it } from 'vitest';
import { SolifugeError, open, type Db, type Transaction } from '../../src/index.js';
import { crashCopy } from '../support/crash-copy.js';
import { tempDir } from '../support/tmp.js';

const tmp = tempDir('adaptive');
afterAll(() => tmp.cleanup());
let n = 0;

const key = (i: number) => `k${String(i).padStart(8, '0')}`;
const value = (i: number) => Buffer.alloc(100, i & 0xff);

/** Keys 0..n-1 with their values, in sorted transactions of 20,000. */
async function loadKeys(db: Db, n: number): Promise<void> {
  for (let b = 0; b < n; b += 20_000) {
    await db.transaction((tx) => {
      for (let i = b; i < Math.min(b + 20_000, n); i++) tx.set(key(i), value(i));
    });
  }
}

/** A store whose changed nodes' region is at its least (64 MiB: a 2 MiB checkpoint interval), holding keys 0..keys-1. */
async function smallRegionStore(name: string, keys: number): Promise<{ file: string; db: Db }> {
  const file = tmp.file(`${name}${n++}.db`);
  const db = await open(file, { checkpointIdleMs: 0, checkpointIntervalBytes: 2 << 20 });
  await loadKeys(db, keys);
  return { file, db };
}

describe('adaptive checkpoints', () => {
  it('sorted batches are checkpoints and write each key once; reopen replays nothing', async () => {
    const db = await open(tmp.file(`s${n++}.db`), { checkpointIdleMs: 0 });
    for (let b = 0; b < 20; b++) {
      await db.transaction((tx) => {
        for (let i = b * 500; i < (b + 1) * 500; i++) tx.set(key(i), value(i));
      });
    }
    expect(db.stats.checkpoints).toBe(20);
    // ~117 bytes of key and value per key: about one copy of each, not a log record plus a leaf.
    expect(db.stats.bytesAppended).toBeLessThan(10_000 * 117 * 1.25);
    const again = await crashCopy(db, tmp.file);
    expect(again.replayedSlabs).toBe(0);
    expect(again.count()).toBe(10_000);
    for (let i = 0; i < 10_000; i += 97) expect(again.get(key(i))).toEqual(value(i));
    expect(again.check().ok).toBe(true);
    await again.close();
    await db.close();
  });

  it('scattered batches into a big tree keep logging actions, and replay after a crash', async () => {
    const db = await open(tmp.file(`r${n++}.db`), { checkpointIdleMs: 0 });
    await db.transaction((tx) => {
      for (let i = 0; i < 20_000; i++) tx.set(key(i), value(i));
    });
    const before = db.stats.checkpoints;
    for (let b = 0; b < 5; b++) {
      await db.transaction((tx) => {
        for (let j = 0; j < 200; j++) tx.set(key((j * 7919 + b * 131) % 20_000), value(b));
      });
    }
    expect(db.stats.checkpoints).toBe(before); // 200 keys dirty ~200 leaves: logging is cheaper
    const again = await crashCopy(db, tmp.file);
    expect(again.replayedSlabs).toBe(5);
    for (let j = 0; j < 200; j++) expect(again.get(key((j * 7919 + 4 * 131) % 20_000))).toEqual(value(4));
    expect(again.count()).toBe(20_000);
    expect(again.check().ok).toBe(true);
    await again.close();
    await db.close();
  });

  it('changed nodes past four checkpoint intervals force a checkpoint, however small the log', async () => {
    const db = await open(tmp.file(`c${n++}.db`), { checkpointIdleMs: 0, checkpointIntervalBytes: 64 * 1024 });
    await db.transaction((tx) => {
      for (let i = 0; i < 20_000; i++) tx.set(key(i), value(i));
    });
    const before = db.stats.checkpoints;
    let logged = 0;
    for (let b = 0; b < 6; b++) {
      const c = db.stats.checkpoints;
      // 40 scattered keys: ~5 KB of log, ~40 leaves (~160 KB) changed.
      await db.transaction((tx) => {
        for (let j = 0; j < 40; j++) tx.set(key((j * 7919 + b * 131) % 20_000), value(b));
      });
      if (db.stats.checkpoints === c) logged++;
    }
    // The log alone (~30 KB) never reaches the 64 KiB interval; the changed nodes pass 256 KiB.
    expect(logged).toBeGreaterThan(0);
    expect(db.stats.checkpoints - before).toBeGreaterThanOrEqual(2);
    await db.close();
  });

  it('a batch starts with room in the changed nodes\' region for what recent batches took: big scattered batches checkpoint first instead of failing', async () => {
    // A 6 MiB interval: a 72 MiB region, with the bounds a commit checks at 60% of it (~43 MiB)
    // and at 24 MiB of estimated changed nodes. Each batch of 18,000 scattered sets into ~40,000
    // small leaves changes ~37 MiB of blocks (16 MiB estimated), below both: the first leaves
    // them in use, and the next needs as much again, past the region. Without the room kept
    // (Db.batchRegionBytes), that one and every later one failed with the region full, and no
    // checkpoint ever came (measured so; with blocks sized before round 30's, 8,500 sets did it).
    const db = await open(tmp.file(`r${n++}.db`), { checkpointIdleMs: 0, checkpointTreeOverLogMax: 0, checkpointIntervalBytes: 6 << 20, backgroundCheckpoints: false, nodeBytesMax: 1024 });
    const KEYS = 360_000;
    await loadKeys(db, KEYS);
    await db.checkpoint();
    const model = new Map<string, Buffer>();
    for (let r = 1; r <= 4; r++) {
      const c = db.stats.checkpoints;
      const pairs: Array<[string, Buffer]> = [];
      for (let j = 0; j < 18_000; j++) pairs.push([key(Math.floor(((j * 2654435761) % 2 ** 32) / 2 ** 32 * KEYS + r * 7) % KEYS), value(r)]);
      await db.transaction((tx) => {
        for (const [k, v] of pairs) tx.set(k, v);
      });
      for (const [k, v] of pairs) model.set(k, v);
      // The first is logged, its changed nodes kept; each later one checkpoints first.
      expect(db.stats.checkpoints - c).toBe(r === 1 ? 0 : 1);
    }
    for (const [k, v] of model) expect(db.get(k)?.equals(v)).toBe(true);
    expect(db.count()).toBe(KEYS);
    expect(db.check().problems).toEqual([]);
    await db.close();
  });

  it('a transaction that changes more of the tree than the region holds fails alone, with nothing written; the store goes on', async () => {
    // A 2 MiB interval: the region's least, 64 MiB. Rewriting all of 400,000 keys changes every
    // leaf (~75 MiB of blocks): more than the region holds, even with no other changed nodes.
    const KEYS = 400_000;
    const { file, db } = await smallRegionStore('big', KEYS);
    const end = db.fileInfo().superblock.dataEnd;
    const appended = db.stats.bytesAppended;
    const err = await db.transaction((tx) => {
      for (let i = 0; i < KEYS; i++) tx.set(key((i * 7919) % KEYS), value(i + 1));
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SolifugeError);
    expect((err as SolifugeError).code).toBe('COMMIT_TOO_LARGE');
    expect((err as Error).message).toMatch(/split the transaction/);
    expect(db.stats.bytesAppended).toBe(appended); // nothing of it in the file
    expect(db.fileInfo().superblock.dataEnd).toBe(end);
    for (let i = 0; i < KEYS; i += 997) expect(db.get(key(i))?.equals(value(i))).toBe(true);
    expect(db.count()).toBe(KEYS);
    // A transaction that fits commits next (after a checkpoint freed the region), and survives a reopen.
    await db.transaction((tx) => {
      for (let i = 0; i < 5_000; i++) tx.set(key((i * 7919) % KEYS), value(i + 1));
    });
    expect(db.check().problems).toEqual([]);
    await db.close();
    const again = await open(file);
    const touched = new Set<number>();
    for (let i = 0; i < 5_000; i++) touched.add((i * 7919) % KEYS);
    for (let i = 0; i < 5_000; i += 49) expect(again.get(key((i * 7919) % KEYS))?.equals(value(i + 1))).toBe(true);
    for (let i = 0; i < KEYS; i += 997) if (!touched.has(i)) expect(again.get(key(i))?.equals(value(i))).toBe(true);
    expect(again.count()).toBe(KEYS);
    expect(again.check().problems).toEqual([]);
    await again.close();
  }, 60_000);

  it('a transaction refused for the changed nodes not checkpointed yet commits when retried: the retry starts after a checkpoint', async () => {
    // The 64 MiB region again. Rewriting all of 270,000 keys takes most of it: with the changes of
    // one scattered batch still in it, the first try is refused; the retry finds it emptied.
    const KEYS = 270_000;
    const { db } = await smallRegionStore('retry', KEYS);
    await db.transaction((tx) => {
      for (let i = 0; i < 3_000; i++) tx.set(key((i * 7919) % KEYS), value(i + 3));
    });
    expect(db.storeTree.dirtyRegionBytesInUse).toBeGreaterThan(4 << 20);
    const rewrite = (tx: Transaction) => {
      for (let i = 0; i < KEYS; i++) tx.set(key(i), value(i + 1));
    };
    const first = await db.transaction(rewrite).catch((e: unknown) => e);
    expect((first as SolifugeError).code).toBe('COMMIT_TOO_LARGE');
    const c = db.stats.checkpoints;
    await db.transaction(rewrite);
    expect(db.stats.checkpoints).toBeGreaterThan(c);
    for (let i = 0; i < KEYS; i += 997) expect(db.get(key(i))?.equals(value(i + 1))).toBe(true);
    expect(db.check().problems).toEqual([]);
    await db.close();
  }, 60_000);

  it('a burst of writes too big for one commit is made in halves: every set and delete commits, in order, durably', async () => {
    // The 64 MiB region: 300,000 scattered sets issued in one turn are one batch, which changes
    // more of the tree than the region holds. Before the split, every one of them was refused.
    const KEYS = 300_000;
    const { db } = await smallRegionStore('burst', KEYS);
    const model = new Map<string, Buffer | null>();
    const writes: Array<Promise<unknown>> = [];
    for (let i = 0; i < KEYS; i++) {
      const k = key((i * 7919) % KEYS);
      writes.push(db.set(k, value(i + 1)));
      model.set(k, value(i + 1));
      if (i % 1000 === 0) {
        // The same key again later in the burst, or deleted: the last write wins, across halves.
        const again = key((i * 13) % KEYS);
        if (i % 2000 === 0) {
          writes.push(db.delete(again));
          model.set(again, null);
        } else {
          writes.push(db.set(again, value(i + 7)));
          model.set(again, value(i + 7));
        }
      }
    }
    const settled = await Promise.allSettled(writes);
    expect(settled.filter((r) => r.status === 'rejected')).toEqual([]);
    expect(db.stats.batchesSplit).toBeGreaterThan(0);
    const check = (d: typeof db) => {
      let live = 0;
      for (const [k, v] of model) {
        if (v === null) expect(d.get(k)).toBeUndefined();
        else expect(d.get(k)?.equals(v)).toBe(true);
        if (v !== null) live++;
      }
      expect(d.count()).toBe(live);
      expect(d.check().problems).toEqual([]);
    };
    check(db);
    // Acknowledged, so durable: a copy of the file as a crash would leave it has them all.
    const copy = await crashCopy(db, tmp.file);
    check(copy);
    await copy.close();
    await db.close();
  }, 120_000);

  it('a store without durable commits does not sync its own checkpoints, until a superblock is due', async () => {
    const db = await open(tmp.file(`n${n++}.db`), { durable: false, checkpointIdleMs: 0, superblockIntervalBytes: 256 * 1024 });
    for (let b = 0; b < 2; b++) {
      await db.transaction((tx) => {
        for (let i = b * 500; i < (b + 1) * 500; i++) tx.set(key(i), value(i));
      });
    }
    expect(db.stats.checkpoints).toBe(2);
    expect(db.stats.syncs).toBe(0);
    const sbBefore = db.fileInfo().superblock.dataEnd;
    for (let b = 2; b < 6; b++) {
      await db.transaction((tx) => {
        for (let i = b * 500; i < (b + 1) * 500; i++) tx.set(key(i), value(i));
      });
    }
    // ~60 KB a batch: the 256 KiB superblock interval passed once, with a sync before the superblock.
    expect(db.stats.syncs).toBe(1);
    expect(db.fileInfo().superblock.dataEnd).toBeGreaterThan(sbBefore);
    const again = await crashCopy(db, tmp.file);
    expect(again.count()).toBe(3000);
    expect(again.check().ok).toBe(true);
    await again.close();
    await db.close();
  });

  it('0 turns them off: the same sorted batches are logged', async () => {
    const db = await open(tmp.file(`o${n++}.db`), { checkpointIdleMs: 0, checkpointTreeOverLogMax: 0 });
    for (let b = 0; b < 4; b++) {
      await db.transaction((tx) => {
        for (let i = b * 500; i < (b + 1) * 500; i++) tx.set(key(i), value(i));
      });
    }
    expect(db.stats.checkpoints).toBe(0);
    const again = await crashCopy(db, tmp.file);
    expect(again.replayedSlabs).toBe(4);
    expect(again.count()).toBe(2000);
    await again.close();
    await db.close();
    await expect(open(tmp.file('bad.db'), { checkpointTreeOverLogMax: -1 })).rejects.toThrow(/checkpointTreeOverLogMax/);
  });
});
