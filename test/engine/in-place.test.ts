// In-place batches (db.ts, "In-place batches"; TreeWriter in-place mode): a batch may change the
// store's own dirty nodes in place, and no reader may ever see such a change before it is
// durable and published, nor after its batch failed or its transaction aborted.
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { IoFailedError, open, type Db, type OpenOptions } from '../../src/index.js';
import { tempDir } from '../support/tmp.js';

const tmp = tempDir('in-place');
afterAll(() => tmp.cleanup());
let n = 0;
const fresh = () => tmp.file(`p${n++}.db`);

const KEYS = Array.from({ length: 600 }, (_, i) => `k${String(i).padStart(4, '0')}`);
// Small nodes, so the tree has index levels; no checkpoints, so the nodes stay the store's own.
const OPTS = { nodeBytesMax: 512, checkpointTreeOverLogMax: 0, checkpointIdleMs: 0 } as const;

/** A store whose nodes are all dirty copies from an earlier batch: the next batch changes them in place. */
async function ownedStore(extra: Record<string, unknown> = {}): Promise<{ db: Db; file: string }> {
  const file = fresh();
  const db = await open(file, { ...OPTS, ...extra });
  await db.transaction((tx) => {
    for (const k of KEYS) tx.set(k, 'v0');
  });
  await db.transaction((tx) => {
    for (const k of KEYS) tx.set(k, 'v1');
  });
  return { db, file };
}

const str = (b: Buffer | undefined) => b?.toString();

