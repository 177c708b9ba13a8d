// Model test (bbolt's QuickDB idea, style.md §3.6): random sequences of operations, transactions,
// aborts, reopens, snapshots and idle trims against an in-memory Map, with check() after every
// commit.
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { open, type Db, type Snapshot } from '../../src/index.js';
import { tempDir } from '../support/tmp.js';

const tmp = tempDir('model');
afterAll(() => tmp.cleanup());

// Keys from a small alphabet so that operations collide; include bytes 0x00 and 0xff and the
// empty key, which exercise the byte ordering.
const keyArb = fc.oneof(
  fc.constantFrom('', 'a', 'ab', 'b', 'ba', 'z'),
  fc.uint8Array({ minLength: 1, maxLength: 3 }).map((b) => Buffer.from(b.map((x) => [0x00, 0x61, 0x62, 0xff][x & 3]))),
  fc.integer({ min: 0, max: 400 }).map((i) => `k${String(i).padStart(4, '0')}`),
);
// Small values stay inline; long ones become Value entries.
const valueArb = fc.oneof(
  fc.uint8Array({ maxLength: 20 }),
  fc.integer({ min: 100, max: 600 }).map((n) => Buffer.alloc(n, n & 0xff)),
);
const rangeArb = fc.record(
  {
    gte: keyArb, gt: keyArb, lte: keyArb, lt: keyArb,
    prefix: fc.constantFrom('', 'a', 'k00', 'k01', '\u00ff'),
    reverse: fc.boolean(),
    limit: fc.integer({ min: 0, max: 50 }),
  },
  { requiredKeys: [] },
);

type Op =
  | { op: 'set'; key: string | Uint8Array; value: Uint8Array }
  | { op: 'del'; key: string | Uint8Array }
  | { op: 'delPrefix'; prefix: string }
  | { op: 'burst'; n: number; seed: number }
  | { op: 'tx'; writes: Array<{ key: string | Uint8Array; value: Uint8Array | null }>; abort: boolean; tag?: number }
  | { op: 'range'; opts: Record<string, unknown> }
  | { op: 'reopen' }
  | { op: 'crash' }
  | { op: 'snapshot' }
  | { op: 'checkSnapshot' }
  | { op: 'idle'; checkpoint: boolean };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ op: fc.constant('set' as const), key: keyArb, value: valueArb }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('del' as const), key: keyArb }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('delPrefix' as const), prefix: fc.constantFrom('k00', 'k01', 'a', 'k0') }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('burst' as const), n: fc.integer({ min: 10, max: 300 }), seed: fc.nat() }) },
  {
    weight: 3,
    arbitrary: fc.record(
      {
        op: fc.constant('tx' as const),
        writes: fc.array(fc.record({ key: keyArb, value: fc.option(valueArb, { nil: null }) }), { maxLength: 30 }),
        abort: fc.boolean(),
        tag: fc.nat({ max: 1_000_000 }),
      },
      { requiredKeys: ['op', 'writes', 'abort'] },
    ),
  },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('range' as const), opts: rangeArb }) },
  { weight: 1, arbitrary: fc.constant({ op: 'reopen' as const }) },
  { weight: 3, arbitrary: fc.constant({ op: 'crash' as const }) },
  { weight: 1, arbitrary: fc.constant({ op: 'snapshot' as const }) },
  { weight: 1, arbitrary: fc.constant({ op: 'checkSnapshot' as const }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('idle' as const), checkpoint: fc.boolean() }) },
);

const hex = (k: string | Uint8Array) => Buffer.from(typeof k === 'string' ? Buffer.from(k, 'utf8') : k).toString('hex');

