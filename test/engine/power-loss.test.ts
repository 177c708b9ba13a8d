// Power cuts, simulated: a SIGKILL keeps everything the process wrote (crash.test.ts), a power
// cut only what an fdatasync covered, and of the rest any part in any order. A seeded workload
// (groups of sets and deletes, transactions, deletePrefix, checkpoints foreground, sliced and in
// the background, online compaction's copies and punched holes, reopens) runs against a real
// file while test/support/power-loss.ts records every write, truncation, punch and sync; at
// random moments it takes an image a power cut then could leave. Each image must open without
// error (no `repair`), hold exactly the state after some commit no older than the last one
// acknowledged as durable, or that plus the batch in flight (a commit is all or nothing), and
// pass check(). With durable commits that is the acknowledged state or that plus the batch in
// flight; with `durable: false` any later commit may be lost, but the file always opens.
import fs from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { open, type Db, type OpenOptions } from '../../src/index.js';
import { Prng } from '../../src/sim/prng.js';
import { directIoWorks } from '../support/direct-io.js';
import { PowerLossRecorder } from '../support/power-loss.js';
import { tempDir } from '../support/tmp.js';

const tmp = tempDir('power-loss');
/** Seeds per variant: 2 in `npm test`; `npm run soak:power-loss` runs more. */
const seeds = Number(process.env.POWER_LOSS_SEEDS ?? 2);
afterAll(() => tmp.cleanup());

type State = ReadonlyMap<string, string>;
interface Capture {
  step: number;
  image: Buffer;
  /** What the recorder held not yet durable then (the failure message shows it). */
  pending: string;
  /** The states it may hold: the workload's history from the last durable one on, and the batch in flight. */
  allowed: readonly State[];
}

function key(rng: Prng): string {
  return `${rng.pick(['a', 'b', 'c', 'd'])}${String(rng.int(0, 299)).padStart(3, '0')}`;
}

function value(rng: Prng, step: number): string {
  const r = rng.float();
  const len = r < 0.7 ? rng.int(1, 100) : r < 0.95 ? rng.int(200, 3000) : rng.int(10_000, 40_000);
  return `${step}:`.padEnd(len, String.fromCharCode(97 + rng.int(0, 25)));
}

function contents(db: Db): Map<string, string> {
  const m = new Map<string, string>();
  for (const [k, v] of db.range()) m.set(k.toString(), v.toString());
  return m;
}

function same(a: State, b: State): boolean {
  if (a.size !== b.size) return false;
  for (const [k, v] of a) if (b.get(k) !== v) return false;
  return true;
}

/**
 * Runs the workload and checks every image. `txNotDurable`: the share of transactions made with
 * `durable: false` (the store's own `durable` option applies to the rest).
 */
async function runSeed(seed: number, opts: OpenOptions, steps: number, txNotDurable = 0): Promise<{ captures: number; syncs: number; punches: number; directWrites: number }> {
  const rng = new Prng(seed);
  const crashRng = rng.fork('crash');
  const file = tmp.file(`s${seed}.db`);
  await (await open(file, opts)).close();
  const recorder = new PowerLossRecorder(file);
  const captures: Capture[] = [];
  const storeDurable = opts.durable ?? true;
  /** The state after each commit of the workload, in order; the last is what was acknowledged. */
  const history: State[] = [new Map()];
  /** The first state of `history` an image may hold: the last one acknowledged as durable. */
  let durableFrom = 0;
  let inFlight: State = history[0];
  let step = 0;
  recorder.onEvent = () => {
    // Mostly where a cut has more to choose from: two or more operations not yet durable.
    if (crashRng.chance(recorder.pendingCount >= 2 ? 0.4 : 0.05)) {
      captures.push({ step, image: recorder.crashImage(crashRng), pending: recorder.describe(), allowed: [...history.slice(durableFrom), inFlight] });
    }
  };
  recorder.install();
  let db: Db;
  try {
    db = await open(file, opts);
    for (step = 0; step < steps; step++) {
      const acked = history[history.length - 1];
      const next = new Map(acked);
      let durable = storeDurable; // whether this step's acknowledgement means durable
      const r = rng.float();
      if (r < 0.45) {
        // Sets and deletes issued in one turn: one batch, one commit.
        const writes: Array<Promise<unknown>> = [];
        for (let n = rng.int(1, 20); n > 0; n--) {
          const k = key(rng);
          if (rng.chance(0.2)) {
            next.delete(k);
            writes.push(db.delete(k));
          } else {
            const v = value(rng, step);
            next.set(k, v);
            writes.push(db.set(k, v));
          }
        }
        inFlight = next;
        await Promise.all(writes);
      } else if (r < 0.8) {
        const ops: Array<[string, string | null]> = [];
        for (let n = rng.int(1, 60); n > 0; n--) ops.push([key(rng), rng.chance(0.25) ? null : value(rng, step)]);
        for (const [k, v] of ops) v === null ? next.delete(k) : next.set(k, v);
        inFlight = next;
        const txOpts = rng.chance(txNotDurable) ? { durable: false } : {};
        if (txOpts.durable === false) durable = false;
        await db.transaction((tx) => {
          for (const [k, v] of ops) v === null ? tx.delete(k) : tx.set(k, v);
        }, txOpts);
      } else if (r < 0.85) {
        const prefix = `${rng.pick(['a', 'b', 'c', 'd'])}${rng.int(0, 2)}`;
        for (const k of acked.keys()) if (k.startsWith(prefix)) next.delete(k);
        inFlight = next;
        await db.deletePrefix(prefix);
      } else if (r < 0.9) {
        await db.checkpoint(); // resolves once durable, with everything before it
        durable = true;
      } else if (r < 0.93) {
        await db.compact({ loadShare: 1, chunkBytes: rng.int(1, 16) * 1024 });
        durable = true;
      } else if (r < 0.96) {
        await db.close();
        db = await open(file, opts);
        durable = true;
      } else {
        const k = key(rng);
        const v = value(rng, step);
        next.set(k, v);
        inFlight = next;
        await db.set(k, v);
      }
      if (!same(next, acked)) history.push(next);
      if (durable) durableFrom = history.length - 1;
      inFlight = next;
    }
    await db.close();
  } finally {
    recorder.uninstall();
  }

  // Every image: opens, holds a state the workload reached since its last durable one (or that
  // plus the batch in flight), checks clean.
  for (const [i, c] of captures.entries()) {
    const copy = tmp.file(`s${seed}-crash${i}.db`);
    fs.writeFileSync(copy, c.image);
    const where = `seed ${seed}, image ${i} (step ${c.step}; ${c.pending})`;
    let after: Db;
    try {
      after = await open(copy, opts);
    } catch (err) {
      throw new Error(`${where}: open failed: ${String(err)}`);
    }
    const got = contents(after);
    const report = after.check();
    await after.close();
    fs.rmSync(copy);
    expect(c.allowed.some((state) => same(got, state)), `${where}: not a state the workload acknowledged since its last durable one, nor that plus the batch in flight`).toBe(true);
    expect(report.problems, where).toEqual([]);
  }
  expect(captures.length).toBeGreaterThan(40);
  return { captures: captures.length, syncs: recorder.counts.syncs, punches: recorder.counts.punches, directWrites: recorder.counts.directWrites };
}

