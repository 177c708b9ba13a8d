// Side-by-side engine benchmark: Solifuge against lmdb, classic-level and better-sqlite3.
//
//   npm run bench:setup            once: installs the anchors into bench/node_modules
//   npm run bench -- [--keys N] [--rounds R] [--engines a,b] [--only get,scan] [--out FILE]
//                    [--node-flags "..."] [--pause-ms MS]
//                                  (--out also writes FILE.rounds.json: every engine's figures per round)
//   npm run bench:quick            100k keys, 3 rounds
//   npm run bench:commits          durable commits only, against better-sqlite3 and the device's
//                                  floor (floor.c as engines `floor`, `floor-awake`), 5 rounds
//
// Every worker runs with `--node-flags` (none by default), except an engine named
// `name@v8defaults` (e.g. `solifuge@v8defaults`), for an A/B of V8 settings in one run (round 24:
// `--node-flags=--max-semi-space-size=128`, the README's "Running it under heavy writes").
//
// Every round runs each engine in its own process (engine-worker.ts), in rotated order, and the
// report gives the median over rounds with min–max, plus per-round ratios to lmdb (median), as
// ../shared/anchors/embedded.md does. Absolute figures on this shared machine are noisy: compare
// ratios measured in the same run. `--pause-ms` waits that long after each worker, before the
// next starts (0 by default), to see whether one engine's run slows the next (round 31).
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { isFloorEngine } from './floor.js';

const { values } = parseArgs({
  options: {
    keys: { type: 'string' },
    rounds: { type: 'string' },
    engines: { type: 'string' },
    out: { type: 'string' },
    // Workloads after the two loads (engine-worker.ts names: get, scan, commit, overwrite, large).
    only: { type: 'string' },
    quick: { type: 'boolean' },
    'node-flags': { type: 'string' },
    'pause-ms': { type: 'string' },
  },
});
const pauseMs = Number(values['pause-ms'] ?? 0);
/** V8 flags for every engine's worker but the @v8defaults ones (the same for every engine). */
const nodeFlags = (values['node-flags'] ?? '').split(' ').filter((f) => f !== '');
/** An engine spec: the adapter's name, and whether its worker runs without `nodeFlags`. */
const V8_DEFAULTS_SUFFIX = '@v8defaults';
const onV8Defaults = (spec: string) => spec.endsWith(V8_DEFAULTS_SUFFIX);
const engineOf = (spec: string) => onV8Defaults(spec) ? spec.slice(0, -V8_DEFAULTS_SUFFIX.length) : spec;
const flagsOf = (spec: string) => onV8Defaults(spec) ? [] : nodeFlags;
const quick = values.quick === true;
const keys = Number(values.keys ?? (quick ? 100_000 : 1_000_000));
const rounds = Number(values.rounds ?? 3);
// floor-awake is not an engine: the disk's own rate for durable single commits (floor.c), so that
// the single-commit goal can be read against what the device allows in the same run (round 34).
const engines = (values.engines ?? 'solifuge,lmdb,classic-level,better-sqlite3,floor-awake').split(',');
const worker = fileURLToPath(new URL('./engine-worker.ts', import.meta.url));
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'solifuge-bench-'));