/** The model: hex(key) -> value; hex order equals byte order. */
function modelRange(model: Map<string, Buffer>, o: Record<string, unknown>): Array<[string, string]> {
  let keys = [...model.keys()].sort();
  const b = (k: unknown) => hex(k as string | Uint8Array);
  if (o.gte !== undefined) keys = keys.filter((k) => k >= b(o.gte));
  if (o.gt !== undefined) keys = keys.filter((k) => k > b(o.gt));
  if (o.lte !== undefined) keys = keys.filter((k) => k <= b(o.lte));
  if (o.lt !== undefined) keys = keys.filter((k) => k < b(o.lt));
  if (o.prefix !== undefined) keys = keys.filter((k) => k.startsWith(b(o.prefix)));
  if (o.reverse === true) keys.reverse();
  if (o.limit !== undefined) keys = keys.slice(0, o.limit as number);
  return keys.map((k) => [k, (model.get(k) as Buffer).toString('hex')]);
}

function assertSame(db: { range(o?: object): Iterable<[Buffer, Buffer]>; count(): number; get(k: Buffer): Buffer | undefined }, model: Map<string, Buffer>) {
  const got = [...db.range()].map(([k, v]) => [k.toString('hex'), v.toString('hex')]);
  expect(got).toEqual(modelRange(model, {}));
  expect(db.count()).toBe(model.size);
  for (const [k, v] of model) expect(db.get(Buffer.from(k, 'hex'))?.equals(v)).toBe(true);
}

let run = 0;