describe('the power-cut model (test/support/power-loss.ts)', () => {
  it('keeps what a sync covered in every image, and of the rest sometimes all, none or some sectors', () => {
    const file = tmp.file('model.bin');
    fs.writeFileSync(file, Buffer.alloc(0));
    const recorder = new PowerLossRecorder(file);
    recorder.install();
    const fd = fs.openSync(file, 'r+');
    try {
      fs.writeSync(fd, Buffer.alloc(2048, 1), 0, 2048, 0);
      fs.fdatasyncSync(fd);
      fs.writeSync(fd, Buffer.alloc(2048, 2), 0, 2048, 1024); // over the synced tail, and past it
      expect(recorder.pendingCount).toBe(1);
    } finally {
      fs.closeSync(fd);
      recorder.uninstall();
    }
    const rng = new Prng(5);
    const seen = new Set<string>();
    for (let i = 0; i < 200; i++) {
      const image = recorder.crashImage(rng);
      expect(image.length).toBeGreaterThanOrEqual(2048);
      expect(image.subarray(0, 1024).every((b) => b === 1)).toBe(true); // synced, never overwritten
      // Each 512-byte sector of the unsynced write is old or new, whole.
      const sectors: string[] = [];
      for (let at = 1024; at < image.length; at += 512) {
        const sector = image.subarray(at, at + 512);
        const old = at < 2048 ? 1 : 0;
        expect(sector.every((b) => b === sector[0]) && (sector[0] === old || sector[0] === 2)).toBe(true);
        sectors.push(sector[0] === 2 ? 'n' : 'o');
      }
      seen.add(sectors.join(''));
    }
    expect(seen.has('nnnn')).toBe(true); // all of it (four sectors)
    expect(seen.has('oo')).toBe(true); // none of it
    expect(seen.size).toBeGreaterThan(4); // and mixtures
  });
});

describe('power cuts: only what an fdatasync covered is certain', () => {
  const variants: Array<[string, OpenOptions, number?]> = [
    ['small nodes, a checkpoint every 64 KiB, in the background or in slices', {
      nodeBytesMax: 512, checkpointIntervalBytes: 64 << 10, slicedCheckpointBytesMin: 16 << 10, checkpointSliceMs: 0, checkpointIdleMs: 0,
    }],
    ['foreground checkpoints, no inline syncs (fdatasync on the pool), a superblock every 32 KiB', {
      nodeBytesMax: 1024, checkpointIntervalBytes: 256 << 10, backgroundCheckpoints: false, syncInlineBytesMax: 0, checkpointIdleMs: 0, superblockIntervalBytes: 32 << 10,
    }],
    ['defaults', {}],
    // Commits appended after bytes not yet durable (commit versions 3 and 4): a power cut may
    // keep a later slab and tear an earlier one, and the file must still open, as a torn tail.
    ['durable: false, a checkpoint every 64 KiB', { durable: false, nodeBytesMax: 512, checkpointIntervalBytes: 64 << 10, checkpointIdleMs: 0 }],
    ['a third of the transactions durable: false among durable writes', { nodeBytesMax: 1024, checkpointIntervalBytes: 256 << 10, checkpointIdleMs: 0 }, 1 / 3],
    // Small commits written O_DIRECT | O_DSYNC, durable once done, their own bytes only.
    ['small commits as direct writes (syncDirect)', { syncDirect: true, nodeBytesMax: 1024, checkpointIntervalBytes: 256 << 10, checkpointIdleMs: 0 }],
  ];
  for (const [label, opts, txNotDurable] of variants) {
    for (let seed = 1; seed <= seeds; seed++) {
      it(`${label}, seed ${seed}`, async () => {
        const r = await runSeed(seed * 7919 + label.length, opts, 400, txNotDurable);
        console.log(`power-loss ${label}, seed ${seed}: ${r.captures} images, ${r.syncs} syncs, ${r.punches} punches, ${r.directWrites} direct writes`);
        if (opts.syncDirect === true && directIoWorks(tmp.dir)) expect(r.directWrites).toBeGreaterThan(50);
      }, 120_000);
    }
  }
});
