// Real crashes (bbolt's robustness tests, style.md §3.6): a child process doing durable writes is
// killed with SIGKILL at random moments, repeatedly; after each reopen every acknowledged write is
// present and check() is clean.
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { open } from '../../src/index.js';
import { runUntilKilled } from '../support/kill-loop.js';
import { tempDir } from '../support/tmp.js';

const tmp = tempDir('crash');
afterAll(() => tmp.cleanup());
const child = fileURLToPath(new URL('./crash-child.ts', import.meta.url));

const value = (i: number) => Buffer.alloc(i % 3 === 0 ? 700 : 20 + (i % 50), i & 0xff);

describe('crash: SIGKILL during durable writes', () => {
  it('keeps every acknowledged write across repeated kills', async () => {
    const file = tmp.file('crash.db');
    let seed = 12345;
    const rnd = () => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32;
    let next = 1000; // keys w1000.. are written; the first deletes hit nothing
    for (let round = 0; round < 8; round++) {
      const { acked } = await runUntilKilled(child, [file, String(next)], next, 50 + Math.floor(rnd() * 400));
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
  }, 120_000);
});
