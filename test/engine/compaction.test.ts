// Online compaction: racing writes and snapshot readers, getWith handlers holding old locations,
// SIGKILL at random moments, allocated blocks actually given back, and the auto policy.
import crypto from 'node:crypto';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { ClosedError, IoFailedError, open, type CompactProgress } from '../../src/index.js';
import { addon } from '../../src/native/addon.js';
import { runUntilKilled } from '../support/kill-loop.js';
import { tempDir } from '../support/tmp.js';

const tmp = tempDir('compaction');
afterAll(() => tmp.cleanup());
let n = 0;
const fresh = () => tmp.file(`c${n++}.db`);
const allocated = (f: string) => fs.statSync(f).blocks * 512;

describe('online compaction', () => {
  it('gives allocated blocks back and keeps every key, across reopen', async () => {
    const file = fresh();
    const db = await open(file, { durable: false, checkpointIntervalBytes: 256 * 1024 });
    const model = new Map<string, Buffer>();
    for (let round = 0; round < 4; round++) {
      await db.transaction((tx) => {
        for (let i = 0; i < 5000; i++) {
          const k = `k${(i * 7919) % 5000}`;
          const v = Buffer.alloc(i % 10 === 0 ? 400 : 60, round * 10 + (i % 7));
          tx.set(k, v);
          model.set(k, v);
        }
      });
    }
    const before = allocated(file);
    const phases = new Set<string>();
    const r = await db.compact({ onProgress: (p: CompactProgress) => phases.add(p.phase) });
    expect([...phases]).toEqual(['copy', 'punch', 'done']);
    expect(r.keysCopied).toBe(5000);
    const report = db.check();
    expect(report.problems).toEqual([]);
    // What is left after the boundary is the live tree (plus slack for the last node copies).
    const inUse = db.fileInfo().fileBytes - r.boundary;
    expect(inUse).toBeLessThan(report.liveBytes * 1.1 + 64 * 1024);
    if (addon !== null) {
      expect(r.bytesReclaimed).toBe(r.boundary - (r.boundary % 4096) - 8192); // whole pages only
      // Allocated: the superblocks, the in-use part and at most the 1 MiB written ahead of the end.
      expect(allocated(file)).toBeLessThanOrEqual(8192 + inUse + (1 << 20) + 8192);
      expect(allocated(file)).toBeLessThan(before);
    }
    for (const [k, v] of model) expect(db.get(k)?.equals(v)).toBe(true);
    await db.close();
    const again = await open(file);
    expect(again.check().problems).toEqual([]);
    expect(again.count()).toBe(5000);
    for (const [k, v] of model) expect(again.get(k)?.equals(v)).toBe(true);
    // A second compaction works on top of the first.
    await again.set('after', 'x');
    await again.compact();
    expect(again.check().problems).toEqual([]);
    expect(again.get('after')?.toString()).toBe('x');
    await again.close();
  });

  it('races random writes, deletes and snapshot readers without losing or mixing anything', async () => {
    const file = fresh();
    const db = await open(file, { durable: false, nodeBytesMax: 1024, checkpointIntervalBytes: 64 * 1024 });
    const model = new Map<string, string>();
    let seed = 99;
    const rnd = (m: number) => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) % m;
    const write = async (count: number) => {
      const ps: Promise<unknown>[] = [];
      for (let i = 0; i < count; i++) {
        const k = `key${rnd(3000)}`;
        if (rnd(5) === 0) {
          model.delete(k);
          ps.push(db.delete(k));
        } else {
          const v = `v${rnd(1e9)}`.repeat(1 + rnd(40));
          model.set(k, v);
          ps.push(db.set(k, v));
        }
      }
      await Promise.all(ps);
    };
    await write(6000);
    const compaction = db.compact({ chunkBytes: 8 * 1024 });
    let done = false;
    void compaction.finally(() => (done = true));
    let rounds = 0;
    while (!done || rounds < 5) {
      const snap = db.snapshot();
      const frozen = new Map(model);
      await write(200);
      // The snapshot still sees exactly its moment.
      const seen = new Map([...snap.range()].map(([k, v]) => [k.toString(), v.toString()]));
      expect(seen).toEqual(frozen);
      snap.release();
      rounds++;
    }
    await compaction;
    expect(rounds).toBeGreaterThan(5);
    expect(new Map([...db.range()].map(([k, v]) => [k.toString(), v.toString()]))).toEqual(model);
    expect(db.check().problems).toEqual([]);
    await db.close();
    const again = await open(file);
    expect(new Map([...again.range()].map(([k, v]) => [k.toString(), v.toString()]))).toEqual(model);
    await again.close();
  });

  it('a getWith handler holding an old location reads the old bytes; compaction waits for it', async () => {
    const file = fresh();
    const db = await open(file);
    const old = crypto.randomBytes(200_000);
    await db.set('blob', old);
    for (let i = 0; i < 50; i++) await db.set(`filler${i}`, crypto.randomBytes(5000));
    let compactionDone = false;
    const seen = await db.getWith('blob', async (src) => {
      if (src.kind !== 'location') throw new Error('expected a location');
      await db.set('blob', crypto.randomBytes(200_000)); // overwrite while we hold it
      let waiting = false;
      const compaction = db.compact({ onProgress: (p) => (waiting ||= p.phase === 'wait' && p.pinnedSnapshots > 0) });
      void compaction.then(() => (compactionDone = true));
      while (!waiting) await new Promise((r) => setTimeout(r, 5));
      expect(compactionDone).toBe(false); // it cannot punch while we hold the old bytes
      const b = Buffer.alloc(src.length);
      fs.readSync(src.fd, b, 0, src.length, src.offset);
      return { bytes: b, offset: src.offset };
    });
    expect(seen.bytes.equals(old)).toBe(true);
    while (!compactionDone) await new Promise((r) => setTimeout(r, 5));
    const now = await db.getWith('blob', (src) => (src.kind === 'location' ? src.offset : -1));
    expect(now).toBeGreaterThan(seen.offset);
    expect(db.check().problems).toEqual([]);
    await db.close();
  });

  it('a range iterator held across an online compaction keeps reading correct data (it pins its commit)', async () => {
    const db = await open(fresh(), { durable: false, checkpointIntervalBytes: 16 * 1024 });
    for (let r = 0; r < 3; r++) await db.transaction((tx) => { for (let i = 0; i < 3000; i++) tx.set(`k${String(i).padStart(5, '0')}`, `v${r}-${i}`.repeat(5)); });
    const it = db.range();
    const first = it.next();
    expect(first.done).toBe(false);
    let waiting = false;
    const compaction = db.compact({ onProgress: (p) => (waiting ||= p.phase === 'wait' && p.pinnedSnapshots > 0) });
    while (!waiting) await new Promise((r) => setTimeout(r, 5));
    let n = 1;
    for (const [k, v] of it) {
      expect(v.toString()).toBe(`v2-${Number(k.toString().slice(1))}`.repeat(5));
      n++;
    }
    expect(n).toBe(3000);
    await compaction; // released when the iteration ended
    expect(db.check().problems).toEqual([]);
    await db.close();
  });

  it('iterators used after close or release throw ClosedError', async () => {
    const db = await open(fresh());
    for (let i = 0; i < 100; i++) await db.set(`k${i}`, `v${i}`);
    const it = db.range();
    it.next();
    const snap = db.snapshot();
    const sit = snap.keys();
    sit.next();
    snap.release();
    expect(() => sit.next()).toThrow(ClosedError);
    await db.close();
    expect(() => it.next()).toThrow(ClosedError);
  });

  it('close() during a compaction that waits for a snapshot cancels it instead of hanging', async () => {
    const db = await open(fresh(), { durable: false });
    for (let i = 0; i < 2000; i++) await db.set(`k${i % 200}`, `v${i}`);
    const snap = db.snapshot();
    let waiting = false;
    const compaction = db.compact({ onProgress: (p) => (waiting ||= p.phase === 'wait') });
    const settled = compaction.then(() => 'resolved', (e: unknown) => (e as Error).name);
    while (!waiting) await new Promise((r) => setTimeout(r, 5));
    await db.close(); // must not wait for the snapshot
    expect(await settled).toBe('ClosedError');
    snap.release();
  });

  it('a failed fdatasync while sealing a compaction turns the store read-only', async () => {
    const db = await open(fresh(), { durable: false });
    for (let i = 0; i < 500; i++) await db.set(`k${i}`, `v${i}`);
    const d = db as unknown as { sealCompaction: (b: number) => Promise<void> };
    d.sealCompaction = () => Promise.reject(Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' }));
    await expect(db.compact()).rejects.toBeInstanceOf(IoFailedError);
    await expect(db.set('after', 'x')).rejects.toBeInstanceOf(IoFailedError);
    expect(db.get('k1')?.toString()).toBe('v1');
    await db.close();
  });

  it('auto-compaction by garbage ratio and file size, off by default', async () => {
    const off = await open(fresh(), { durable: false, checkpointIntervalBytes: 32 * 1024 });
    for (let r = 0; r < 10; r++) await off.transaction((tx) => { for (let i = 0; i < 500; i++) tx.set(`k${i}`, Buffer.alloc(200, r)); });
    expect(off.stats.autoCompactions).toBe(0);
    await off.close();
    const on = await open(fresh(), { durable: false, checkpointIntervalBytes: 32 * 1024, autoCompact: { garbageRatio: 0.5, minFileBytes: 256 * 1024 } });
    for (let r = 0; r < 20; r++) await on.transaction((tx) => { for (let i = 0; i < 500; i++) tx.set(`k${i}`, Buffer.alloc(200, r)); });
    expect(on.stats.autoCompactions).toBeGreaterThan(0);
    // Let the last one finish (close() would cancel it), then it must have succeeded.
    while ((on as unknown as { compacting: boolean }).compacting) await new Promise((r) => setTimeout(r, 10));
    expect(on.lastAutoCompactError).toBeUndefined();
    expect(on.check().problems).toEqual([]);
    await on.close();
  });
});

