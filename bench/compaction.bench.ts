// Online compaction: space given back and the cost to concurrent gets and writes.
//
//   npx tsx bench/compaction.bench.ts [--keys N] [--rounds R]      (npm run bench:compaction)
//
// Per round, in a fresh store: load N keys (16 B keys, 100 B values, 1,000 per transaction),
// overwrite every key once in random order, then
//  - space: db.compact() alone; allocated bytes (st_blocks) ÷ logical bytes before and after;
//  - cost: 3 s of a reader (random gets, yielding every 1,000) and a writer (durable
//    transactions of 100 random overwrites) running together as the baseline, then the same load
//    while a second db.compact() runs, for as long as it runs; throughput during ÷ baseline.
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { open, type Db } from '../dist/index.js';
import { makeKey } from './keys.js';

const { values } = parseArgs({ options: { keys: { type: 'string' }, rounds: { type: 'string' } } });
const N = Number(values.keys ?? 1_000_000);
const rounds = Number(values.rounds ?? 3);
const VALUE_BYTES = 100;
const logical = N * (16 + VALUE_BYTES);

const keys = Array.from({ length: N }, (_, i) => makeKey(i));
const valuePool = crypto.randomBytes(VALUE_BYTES * 1024);
const valueFor = (i: number) => valuePool.subarray((i % 1000) * VALUE_BYTES, (i % 1000 + 1) * VALUE_BYTES);
let seed = 7;
const rnd = (m: number) => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) % m;

async function fill(db: Db, order: number[]): Promise<void> {
  for (let i = 0; i < order.length; i += 1000) {
    await db.transaction((tx) => {
      for (let j = i; j < Math.min(i + 1000, order.length); j++) tx.set(keys[order[j]], valueFor(order[j] + 1));
    });
  }
}

async function underLoad(db: Db, until: Promise<unknown> | number): Promise<{ getsPerSec: number; writesPerSec: number; ms: number }> {
  let running = true;
  const t0 = performance.now();
  if (typeof until === 'number') setTimeout(() => (running = false), until);
  else void until.finally(() => (running = false));
  let gets = 0;
  let writes = 0;
  const reader = (async () => {
    while (running) {
      for (let i = 0; i < 1000; i++) if (db.get(keys[rnd(N)]) === undefined) throw new Error('missing key');
      gets += 1000;
      await new Promise((r) => setImmediate(r));
    }
  })();
  const writer = (async () => {
    while (running) {
      await db.transaction((tx) => {
        for (let i = 0; i < 100; i++) {
          const k = rnd(N);
          tx.set(keys[k], valueFor(k + 2));
        }
      });
      writes += 100;
    }
  })();
  await Promise.all([reader, writer]);
  const ms = performance.now() - t0;
  return { getsPerSec: (gets / ms) * 1000, writesPerSec: (writes / ms) * 1000, ms };
}

const rows: Array<Record<string, number>> = [];
for (let r = 0; r < rounds; r++) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'solifuge-compaction-bench-'));
  const file = path.join(dir, 'data.db');
  const db = await open(file);
  const order = Array.from({ length: N }, (_, i) => i);
  for (let i = N - 1; i > 0; i--) {
    const j = rnd(i + 1);
    [order[i], order[j]] = [order[j], order[i]];
  }
  await fill(db, order);
  await fill(db, [...order].reverse());
  // Space: compaction alone, right after the overwrite.
  const before = fs.statSync(file).blocks * 512;
  const t = performance.now();
  const result = await db.compact();
  const compactMs = performance.now() - t;
  const after = fs.statSync(file).blocks * 512;
  if (db.check().problems.length > 0) throw new Error('check failed after compaction');
  // Cost: the same reader and writer, first alone, then while a second compaction runs.
  const base = await underLoad(db, 3000);
  const compaction = db.compact();
  const during = await underLoad(db, compaction);
  await compaction;
  rows.push({
    ampBefore: before / logical,
    ampAfter: after / logical,
    compactSec: compactMs / 1000,
    getRatio: during.getsPerSec / base.getsPerSec,
    writeRatio: during.writesPerSec / base.writesPerSec,
    baseGets: base.getsPerSec,
    baseWrites: base.writesPerSec,
    reclaimedMB: result.bytesReclaimed / 1e6,
  });
  if (db.check().problems.length > 0) throw new Error('check failed after compaction');
  await db.close();
  fs.rmSync(dir, { recursive: true, force: true });
  process.stderr.write(`round ${r + 1}/${rounds} done\n`);
}
const med = (k: string) => {
  const xs = rows.map((x) => x[k]).sort((a, b) => a - b);
  return { m: xs[xs.length >> 1], lo: xs[0], hi: xs[xs.length - 1] };
};
const f = (k: string, d = 2) => {
  const { m, lo, hi } = med(k);
  return rows.length > 1 ? `${m.toFixed(d)} (${lo.toFixed(d)}–${hi.toFixed(d)})` : m.toFixed(d);
};
console.log(`online compaction, ${N} keys × (16 + ${VALUE_BYTES}) B (logical ${(logical / 1e6).toFixed(1)} MB), every key overwritten once; ${rounds} round(s), load ${os.loadavg()[0].toFixed(1)}`);
console.log('| measure | median (min–max) |');
console.log('|---|---:|');
console.log(`| allocated ÷ logical before compaction | ${f('ampBefore')} |`);
console.log(`| allocated ÷ logical after compaction | ${f('ampAfter')} |`);
console.log(`| compaction time (s) | ${f('compactSec', 1)} |`);
console.log(`| gets/s during compaction ÷ baseline | ${f('getRatio')} |`);
console.log(`| durable writes/s during compaction ÷ baseline | ${f('writeRatio')} |`);
console.log(`| baseline gets/s, writes/s (concurrent) | ${f('baseGets', 0)}, ${f('baseWrites', 0)} |`);