describe('in-place batches', () => {
  it('overwrites change the store’s own nodes in place, and the result reads back, checks and replays', async () => {
    const { db, file } = await ownedStore();
    const before = db.stats.inPlaceChanges;
    await db.transaction((tx) => {
      for (let i = 0; i < KEYS.length; i += 3) tx.set(KEYS[i], 'v2');
    });
    expect(db.stats.inPlaceChanges).toBeGreaterThan(before); // the path under test ran
    for (let i = 0; i < KEYS.length; i++) expect(str(db.get(KEYS[i]))).toBe(i % 3 === 0 ? 'v2' : 'v1');
    expect(db.check().ok).toBe(true);
    await db.close();
    const again = await open(file, OPTS);
    for (let i = 0; i < KEYS.length; i++) expect(str(again.get(KEYS[i]))).toBe(i % 3 === 0 ? 'v2' : 'v1');
    await again.close();
  });

  it('inserts go into the store’s own leaves in place; an abort takes them out, a reader seals them off', async () => {
    const { db, file } = await ownedStore();
    const before = db.stats.inPlaceChanges;
    const added: string[] = [];
    // Into the last leaf, the one an ascending load leaves with room: a batch that must split a
    // leaf is sealed and copies instead (wasm-tree-writer.ts).
    await db.transaction((tx) => {
      for (let i = 580; i < KEYS.length; i += 10) {
        tx.set(`${KEYS[i]}a`, 'n');
        added.push(`${KEYS[i]}a`);
      }
    });
    expect(db.stats.inPlaceChanges).toBeGreaterThan(before);
    await expect(
      db.transaction((tx) => {
        for (let i = 5; i < KEYS.length; i += 10) tx.set(`${KEYS[i]}b`, 'x');
        throw new Error('no');
      }),
    ).rejects.toThrow('no');
    let seenDuring: string[] = [];
    await db.transaction((tx) => {
      for (let i = 3; i < KEYS.length; i += 10) tx.set(`${KEYS[i]}c`, 'c');
      seenDuring = [...db.keys()].map(String);
    });
    const publishedBefore = [...KEYS, ...added].sort();
    expect(seenDuring).toEqual(publishedBefore);
    for (let i = 3; i < KEYS.length; i += 10) added.push(`${KEYS[i]}c`);
    const want = [...KEYS, ...added].sort();
    expect([...db.keys()].map(String)).toEqual(want);
    expect(db.count()).toBe(want.length);
    expect(db.check().ok).toBe(true);
    await db.close();
    const again = await open(file, OPTS);
    expect([...again.keys()].map(String)).toEqual(want);
    await again.close();
  });

  it('a read inside the transaction’s callback sees the published value; the transaction sees its own', async () => {
    const { db } = await ownedStore();
    const seals = db.stats.inPlaceSeals;
    let outside: Array<string | undefined> = [];
    let inside: Array<string | undefined> = [];
    await db.transaction((tx) => {
      for (const k of KEYS) tx.set(k, 'v2');
      outside = [str(db.get(KEYS[5])), str([...db.range({ gte: KEYS[5], limit: 1 })][0][1]), String(db.exists(KEYS[5]))];
      tx.set(KEYS[6], 'v3');
      inside = [str(tx.get(KEYS[5])), str(tx.get(KEYS[6]))];
    });
    expect(db.stats.inPlaceSeals).toBe(seals + 1);
    expect(outside).toEqual(['v1', 'v1', 'true']);
    expect(inside).toEqual(['v2', 'v3']);
    expect(str(db.get(KEYS[5]))).toBe('v2');
    expect(str(db.get(KEYS[6]))).toBe('v3');
    expect(db.check().ok).toBe(true);
    await db.close();
  });

  it('a range or deletePrefix inside the transaction, after changes in place, sees the transaction’s tree', async () => {
    const { db } = await ownedStore();
    let ranged: string[] = [];
    let removed = 0;
    await db.transaction((tx) => {
      for (const k of KEYS) tx.set(k, 'v2');
      const it = tx.range({ prefix: 'k00' });
      ranged.push(it.next().value![1].toString());
      tx.set(KEYS[5], 'v9'); // after the cursor's freeze: copies, so the cursor does not see it
      for (const [, v] of it) ranged.push(v.toString());
      tx.set(KEYS[1], 'v3');
      removed = tx.deletePrefix('k01');
      expect(str(db.get(KEYS[1]))).toBe('v1');
    });
    expect(ranged).toEqual(Array(100).fill('v2'));
    expect(removed).toBe(100);
    expect(str(db.get(KEYS[1]))).toBe('v3');
    expect(str(db.get(KEYS[5]))).toBe('v9');
    expect(db.get(KEYS[100])).toBeUndefined();
    expect(str(db.get(KEYS[200]))).toBe('v2');
    expect(db.count()).toBe(KEYS.length - 100);
    expect(db.check().ok).toBe(true);
    await db.close();
  });

  it('a seal inside a transaction whose savepoint holds nodes an earlier job of the batch copied', async () => {
    // Found by the property below (seed 7, 300 runs): the delete copies the root's path (deletes
    // copy), the transaction's savepoint freezes those copies, its writes change shared nodes
    // below them in place, and the read seals through the frozen copies.
    const { db } = await ownedStore();
    let seen: Array<string | undefined> = [];
    const del = db.delete(KEYS[0]);
    const tx = db.transaction((t) => {
      // Far from the deleted key: the copied root stays frozen above these leaves.
      for (const k of KEYS.slice(300)) t.set(k, 'v2');
      seen = [str(db.get(KEYS[400])), str(t.get(KEYS[400]))];
    });
    expect(await del).toBe(true);
    await tx;
    expect(seen).toEqual(['v1', 'v2']);
    // The same, with the transaction aborting after the seal: the delete stays, the writes go.
    const del2 = db.delete(KEYS[1]);
    const tx2 = db.transaction((t) => {
      for (const k of KEYS.slice(300)) t.set(k, 'v3');
      seen = [str(db.get(KEYS[400]))];
      throw new Error('no');
    });
    expect(await del2).toBe(true);
    await expect(tx2).rejects.toThrow('no');
    expect(seen).toEqual(['v2']);
    expect(db.get(KEYS[0])).toBeUndefined();
    expect(db.get(KEYS[1])).toBeUndefined();
    for (const k of KEYS.slice(2)) expect(str(db.get(k))).toBe(KEYS.indexOf(k) >= 300 ? 'v2' : 'v1');
    expect(db.count()).toBe(KEYS.length - 2);
    expect(db.check().ok).toBe(true);
    await db.close();
  });

  it('while an async transaction waits, readers see the published tree', async () => {
    const { db } = await ownedStore();
    const during: Array<string | undefined> = [];
    const tx = db.transaction(async (t) => {
      for (const k of KEYS) t.set(k, 'v2');
      await new Promise((r) => setTimeout(r, 20));
      t.set(KEYS[0], 'v3');
      expect(str(t.get(KEYS[1]))).toBe('v2');
    });
    await new Promise((r) => setTimeout(r, 5));
    during.push(str(db.get(KEYS[1])), str(db.get(KEYS[0])));
    const snap = db.snapshot();
    await tx;
    expect(during).toEqual(['v1', 'v1']);
    expect(str(snap.get(KEYS[1]))).toBe('v1');
    snap.release();
    expect(str(db.get(KEYS[1]))).toBe('v2');
    expect(str(db.get(KEYS[0]))).toBe('v3');
    expect(db.check().ok).toBe(true);
    await db.close();
  });

  it('while a commit waits for its sync on the thread pool, readers see the published tree', async () => {
    const { db } = await ownedStore({ syncInlineBytesMax: 0 });
    const seals = db.stats.inPlaceSeals;
    let during: string | undefined;
    // A reader arriving while the commit waits for its fdatasync (on libuv's pool).
    const log = (db as unknown as { log: { sync: () => Promise<void> } }).log;
    const realSync = log.sync.bind(log);
    log.sync = () => {
      const p = realSync();
      during = str(db.get(KEYS[9]));
      return p;
    };
    await db.transaction((tx) => {
      for (const k of KEYS) tx.set(k, 'v2');
    });
    log.sync = realSync;
    expect(during).toBe('v1');
    expect(db.stats.inPlaceSeals).toBe(seals + 1);
    for (const k of KEYS) expect(str(db.get(k))).toBe('v2');
    expect(db.check().ok).toBe(true);
    await db.close();
  });

  it('an aborted transaction leaves nothing behind, even changes it made in place', async () => {
    const { db, file } = await ownedStore();
    await expect(
      db.transaction((tx) => {
        for (const k of KEYS) tx.set(k, 'bad');
        throw new Error('no');
      }),
    ).rejects.toThrow('no');
    // Plain sets after the abort, in the same batch as another aborted transaction.
    const a = db.set(KEYS[1], 'v2');
    const b = db.transaction((tx) => {
      tx.set(KEYS[2], 'bad');
      throw new Error('no again');
    });
    await a;
    await expect(b).rejects.toThrow('no again');
    for (const k of KEYS) expect(str(db.get(k))).toBe(k === KEYS[1] ? 'v2' : 'v1');
    expect(db.check().ok).toBe(true);
    await db.close();
    const again = await open(file, OPTS);
    for (const k of KEYS) expect(str(again.get(k))).toBe(k === KEYS[1] ? 'v2' : 'v1');
    await again.close();
  });

  it('snapshots and open iterators keep their version while later batches write', async () => {
    const { db } = await ownedStore();
    const snap = db.snapshot();
    const it = db.range();
    expect(str(it.next().value?.[1])).toBe('v1');
    await db.transaction((tx) => {
      for (const k of KEYS) tx.set(k, 'v2');
    });
    await db.transaction((tx) => {
      for (const k of KEYS) tx.set(k, 'v3');
    });
    for (const k of KEYS) expect(str(snap.get(k))).toBe('v1');
    let rest = 0;
    for (const [, v] of it) {
      expect(v.toString()).toBe('v1');
      rest++;
    }
    expect(rest).toBe(KEYS.length - 1);
    snap.release();
    for (const k of KEYS) expect(str(db.get(k))).toBe('v3');
    // With no reader holding it any more, the tree is the store's own again.
    const before = db.stats.inPlaceChanges;
    await db.set(KEYS[3], 'v4');
    expect(db.stats.inPlaceChanges).toBeGreaterThan(before);
    expect(db.check().ok).toBe(true);
    await db.close();
  });

  it('a failed commit gives readers the published tree back', async () => {
    const { db } = await ownedStore();
    const log = (db as unknown as { log: { syncFinish: () => boolean } }).log;
    const realSyncFinish = log.syncFinish.bind(log);
    log.syncFinish = () => {
      realSyncFinish(); // the sync thread's request finished, as a failed one would be
      throw Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' });
    };
    await expect(
      db.transaction((tx) => {
        for (const k of KEYS) tx.set(k, 'lost');
      }),
    ).rejects.toBeInstanceOf(IoFailedError);
    for (const k of KEYS) expect(str(db.get(k))).toBe('v1');
    expect(db.check().ok).toBe(true);
    await db.close().catch(() => undefined);
  });

  async function randomBatchesProperty(extra: OpenOptions, runs: number, seed: number): Promise<{ inPlaceChanges: number; inPlaceSeals: number; slicedCheckpoints: number; backgroundCheckpoints: number; backgroundCommits: number }> {
    // Each transaction carries its serial as the tag; a read at any moment must match the model
    // of all successful transactions up to db.lastTag, whatever is still in flight.
    const totals = { inPlaceChanges: 0, inPlaceSeals: 0, slicedCheckpoints: 0, backgroundCheckpoints: 0, backgroundCommits: 0 };
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.record({
            // Deletes one write in eight: a batch with one is sealed and copies (wasm-tree-writer.ts).
            writes: fc.array(fc.record({ key: fc.integer({ min: 0, max: 79 }), value: fc.integer({ min: 0, max: 9 }), del: fc.integer({ min: 0, max: 7 }).map((d) => d === 0) }), { minLength: 1, maxLength: 30 }),
            abort: fc.boolean(),
            waitMs: fc.constantFrom(-1, -1, 0, 2),
            readAfterMs: fc.constantFrom(0, 1, 3),
            gapMs: fc.constantFrom(-1, -1, 0, 2),
          }),
          { minLength: 5, maxLength: 25 },
        ),
        async (txs) => {
          const keys = KEYS.slice(0, 80);
          const db = await open(fresh(), { ...OPTS, syncInlineBytesMax: 200, ...extra });
          await db.transaction((tx) => {
            for (const k of keys) tx.set(k, 's');
          });
          await db.transaction((tx) => {
            for (const k of keys) tx.set(k, 's');
          });
          // Model after each serial (0: the loaded state).
          const states: Array<Map<string, string>> = [new Map(keys.map((k) => [k, 's']))];
          for (let i = 0; i < txs.length; i++) {
            const m = new Map(states[i]);
            if (!txs[i].abort) for (const w of txs[i].writes) {
              if (w.del) m.delete(keys[w.key]);
              else m.set(keys[w.key], `t${i + 1}v${w.value}`);
            }
            states.push(m);
          }
          const lastGood = (t: number) => {
            while (t > 0 && txs[t - 1].abort) t--;
            return t;
          };
          const problems: string[] = [];
          // A range pins its tree, so the next batch copies (a capture): not every read takes one.
          const readNow = (where: string, withRange = where === 'end' || where.endsWith('0')) => {
            const t = lastGood(db.lastTag ?? 0);
            const want = states[t];
            for (const k of keys) {
              const got = str(db.get(k));
              if (got !== want.get(k)) problems.push(`${where}: ${k} = ${got}, want ${want.get(k)} (tag ${t})`);
            }
            if (!withRange) return;
            let count = 0;
            for (const [k, v] of db.range()) {
              count++;
              if (v.toString() !== want.get(k.toString())) problems.push(`${where}: range ${k.toString()}`);
            }
            if (count !== want.size) problems.push(`${where}: range count ${count}, want ${want.size}`);
          };
          const pending: Array<Promise<unknown>> = [];
          for (let i = 0; i < txs.length; i++) {
            const spec = txs[i];
            const body = (tx: Parameters<Parameters<Db['transaction']>[0]>[0]) => {
              for (const w of spec.writes) {
                if (w.del) tx.delete(keys[w.key]);
                else tx.set(keys[w.key], `t${i + 1}v${w.value}`);
              }
              if (spec.abort) throw new Error('abort');
            };
            const run = spec.waitMs < 0
              ? db.transaction(body, { tag: i + 1 })
              : db.transaction(async (tx) => {
                await new Promise((r) => setTimeout(r, spec.waitMs));
                body(tx);
                tx.count(); // makes its held-back sets now: in place while it waits
                readNow(`inside ${i + 1}`); // a reader then seals them off (or finds them sealed already)
                await new Promise((r) => setTimeout(r, spec.waitMs));
              }, { tag: i + 1 });
            pending.push(run.then(() => readNow(`after ${i + 1}`), () => readNow(`after abort ${i + 1}`)));
            pending.push(new Promise<void>((r) => setTimeout(() => {
              readNow(`timer ${i + 1}`);
              r();
            }, spec.readAfterMs)));
            if (spec.gapMs >= 0) await new Promise((r) => setTimeout(r, spec.gapMs));
          }
          await Promise.all(pending);
          readNow('end');
          expect(db.check().ok).toBe(true);
          for (const k of ['inPlaceChanges', 'inPlaceSeals', 'slicedCheckpoints', 'backgroundCheckpoints', 'backgroundCommits'] as const) totals[k] += db.stats[k];
          await db.close();
          expect(problems.slice(0, 5)).toEqual([]);
        },
      ),
      { numRuns: runs, seed },
    );
    return totals;
  }

  it('random batches, aborts, waits and readers: every read shows exactly the last published transaction', async () => {
    const totals = await randomBatchesProperty({}, 25, 20261201);
    // Both paths ran: changes published in place, and changes sealed off for a reader.
    expect([totals.inPlaceChanges > 0, totals.inPlaceSeals > 0], JSON.stringify(totals)).toEqual([true, true]);
  });

  it('the same with every checkpoint sliced, pausing after every node (readers and batches between the slices)', async () => {
    const totals = await randomBatchesProperty({ checkpointIntervalBytes: 256, slicedCheckpointBytesMin: 0, checkpointSliceMs: 0, backgroundCheckpoints: false }, 25, 20261202);
    expect(totals.slicedCheckpoints, JSON.stringify(totals)).toBeGreaterThan(25);
  });

  it('the same with every checkpoint in the background (readers between its steps)', async () => {
    const totals = await randomBatchesProperty({ checkpointIntervalBytes: 256, slicedCheckpointBytesMin: 0, checkpointSliceMs: 0 }, 25, 20261203);
    expect(totals.backgroundCheckpoints, JSON.stringify(totals)).toBeGreaterThan(25);
  });
});
