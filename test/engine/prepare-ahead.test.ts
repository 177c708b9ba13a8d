// Zeros written and synced ahead of big durable commits (FileLog.prepareAhead): the next commits
// overwrite them instead of growing the file, close() drops what is left, and a file holding them
// when its writer stops recovers every commit with the zeros cut.
import fs from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { open, type Db } from '../../src/index.js';
import { tempDir } from '../support/tmp.js';
import { directIoWorks } from '../support/direct-io.js';

const tmp = tempDir('prepare');
afterAll(() => tmp.cleanup());
const itDirect = directIoWorks(tmp.dir) ? it : it.skip;

const key = (i: number) => `k${String(i).padStart(8, '0')}`;
const value = (i: number) => Buffer.alloc(300, i & 0xff);
/** One durable transaction of keys [from, from + n): 300 keys make a slab of ~100 KB. */
const batch = (db: Db, from: number, n = 300) =>
  db.transaction((tx) => {
    for (let i = from; i < from + n; i++) tx.set(key(i), value(i));
  });
const sizeOf = (file: string) => fs.statSync(file).size;

function expectKeys(db: Db, n: number): void {
  expect(db.count()).toBe(n);
  const wrong: number[] = [];
  for (let i = 0; i < n; i++) if (db.get(key(i))?.equals(value(i)) !== true) wrong.push(i);
  expect(wrong.slice(0, 5)).toEqual([]);
}

describe('zeros prepared ahead of big durable commits', () => {
  it('the commits after the first overwrite them instead of growing the file; close drops the rest', async () => {
    const file = tmp.file('grow.db');
    const db = await open(file, { checkpointIdleMs: 0 });
    await batch(db, 0);
    const first = db.fileInfo().fileBytes - 8192;
    expect(first).toBeGreaterThan(64 * 1024); // a big commit: below that, append's own zero fill applies
    expect(db.stats.zerosPrepared).toBe(1);
    // Four commits' worth of zeros follow the first one's end.
    expect(sizeOf(file) - db.fileInfo().fileBytes).toBeGreaterThanOrEqual(3 * first);
    // Each of the next commits lands on them, inside the file as it was: none makes it grow, and
    // once fewer than two more would fit, more zeros follow.
    for (let b = 1; b <= 6; b++) {
      const before = sizeOf(file);
      await batch(db, b * 300);
      expect(db.fileInfo().fileBytes, `commit ${b + 1}`).toBeLessThanOrEqual(before);
      expect(sizeOf(file) - db.fileInfo().fileBytes, `commit ${b + 1}`).toBeGreaterThanOrEqual(first);
    }
    expect(db.stats.zerosPrepared).toBeGreaterThanOrEqual(2); // ~96 KB commits, four at a time
    const end = db.fileInfo().fileBytes;
    await db.close();
    expect(sizeOf(file)).toBe(end); // no zeros kept past the log
    const again = await open(file);
    try {
      expectKeys(again, 2100);
      expect(again.check().problems).toEqual([]);
      expect(again.tornBytesCut).toBe(0);
    } finally {
      await again.close();
    }
  });

  it('a file left with them (a writer that stopped) recovers every commit, the zeros cut', async () => {
    const file = tmp.file('left.db');
    const db = await open(file, { checkpointIdleMs: 0 });
    for (let b = 0; b < 5; b++) await batch(db, b * 300);
    const end = db.fileInfo().fileBytes;
    // The file as the writer leaves it when it dies: the page cache survives a process's death.
    const copy = tmp.file('left-copy.db');
    fs.copyFileSync(file, copy);
    await db.close();
    const left = sizeOf(copy);
    expect(left).toBeGreaterThan(end);
    const reopened = await open(copy);
    try {
      expect(reopened.tornBytesCut).toBe(left - end);
      expect(sizeOf(copy)).toBe(end);
      expectKeys(reopened, 1500);
      expect(reopened.check().problems).toEqual([]);
      // And it writes on over them.
      await batch(reopened, 1500);
      expectKeys(reopened, 1800);
    } finally {
      await reopened.close();
    }
  });

  it('small commits and commits that do not sync prepare nothing', async () => {
    const file = tmp.file('small.db');
    const db = await open(file, { checkpointIdleMs: 0 });
    for (let b = 0; b < 20; b++) await batch(db, b * 10, 10); // ~3 KB each
    expect(db.stats.zerosPrepared).toBe(0);
    await db.close();
    const lazy = await open(tmp.file('lazy.db'), { durable: false, checkpointIdleMs: 0 });
    for (let b = 0; b < 3; b++) await batch(lazy, b * 300);
    expect(lazy.stats.zerosPrepared).toBe(0);
    await lazy.close();
  });

  itDirect('a direct write after them waits for an fdatasync of the log to cover them', async () => {
    // A direct write (syncDirect) makes only its own blocks durable, so it may only follow a log
    // with no buffered write unsynced: the zeros count as one until a sync of the log's own.
    const db = await open(tmp.file('direct.db'), { syncDirect: true, checkpointIdleMs: 0 });
    try {
      await batch(db, 0);
      expect(db.stats.zerosPrepared).toBe(1);
      await db.set('small-1', 'x');
      expect(db.stats.directSyncs).toBe(0); // an append and an fdatasync, covering the zeros too
      await db.set('small-2', 'y');
      expect(db.stats.directSyncs).toBe(1);
    } finally {
      await db.close();
    }
  });
});

