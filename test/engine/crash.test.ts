// Real crashes (bbolt's robustness tests, style.md §3.6): a child process doing durable writes is
// killed with SIGKILL at random moments, repeatedly; after each reopen every acknowledged write is
// present and check() is clean.
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { open } from '../../src/index.js';
import { runUntilKilled } from '../support/kill-loop.js';
import { tempDir } from '../support/tmp.js';
import { directIoWorks } from '../support/direct-io.js';
import { crashKey, crashValue } from './crash-keys.js';

const tmp = tempDir('crash');
afterAll(() => tmp.cleanup());
const child = fileURLToPath(new URL('./crash-child.ts', import.meta.url));
const batchChild = fileURLToPath(new URL('./crash-batch-child.ts', import.meta.url));

/**
 * Six runs of crash-batch-child.ts in `mode`, each killed `killMs(rnd)` after its first ack; after
 * each, the store reopens clean with every acknowledged batch, and the one in flight whole or not
 * at all. Returns how many "event" lines the runs printed (the case under test happening).
 */
async function killBatches(file: string, mode: 'sliced' | 'background' | 'prepared', batchKeys: number, seed: number, killMs: (rnd: () => number) => number): Promise<number> {
  const rnd = () => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32;
  let next = 0;
  let events = 0;
  for (let round = 0; round < 6; round++) {
    const run = await runUntilKilled(batchChild, [file, String(next), mode], next, killMs(rnd), /^event$/);
    events += run.counted;
    const db = await open(file);
    try {
      expect(db.check().problems).toEqual([]);
      const missing: number[] = [];
      for (let i = 0; i < run.acked; i++) if (db.get(crashKey(i))?.equals(crashValue(i)) !== true) missing.push(i);
      expect(missing.slice(0, 5), `after round ${round}`).toEqual([]);
      // The batch in flight at the kill may have landed (whole: it is one transaction).
      next = db.exists(crashKey(run.acked)) ? run.acked + batchKeys : run.acked;
      expect(db.count()).toBe(next);
    } finally {
      await db.close();
    }
  }
  return events;
}

const value = (i: number) => Buffer.alloc(i % 3 === 0 ? 700 : 20 + (i % 50), i & 0xff);

describe('crash: SIGKILL during durable writes', () => {
  it('keeps every acknowledged write across repeated kills', async () => {
    const file = tmp.file('crash.db');
    let seed = 12345;
    const rnd = () => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32;
    let next = 1000; // keys w1000.. are written; the first deletes hit nothing
    let directRuns = 0;
    for (let round = 0; round < 8; round++) {
      // Every other run writes small commits directly (syncDirect), the others as by default.
      const mode = round % 2 === 0 ? 'direct' : 'default';
      const { acked, counted } = await runUntilKilled(child, [file, String(next), mode], next, 50 + Math.floor(rnd() * 400), /^direct$/);
      if (counted > 0) directRuns++;
      expect(acked).toBeGreaterThan(next);
      const db = await open(file);
      try {
        const report = db.check();
        expect(report.problems).toEqual([]);
        // Every acknowledged key that was not deleted again is present with its value.
        // (w(acked - 1000) may be gone: the batch in flight at the kill deletes it and may have landed.)
        for (let i = Math.max(1000, acked - 999); i < acked; i++) {
          const got = db.get(`w${i}`);
          expect(got?.equals(value(i)), `w${i} after round ${round}`).toBe(true);
        }
        // Unacknowledged batches may or may not be there; the store resumes after what it has.
        let resume = acked;
        while (db.exists(`w${resume}`)) resume++;
        next = resume;
      } finally {
        await db.close();
      }
    }
    // Four runs' kills landed among direct writes, where the file system takes them; never the others'.
    expect(directRuns).toBe(directIoWorks(tmp.dir) ? 4 : 0);
  }, 120_000);

  it('keeps every acknowledged write when kills land inside sliced checkpoints', async () => {
    const sliced = await killBatches(tmp.file('crash-sliced.db'), 'sliced', 2_000, 777, (rnd) => 300 + Math.floor(rnd() * 700));
    // The case under test did happen (seed 777: 13 sliced checkpoints over the 6 runs, and one kill
    // cut a 2.8 MB torn tail, halfway through a sliced append).
    expect(sliced).toBeGreaterThan(0);
  }, 180_000);

  it('keeps every acknowledged write when kills land inside background checkpoints and the commits beside them', async () => {
    const background = await killBatches(tmp.file('crash-background.db'), 'background', 2_000, 2027, (rnd) => 300 + Math.floor(rnd() * 700));
    // The case under test did happen: background checkpoints finished in the runs (kills land in
    // them too: each takes a good part of the time between two).
    expect(background).toBeGreaterThan(0);
  }, 180_000);

  it('keeps every acknowledged write when kills land among big commits over zeros prepared ahead', async () => {
    const prepared = await killBatches(tmp.file('crash-big.db'), 'prepared', 1_000, 4242, (rnd) => 100 + Math.floor(rnd() * 500));
    // The case under test did happen: commits wrote zeros ahead, and later ones landed on them.
    expect(prepared).toBeGreaterThan(0);
  }, 120_000);
});
