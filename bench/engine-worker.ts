// Runs every engine workload against one engine in this process and prints one JSON line.
// Started by engine.bench.ts, one process per engine per round, so heaps and caches never mix.
//
//   tsx bench/engine-worker.ts ENGINE DIR KEYS
//
// Workloads (after ../shared/anchors/embedded.md): 16-byte keys, 100-byte incompressible values.
//  loadSorted   keys/s, 1000 keys per durable transaction, ascending keys (laid out in key order
//               in memory, as a sorted source produces them); loadSortedScattered the same keys
//               scattered over the heap (sorted after they were made)
//  loadRandom   keys/s, same into a fresh store in random order; then size after load; the
//               longest event-loop turn during it (and during the deferred checkpoint after it)
//  get          random point gets on the loaded store, warm (tinybench)
//  scan         1000-key range scans from random start keys (tinybench)
//  commit1      durable single-key commits, one at a time, 2 s after 1 s untimed
//  group100     durable transactions of 100 writes, the same
//  overwrite    every key rewritten once in random order (1000 per txn); size after; compacted size
//  large        1 MiB values: load 32, then random gets (MB/s)
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Bench } from 'tinybench';
import { openEngine, type Engine } from './adapters.js';
import { isFloorEngine, runFloor } from './floor.js';
import { makeKey } from './keys.js';

const [engineName, dir, keysArg, only] = process.argv.slice(2);
const N = Number(keysArg);
// Timing of the commit workloads, shared with the device's floor below.
const commitWarmupMs = Number(process.env.BENCH_COMMIT_WARMUP_MS ?? 1000);
const commitBudgetMs = 2000;

if (isFloorEngine(engineName)) {
  // Not an engine: the disk's own rate for single commits, in C (floor.ts), nothing else; and
  // only when the commit workloads run.
  const row = only === undefined || only.split(',').includes('commit') ? runFloor(engineName, dir, commitWarmupMs, commitBudgetMs) : {};
  process.stdout.write(`${JSON.stringify({ engine: engineName, keys: N, ...row })}\n`);
  process.exit(0);
}
const BATCH = 1000;
const VALUE_BYTES = 100;

const keys: Buffer[] = Array.from({ length: N }, (_, i) => makeKey(i));
// Sorting the keys made in index order leaves consecutive keys far apart on the heap, and the
// first touch of each then costs an engine 1–2.4 µs (bench/RESULTS.md round 12: lmdb loads them at
// 313–358k keys/s, and the same keys copied in key order at 510–549k; the anchors' 511k is that).
// A sorted source (a file, another store's range) hands keys over in order, fresh: copied here.
const sortedScattered = [...keys].sort(Buffer.compare);
const sortedKeys = sortedScattered.map((k) => Buffer.from(k));
const values: Buffer = crypto.randomBytes(VALUE_BYTES * 1024);
const valueFor = (i: number) => values.subarray((i % 1000) * 100, (i % 1000) * 100 + VALUE_BYTES);
let seed = 42;
const rnd = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
function shuffled<T>(a: T[]): T[] {
  const b = [...a];
  for (let i = b.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [b[i], b[j]] = [b[j], b[i]];
  }
  return b;
}

/**
 * A full GC before each measured workload (the worker runs with --expose-gc). V8 paces marking by
 * allocation, so garbage the bench itself left (making, copying and sorting millions of keys) was
 * otherwise collected during the next workload, by whichever engine allocates most: in a harness
 * holding as many keys as this one, a sorted load of ours ran at 263k keys/s without it and 324k
 * with it, lmdb's at 522k and 498k (bench/RESULTS.md round 13).
 */