async function runOps(ops: Op[], nodeBytesMax: number): Promise<void> {
  const file = tmp.file(`m${run++}.db`);
  // Checkpoints: every commit, every few KB, or only on close (so reopen replays the log); with
  // or without the adaptive ones (a commit whose changed nodes are about its log record's size).
  // Every pair of the two comes up in nine runs (`(run >> 1) % 3` had never paired the 64 MiB
  // interval with adaptive checkpoints off: a store that only logs, its tree all in the region).
  const checkpointIntervalBytes = [0, 3000, 64 << 20][run % 3];
  const checkpointTreeOverLogMax = [0, 1.5, 4][Math.floor(run / 3) % 3];
  // Every fourth store slices every checkpoint, pausing after every node (db.ts, sliced checkpoints).
  const sliced = run % 4 === 3 ? { slicedCheckpointBytesMin: 0, checkpointSliceMs: 0 } : {};
  const opts = { nodeBytesMax, inlineValueBytesMax: 64, durable: run % 2 === 0, checkpointIntervalBytes, checkpointTreeOverLogMax, ...sliced };
  let db: Db = await open(file, opts);
  const model = new Map<string, Buffer>();
  const snaps: Array<{ snap: Snapshot; model: Map<string, Buffer> }> = [];
  let lastTag: number | undefined;
  try {
    for (const o of ops) {
      switch (o.op) {
        case 'set':
          await db.set(o.key, o.value);
          model.set(hex(o.key), Buffer.from(o.value));
          break;
        case 'del': {
          const had = model.delete(hex(o.key));
          expect(await db.delete(o.key)).toBe(had);
          break;
        }
        case 'delPrefix': {
          const p = hex(o.prefix);
          let n = 0;
          for (const k of [...model.keys()]) if (k.startsWith(p)) (model.delete(k), n++);
          expect(await db.deletePrefix(o.prefix)).toBe(n);
          break;
        }
        case 'burst': {
          // Many writes in one event-loop turn: one group commit.
          const ps: Promise<unknown>[] = [];
          let s = o.seed;
          for (let i = 0; i < o.n; i++) {
            s = (s * 1103515245 + 12345) >>> 0;
            const key = `k${String(s % 400).padStart(4, '0')}`;
            if (s % 5 === 0) {
              ps.push(db.delete(key));
              model.delete(hex(key));
            } else {
              const v = Buffer.alloc((s >>> 8) % 90, i & 0xff);
              ps.push(db.set(key, v));
              model.set(hex(key), v);
            }
          }
          await Promise.all(ps);
          break;
        }
        case 'tx': {
          const shadow = new Map(model);
          const p = db.transaction((tx) => {
            for (const w of o.writes) {
              if (w.value === null) {
                expect(tx.delete(w.key)).toBe(shadow.delete(hex(w.key)));
              } else {
                tx.set(w.key, w.value);
                shadow.set(hex(w.key), Buffer.from(w.value));
              }
              // Reads inside see the transaction's own writes, ranges included.
              expect(tx.get(w.key)?.toString('hex')).toBe(shadow.get(hex(w.key))?.toString('hex'));
            }
            expect([...tx.range({ limit: 20 })].map(([k, v]) => [k.toString('hex'), v.toString('hex')])).toEqual(modelRange(shadow, { limit: 20 }));
            expect(tx.count()).toBe(shadow.size);
            if (o.abort) throw new Error('abort');
            return 'ok';
          }, o.tag === undefined ? {} : { tag: o.tag });
          if (o.abort) {
            await expect(p).rejects.toThrow('abort');
          } else {
            expect(await p).toBe('ok');
            for (const k of [...model.keys()]) model.delete(k);
            for (const [k, v] of shadow) model.set(k, v);
            if (o.tag !== undefined) lastTag = o.tag;
          }
          break;
        }
        case 'range': {
          const got = [...db.range(o.opts)].map(([k, v]) => [k.toString('hex'), v.toString('hex')]);
          expect(got).toEqual(modelRange(model, o.opts));
          const keys = [...db.keys(o.opts)].map((k) => k.toString('hex'));
          expect(keys).toEqual(got.map((e) => e[0]));
          break;
        }
        case 'reopen':
          for (const s of snaps) s.snap.release();
          snaps.length = 0;
          await db.close();
          db = await open(file, opts);
          expect(db.lastTag).toBe(lastTag);
          break;
        case 'crash':
          // Abandon the store without close (no final checkpoint or superblock): the process
          // survives, so everything written is in the page cache, and reopening must replay
          // the commits after the last checkpoint.
          for (const s of snaps) s.snap.release();
          snaps.length = 0;
          (db as unknown as { log: { close(): void } }).log.close();
          db = await open(file, opts);
          if (process.env.DEBUG_MODEL) console.log('crash replayed', db.replayedSlabs, 'interval', opts.checkpointIntervalBytes);
          expect(db.lastTag).toBe(lastTag);
          break;
        case 'snapshot':
          snaps.push({ snap: db.snapshot(), model: new Map(model) });
          break;
        case 'checkSnapshot':
          for (const s of snaps) assertSame(s.snap, s.model);
          break;
        case 'idle':
          // What the idle timer does (db.ts armIdleCheckpoint): a checkpoint, then, writes still
          // paused, the trim: the region's pages and the slab builder's buffers given back
          // (when nothing holds a changed node; the buffers always). Later commits build and
          // read over the zeroed pages.
          if (o.checkpoint) await db.checkpoint();
          await new Promise((resolve) => setImmediate(resolve)); // (the writer is let go after its promises settle)
          (db as unknown as { trimIdle(): void }).trimIdle();
          break;
        default: {
          const never: never = o;
          throw new Error(String(never));
        }
      }
      if (o.op !== 'range' && o.op !== 'snapshot' && o.op !== 'checkSnapshot') {
        const report = db.check();
        expect(report.problems).toEqual([]);
        expect(report.keys).toBe(model.size);
      }
    }
    assertSame(db, model);
    for (const s of snaps) assertSame(s.snap, s.model);
    expect(db.lastTag).toBe(lastTag);
  } finally {
    for (const s of snaps) s.snap.release();
    await db.close();
  }
}

describe('engine model test', () => {
  it('random operation sequences agree with a Map (small nodes: many splits and merges)', async () => {
    await fc.assert(fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 80 }), (ops) => runOps(ops, 512)), {
      numRuns: 150,
      seed: 20261122,
    });
  });
  it('random operation sequences agree with a Map (default node size)', async () => {
    await fc.assert(fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 60 }), (ops) => runOps(ops, 4096)), {
      numRuns: 40,
      seed: 7,
    });
  });
});