type Row = Record<string, number>;
const results = new Map<string, Row[]>();
const loads: number[] = [];
const t0 = Date.now();
for (let r = 0; r < rounds; r++) {
  const order = engines.map((_, i) => engines[(i + r) % engines.length]);
  for (const e of order) {
    const dir = path.join(scratch, `${e}-${r}`);
    const p = spawnSync(process.execPath, [...flagsOf(e), '--import', 'tsx', '--expose-gc', worker, engineOf(e), dir, String(keys), ...(values.only === undefined ? [] : [values.only])], {
      encoding: 'utf8',
      maxBuffer: 1 << 24,
    });
    fs.rmSync(dir, { recursive: true, force: true });
    if (pauseMs > 0) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, pauseMs);
    if (p.status !== 0) {
      process.stderr.write(`${e} round ${r} failed:\n${p.stderr}\n`);
      continue;
    }
    const line = p.stdout.trim().split('\n').pop() as string;
    const row = JSON.parse(line) as Row;
    (results.get(e) ?? results.set(e, []).get(e) as Row[]).push(row);
    loads.push(os.loadavg()[0]);
    process.stderr.write(`round ${r + 1}/${rounds} ${e} done\n`);
  }
}
fs.rmSync(scratch, { recursive: true, force: true });

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const fmt = (x: number) => {
  if (!Number.isFinite(x)) return '—';
  if (Math.abs(x) >= 1e6) return `${(x / 1e6).toFixed(2)}M`;
  if (Math.abs(x) >= 1e4) return `${(x / 1e3).toFixed(1)}k`;
  if (Math.abs(x) >= 100) return x.toFixed(0);
  if (Math.abs(x) >= 10) return x.toFixed(1);
  return x.toFixed(2);
};
const metrics: Array<[string, string, 'higher' | 'lower']> = [
  ['loadSorted', '1. Bulk load, sorted, 1000/txn (keys/s)', 'higher'],
  ['loadSortedScattered', '   the same keys scattered over the heap (keys/s)', 'higher'],
  ['loadRandom', '1. Bulk load, random order, 1000/txn (keys/s)', 'higher'],
  ['loadRandomMaxTurnMs', '   longest event-loop turn during the random load (ms)', 'lower'],
  ['settleS', '   then the deferred checkpoint, not in the load figure (s)', 'lower'],
  ['settleMaxTurnMs', '   longest event-loop turn during that checkpoint (ms)', 'lower'],
  ['get', '2. Random get, warm (ops/s)', 'higher'],
  ['getP50us', '   get p50 (µs)', 'lower'],
  ['getP99us', '   get p99 (µs)', 'lower'],
  ['commit1', '3. Durable single-key commit (commits/s)', 'higher'],
  ['commit1P50us', '   commit p50 (µs)', 'lower'],
  ['commit1P99us', '   commit p99 (µs)', 'lower'],
  ['group100', '3. Group commit, 100 writes/durable txn (writes/s)', 'higher'],
  ['group100P50us', '   group p50 (µs)', 'lower'],
  ['group100P99us', '   group p99 (µs)', 'lower'],
  ['group100MaxMs', '   longest group commit (ms)', 'lower'],
  ['scan', '4. Range scan, 1000 keys (scans/s)', 'higher'],
  ['largeGetMBps', '5. 1 MiB value get (MB/s)', 'higher'],
  ['overwrite', '6. Overwrite every key, random order (keys/s)', 'higher'],
  ['sizeSortedMB', '6. Size after sorted load (MB)', 'lower'],
  ['sizeRandomMB', '6. Size after random load (MB)', 'lower'],
  ['ampRandom', '   × logical after random load', 'lower'],
  ['sizeOverwriteMB', '6. Size after overwriting every key (MB)', 'lower'],
  ['ampOverwrite', '   × logical after overwrite', 'lower'],
  ['ampCompacted', '   × logical after overwrite + offline compaction', 'lower'],
  ['compactSec', '   offline compaction time (s)', 'lower'],
  ['peakRssMB', 'Peak resident memory of the worker (MB)', 'lower'],
];
const present = engines.filter((e) => results.has(e));
const lines: string[] = [];
lines.push(`Keys: ${keys} × 16 B + 100 B values (logical ${((keys * 116) / 1e6).toFixed(1)} MB), ${rounds} round(s), one process per engine per round, rotated order.`);
lines.push(`Node ${process.version}, ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}; load average while engines ran: median ${median(loads).toFixed(1)}, max ${Math.max(...loads).toFixed(1)}. Run time ${((Date.now() - t0) / 60000).toFixed(1)} min.`);
lines.push(`Workers ran with ${nodeFlags.length === 0 ? 'no node flags' : `\`${nodeFlags.join(' ')}\``}${engines.some(onV8Defaults) ? ` (those named ${V8_DEFAULTS_SUFFIX}: without)` : ''}.${pauseMs > 0 ? ` A pause of ${pauseMs} ms after each worker.` : ''}`);
lines.push('');
lines.push(`| workload | ${present.join(' | ')} |`);
lines.push(`|---|${present.map(() => '---:').join('|')}|`);
for (const [m, label] of metrics) {
  const cells = present.map((e) => {
    const xs = (results.get(e) ?? []).map((r) => r[m]).filter((x) => x !== undefined && Number.isFinite(x));
    if (xs.length === 0) return '—';
    return xs.length > 1 ? `${fmt(median(xs))} (${fmt(Math.min(...xs))}–${fmt(Math.max(...xs))})` : fmt(xs[0]);
  });
  if (cells.every((c) => c === '—')) continue;
  lines.push(`| ${label} | ${cells.join(' | ')} |`);
}
/** `metric` of engine `a` over engine `b`, round by round (round r of each ran in the same rotation). */
function perRoundRatios(a: string, b: string, metric: string): number[] {
  const s = results.get(a) ?? [];
  const o = results.get(b) ?? [];
  const ratios: number[] = [];
  for (let i = 0; i < Math.min(s.length, o.length); i++) if (s[i][metric] !== undefined && o[i][metric]) ratios.push(s[i][metric] / o[i][metric]);
  return ratios;
}
// Solifuge against each anchor run the same way (with the node flags, or both @v8defaults).
for (const ours of ['solifuge', `solifuge${V8_DEFAULTS_SUFFIX}`].filter((x) => present.includes(x))) {
  const anchors = present.filter((e) => engineOf(e) !== 'solifuge' && onV8Defaults(e) === onV8Defaults(ours));
  if (anchors.length === 0) continue;
  lines.push('');
  lines.push(`Ratios, ${ours} ÷ anchor (median of per-round ratios; >1 = Solifuge faster, or bigger for sizes):`);
  lines.push('');
  lines.push(`| workload | ${anchors.map((a) => `÷ ${a}`).join(' | ')} |`);
  lines.push(`|---|${anchors.map(() => '---:').join('|')}|`);
  for (const [m, label] of metrics) {
    if (m.endsWith('us') || m.endsWith('TurnMs') || m === 'compactSec' || m === 'ampCompacted' || m === 'peakRssMB') continue;
    const cells = anchors.map((a) => {
      const ratios = perRoundRatios(ours, a, m);
      return ratios.length === 0 ? '—' : `${median(ratios).toFixed(2)}×`;
    });
    if (cells.every((c) => c === '—')) continue;
    lines.push(`| ${label} | ${cells.join(' | ')} |`);
  }
}
// The most any store that makes each commit durable before the next could reach against
// better-sqlite3 on this day's disk: the floor's rate over better-sqlite3's, round by round.
for (const floor of present.filter(isFloorEngine)) {
  const ratios = perRoundRatios(floor, 'better-sqlite3', 'commit1');
  if (ratios.length === 0) continue;
  lines.push('');
  const what = floor === 'floor-awake'
    ? 'no CPU halting: the most any store that makes each commit durable before the next can reach here'
    : 'a plain blocking loop';
  lines.push(`The device's floor for durable single commits (${floor}, bench/floor.c: one pwrite and one fdatasync a commit, ${what}) ÷ better-sqlite3: ${median(ratios).toFixed(2)}× (per round ${ratios.map((r) => r.toFixed(2)).join(', ')}).`);
}
const report = lines.join('\n');
process.stdout.write(`${report}\n`);
if (values.out !== undefined) {
  fs.writeFileSync(values.out, `${report}\n`);
  // The per-round figures behind the medians, for ratios a report does not show (round r of each
  // engine ran in the same rotation).
  fs.writeFileSync(`${values.out}.rounds.json`, `${JSON.stringify({ keys, rounds, results: Object.fromEntries(results) }, null, 1)}\n`);
}