function settleHeap(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

async function load(e: Engine, order: Buffer[]): Promise<number> {
  const t = performance.now();
  for (let i = 0; i < order.length; i += BATCH) {
    const pairs: Array<[Buffer, Buffer]> = [];
    for (let j = i; j < Math.min(i + BATCH, order.length); j++) pairs.push([order[j], valueFor(j)]);
    await e.batch(pairs);
  }
  return order.length / ((performance.now() - t) / 1000);
}

// Runs fn untimed for warmupMs first, as tinybench's warmup does for gets and scans. Commits get
// 1 s (BENCH_COMMIT_WARMUP_MS to change it, 0 for none) for every engine: right after a load and the
// bench's full GC, every step of Solifuge's commit measured 2-5x its later time for ~0.5 s (V8's
// background threads taking the CPUs, first touches of the store; bench/RESULTS.md round 20).
async function timed(fn: () => Promise<unknown>, budgetMs: number, warmupMs: number): Promise<{ opsPerSec: number; p50us: number; p99us: number; maxUs: number }> {
  const w0 = performance.now();
  while (performance.now() - w0 < warmupMs) await fn();
  const lat: number[] = [];
  const t0 = performance.now();
  while (performance.now() - t0 < budgetMs) {
    const t = performance.now();
    await fn();
    lat.push((performance.now() - t) * 1000);
  }
  lat.sort((a, b) => a - b);
  return { opsPerSec: lat.length / ((performance.now() - t0) / 1000), p50us: lat[lat.length >> 1], p99us: lat[Math.floor(lat.length * 0.99)], maxUs: lat[lat.length - 1] };
}

const out: Record<string, number> = {};
const logical = N * (16 + VALUE_BYTES);
const want = (w: string) => only === undefined || only.split(',').includes(w);

{
  // 1. sorted load into a fresh store
  const e = await openEngine(engineName, path.join(dir, 'sorted'));
  settleHeap();
  out.loadSorted = await load(e, sortedKeys);
  out.sizeSortedMB = e.diskBytes() / 1e6;
  await e.close();
  fs.rmSync(path.join(dir, 'sorted'), { recursive: true, force: true });
  const s = await openEngine(engineName, path.join(dir, 'sorted-scattered'));
  settleHeap();
  out.loadSortedScattered = await load(s, sortedScattered);
  await s.close();
  fs.rmSync(path.join(dir, 'sorted-scattered'), { recursive: true, force: true });
  sortedScattered.length = 0;
}

/**
 * The longest gap between ticks of a 1 ms timer while `fn` runs: how long the engine held the
 * event loop in one piece (a server's timers, sockets and lease renewals wait that long).
 */
async function longestTurnMs(fn: () => Promise<void>): Promise<number> {
  let last = performance.now();
  let longest = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    longest = Math.max(longest, now - last);
    last = now;
  }, 1);
  try {
    await fn();
  } finally {
    clearInterval(timer);
  }
  return Math.max(longest, performance.now() - last);
}

const e = await openEngine(engineName, path.join(dir, 'random'));
const randomOrder = shuffled(keys); // outside the turn measured: shuffling 1M keys is the bench's own work
settleHeap();
out.loadRandomMaxTurnMs = await longestTurnMs(async () => {
  out.loadRandom = await load(e, randomOrder);
});
out.sizeRandomMB = e.diskBytes() / 1e6;
out.ampRandom = (out.sizeRandomMB * 1e6) / logical;
if (e.settle !== undefined) {
  // Not part of the load figure, reported beside it: a server would do this in its first idle
  // second (checkpointIdleMs); reads then run against the settled store.
  const settle = e.settle.bind(e);
  settleHeap();
  const t0 = performance.now();
  out.settleMaxTurnMs = await longestTurnMs(settle);
  out.settleS = (performance.now() - t0) / 1000;
}

