// Real crashes (bbolt's robustness tests, style.md §3.6): a child process doing durable writes is
// killed with SIGKILL at random moments, repeatedly; after each reopen every acknowledged write is
// present and check() is clean.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { open } from '../../src/index.js';
import { tempDir } from '../support/tmp.js';

const tmp = tempDir('crash');
afterAll(() => tmp.cleanup());
const child = fileURLToPath(new URL('./crash-child.ts', import.meta.url));

function runUntilKilled(file: string, start: number, killAfterMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['--import', 'tsx', child, file, String(start)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let acked = start;
    let buf = '';
    let err = '';
    let timer: NodeJS.Timeout | undefined;
    p.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        const m = /^ack (\d+)$/.exec(line);
        if (m) {
          acked = Number(m[1]);
          // Start the kill clock at the first ack, so start-up time does not eat the budget.
          timer ??= setTimeout(() => p.kill('SIGKILL'), killAfterMs);
        }
      }
    });
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (signal === 'SIGKILL') resolve(acked);
      else reject(new Error(`child exited with ${code}: ${err}`));
    });
  });
}

const value = (i: number) => Buffer.alloc(i % 3 === 0 ? 700 : 20 + (i % 50), i & 0xff);

describe('crash: SIGKILL during durable writes', () => {
  it('keeps every acknowledged write across repeated kills', async () => {
    const file = tmp.file('crash.db');
    let seed = 12345;
    const rnd = () => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32;
    let next = 1000; // keys w1000.. are written; the first deletes hit nothing
    for (let round = 0; round < 8; round++) {
      const acked = await runUntilKilled(file, next, 50 + Math.floor(rnd() * 400));
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