describe('what compaction reports', () => {
  it('allocated bytes before and after leave out the zeros written ahead of the log', async () => {
    // The first small commit lays up to 1 MiB of zeros ahead of the log (dropped on close), and
    // compaction reported it as the store growing: 8 KiB before, 1 MiB after.
    const db = await open(fresh(), { checkpointIdleMs: 0 });
    const r0 = await db.compact();
    await db.set('a', '1');
    const r = await db.compact();
    expect(r0.allocatedBytesAfter).toBeLessThan(64 * 1024);
    expect(r.allocatedBytesBefore).toBeLessThan(64 * 1024);
    expect(r.allocatedBytesAfter).toBeLessThan(64 * 1024);
    await db.close();
  });
});

describe('kill -9 during online compaction', () => {
  const child = fileURLToPath(new URL('./compaction-child.ts', import.meta.url));
  const value = (i: number) => Buffer.alloc(i % 3 === 0 ? 700 : 20 + (i % 50), i & 0xff);

  it('keeps every acknowledged write and a clean check across repeated kills', async () => {
    const file = fresh();
    let seed = 4242;
    const rnd = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
    let next = 0;
    let compactions = 0;
    for (let round = 0; round < 8; round++) {
      const r = await runUntilKilled(child, [file, String(next)], next, 100 + Math.floor(rnd() * 500), /^compacted/);
      compactions += r.counted;
      const db = await open(file);
      try {
        expect(db.check().problems).toEqual([]);
        for (let i = 0; i < r.acked; i++) expect(db.get(`w${i}`)?.equals(value(i)), `w${i} after round ${round}`).toBe(true);
        let resume = r.acked;
        while (db.exists(`w${resume}`)) resume++;
        next = resume;
      } finally {
        await db.close();
      }
    }
    expect(compactions).toBeGreaterThan(0); // kills landed while compactions ran and completed
  }, 120_000);
});