if (want('get')) {
  const probe = shuffled(keys).slice(0, 100_000);
  settleHeap();
  let i = 0;
  const bench = new Bench({ time: 1500, warmup: true, warmupTime: 300 });
  const sync = e.get(probe[0]) instanceof Promise === false;
  if (sync) {
    bench.add('get', () => {
      const v = e.get(probe[i++ % probe.length]);
      if (v === undefined) throw new Error('missing key');
    });
  } else {
    bench.add('get', async () => {
      const v = await e.get(probe[i++ % probe.length]);
      if (v === undefined) throw new Error('missing key');
    });
  }
  await bench.run();
  const r = bench.tasks[0].result;
  if (r.state !== 'completed') throw new Error(`get benchmark ${r.state}`);
  out.get = r.throughput.mean;
  out.getP50us = r.latency.p50 * 1000;
  out.getP99us = r.latency.p99 * 1000;
}

if (want('scan')) {
  const starts = shuffled(sortedKeys.slice(0, Math.max(1, N - 1000))).slice(0, 10_000);
  settleHeap();
  let i = 0;
  const bench = new Bench({ time: 1500, warmup: true, warmupTime: 300 });
  bench.add('scan', async () => {
    const n = await e.scan(starts[i++ % starts.length], 1000);
    if (n !== 1000) throw new Error(`scan returned ${n}`);
  });
  await bench.run();
  const r = bench.tasks[0].result;
  if (r.state !== 'completed') throw new Error(`scan benchmark ${r.state}`);
  out.scan = r.throughput.mean;
}

if (want('commit')) {
  settleHeap();
  let i = 0;
  // Once the commits wrap around the keys, each pass writes other values than the last: with N a
  // multiple of 1,000, valueFor(i) alone gave a key the value it already had, and better-sqlite3
  // then committed without writing (105.7k commits/s, p50 4.5 µs, at 20k keys; round 34).
  const changed = (i: number) => valueFor(i + Math.floor(i / N));
  const r1 = await timed(() => e.put(keys[i++ % N], changed(i)), commitBudgetMs, commitWarmupMs);
  out.commit1 = r1.opsPerSec;
  out.commit1P50us = r1.p50us;
  out.commit1P99us = r1.p99us;
  const r100 = await timed(() => {
    const pairs: Array<[Buffer, Buffer]> = [];
    for (let j = 0; j < 100; j++) pairs.push([keys[i++ % N], changed(i)]);
    return e.batch(pairs);
  }, commitBudgetMs, commitWarmupMs);
  out.group100 = r100.opsPerSec * 100;
  out.group100P50us = r100.p50us;
  out.group100P99us = r100.p99us;
  // The longest commit in the window: a checkpoint or compaction that holds writes back shows here.
  out.group100MaxMs = r100.maxUs / 1000;
}

if (want('overwrite')) {
  const overwriteOrder = shuffled(keys);
  settleHeap();
  out.overwrite = await load(e, overwriteOrder);
  out.sizeOverwriteMB = e.diskBytes() / 1e6;
  out.ampOverwrite = (out.sizeOverwriteMB * 1e6) / logical;
  if (e.compact !== undefined) {
    const t = performance.now();
    out.sizeCompactedMB = (await e.compact()) / 1e6;
    out.ampCompacted = (out.sizeCompactedMB * 1e6) / logical;
    out.compactSec = (performance.now() - t) / 1000;
  }
}
await e.close();
fs.rmSync(path.join(dir, 'random'), { recursive: true, force: true });

if (want('large')) {
  const big = await openEngine(engineName, path.join(dir, 'large'));
  const count = 32;
  const mib = crypto.randomBytes(1 << 20);
  for (let i = 0; i < count; i++) await big.batch([[makeKey(i), mib]]);
  settleHeap();
  let i = 0;
  const r = await timed(async () => {
    const v = await big.get(makeKey(i++ % count));
    if (v === undefined || v.length !== 1 << 20) throw new Error('bad large value');
  }, 1500, 0);
  out.largeGetMBps = (r.opsPerSec * (1 << 20)) / 1e6;
  await big.close();
  fs.rmSync(path.join(dir, 'large'), { recursive: true, force: true });
}

out.peakRssMB = process.resourceUsage().maxRSS / 1024;
process.stdout.write(`${JSON.stringify({ engine: engineName, keys: N, ...out })}\n`);