describe('zeros written ahead of a big checkpoint while it is built', () => {
  it('a sliced checkpoint and a background one land on them; close keeps none; a reopen has every key', async () => {
    const file = tmp.file('ckpt-zeros.db');
    // Every checkpoint sliced (and so zeroed ahead), and scattered batches that log until a
    // background checkpoint is due.
    const db = await open(file, { checkpointIdleMs: 0, slicedCheckpointBytesMin: 0, checkpointIntervalBytes: 256 * 1024, checkpointTreeOverLogMax: 0 });
    const N = 6000;
    for (let b = 0; b < N; b += 300) await batch(db, b);
    await db.checkpoint(); // a forced checkpoint: sliced, in the foreground
    const forced = db.stats.checkpointsOnZeros;
    expect(forced).toBeGreaterThan(0);
    // Scattered rewrites: logged, their changed nodes checkpointed in the background.
    const pending: Array<Promise<unknown>> = [];
    for (let r = 0; r < 40; r++) {
      pending.push(db.transaction((tx) => {
        for (let j = 0; j < 50; j++) tx.set(key((j * 127 + r * 31) % N), value((j * 127 + r * 31) % N));
      }));
      if (r % 4 === 3) await Promise.all(pending.splice(0));
    }
    await Promise.all(pending);
    expect(db.stats.backgroundCheckpoints).toBeGreaterThan(0);
    expect(db.stats.checkpointsOnZeros).toBeGreaterThan(forced);
    expectKeys(db, N);
    expect(db.check().problems).toEqual([]);
    await db.close();
    const again = await open(file);
    try {
      expect(again.tornBytesCut).toBe(0); // close left no zeros past the log
      expectKeys(again, N);
      expect(again.check().problems).toEqual([]);
    } finally {
      await again.close();
    }
  });
});

describe('big commits made durable on the commit path (syncInlineBytesMax)', () => {
  /** Keys [from, from + n) in order with 100-byte values, in one transaction: 1,000 make a ~120 KB checkpoint. */
  const sorted = (db: Db, from: number, n: number) =>
    db.transaction((tx) => {
      for (let i = from; i < from + n; i++) tx.set(key(i), Buffer.alloc(100, i & 0xff));
    });

  it('a sorted load\'s checkpoints up to it sync before the JS thread goes on, bigger ones on the pool', async () => {
    const file = tmp.file('inline.db');
    const db = await open(file, { checkpointIdleMs: 0 });
    await sorted(db, 0, 1000);
    const first = { ...db.stats };
    expect(first.checkpoints).toBe(1); // the batch wrote its leaves
    expect(db.fileInfo().fileBytes - 8192).toBeGreaterThan(100 * 1024);
    expect(first.inlineSyncs).toBe(1);
    expect(first.syncs).toBe(1);
    await sorted(db, 1000, 1000);
    expect(db.stats.inlineSyncs).toBe(2);
    expect(db.stats.zerosPrepared).toBeGreaterThan(0); // and zeros ahead for the next, as on the pool
    const before = db.fileInfo().fileBytes;
    await sorted(db, 2000, 3000); // ~360 KB: past 256 KiB
    expect(db.fileInfo().fileBytes - before).toBeGreaterThan(256 * 1024);
    expect(db.stats.inlineSyncs).toBe(2);
    expect(db.stats.syncs).toBe(3);
    await db.close();
    const again = await open(file);
    try {
      expect(again.count()).toBe(5000);
      for (const i of [0, 999, 1000, 4999]) expect(again.get(key(i))).toEqual(Buffer.alloc(100, i & 0xff));
      expect(again.check().problems).toEqual([]);
    } finally {
      await again.close();
    }
    // Set lower, the same commit syncs on the pool.
    const low = await open(tmp.file('inline-low.db'), { checkpointIdleMs: 0, syncInlineBytesMax: 64 * 1024 });
    try {
      await sorted(low, 0, 1000);
      expect(low.stats.syncs).toBe(1);
      expect(low.stats.inlineSyncs).toBe(0);
    } finally {
      await low.close();
    }
  });
});
