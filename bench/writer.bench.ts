// Would the writer's leaves kept in WebAssembly memory beat decoded JS leaves, for overwrites?
//
//   npm run build:ts && npx tsx bench/writer.bench.ts [--rounds 3] [--writes 3000000]
//
// The engine issue asks to measure whether nodes kept in WASM memory beat decoding into JS
// objects, and to keep the faster; descent.bench.ts and bench/RESULTS.md round 6 answered it for
// reads. This answers it for the writer's hot path: random overwrites of 100-byte values at 1M
// keys (the bench's group commits), on one real store (16-byte bench keys, random-order load of
// 1,000-key transactions, then reopened: every node on disk and, after one get per key, in the
// WASM cache). Each mode runs in its own process, modes alternating, `--rounds` times:
//
//   get            db.get, for reference (a WASM descent and the value copied out).
//   js             the engine's writer (TreeWriter.set, what a transaction's commit runs), with the
//                  key and value turned into binary strings as the store does: copy-on-write into
//                  decoded JS leaves, each value a fresh heap string the leaf keeps.
//   js-prebuilt    the same with keys and values converted beforehand and values shared: the tree
//                  work alone, without the conversions and without fresh strings surviving.
//   wasm-inplace   the WASM cache's descent, then the value's bytes written over the record in the
//                  cache's own node layout. A lower bound for a writer keeping leaves there: no
//                  copy-on-write (one leaf copy per ~35 writes at 1M keys and the default
//                  checkpoint interval), journal or dirty tracking. It changes the cache only.
//
// Reports ns per write, median over windows of 250k writes from the fifth on (the first ones
// include the writer's first touch of every leaf), then the median over rounds. GC is inside.
// Reaches into the store's internals (the writer, the cache's exports): a measurement, not an API.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { open, type Db } from '../dist/index.js';
import { TreeWriter } from '../dist/engine/tree.js';
import { inlineValueAt, toBinKey } from '../dist/engine/keys.js';
import type { DiskRef, LeafValue } from '../dist/engine/node.js';
import type { BinKey } from '../dist/engine/keys.js';
import { makeKey } from './keys.js';

const N = 1_000_000;
const VALUE_BYTES = 100;
const WINDOW = 250_000;
const MODES = ['get', 'js', 'js-prebuilt', 'wasm-inplace'] as const;
type Mode = (typeof MODES)[number];

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : fallback;
}

// The bench's keys in the bench's random order (engine-worker.ts uses the same generator).
let seed = 42;
const rnd = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
const keys = Array.from({ length: N }, (_, i) => makeKey(i));
for (let i = N - 1; i > 0; i--) {
  const j = Math.floor(rnd() * (i + 1));
  [keys[i], keys[j]] = [keys[j], keys[i]];
}
const values = randomBytes(VALUE_BYTES * 1000);
const valueFor = (i: number) => values.subarray((i % 1000) * VALUE_BYTES, (i % 1000) * VALUE_BYTES + VALUE_BYTES);
/** The i-th write's key: a fixed permutation (7919 is prime to N), so every key is overwritten alike. */
const keyFor = (i: number) => (i * 7919) % N;

/** What this reaches inside the store (private fields, read for this measurement only). */
interface Internals {
  published: { root: DiskRef };
  gen: number;
  cache: {
    load(ref: DiskRef): unknown;
    fast: { ex: { cacheFind(pos: number, len: number, probeLen: number): number }; u8: Uint8Array; mem: Buffer; probe: number; result: number };
  };
}

async function build(file: string): Promise<void> {
  const db = await open(file, { durable: false });
  for (let b = 0; b < N; b += 1000) {
    await db.transaction((tx) => {
      for (let i = b; i < b + 1000; i++) tx.set(keys[i], valueFor(i));
    });
  }
  await db.close();
}

/** One mode in this process: ns per write for each window. */
async function measure(file: string, mode: Mode, writes: number): Promise<number[]> {
  const db: Db = await open(file, { durable: false, checkpointIdleMs: 0 });
  for (let i = 0; i < N; i++) if (db.get(keys[i]) === undefined) throw new Error('a loaded key is missing');
  const inner = db as unknown as Internals;
  const root = inner.published.root;
  const { ex, u8, mem, probe, result } = inner.cache.fast;
  const writer = new TreeWriter(inner.cache as never, { root, count: db.count() }, inner.gen + 1, 4096);
  const binKeys: BinKey[] = mode === 'js-prebuilt' ? keys.map((k) => toBinKey(k)) : [];
  const sharedVals: LeafValue[] = Array.from({ length: 1000 }, (_, i) => inlineValueAt(valueFor(i), 0, VALUE_BYTES));
  const one = (i: number): void => {
    switch (mode) {
      case 'get':
        if (db.get(keys[keyFor(i)]) === undefined) throw new Error('missing');
        return;
      case 'js':
        writer.set(toBinKey(keys[keyFor(i)]), inlineValueAt(valueFor(i), 0, VALUE_BYTES));
        return;
      case 'js-prebuilt':
        writer.set(binKeys[keyFor(i)], sharedVals[i % 1000]);
        return;
      case 'wasm-inplace': {
        u8.set(keys[keyFor(i)], probe);
        const found = ex.cacheFind(root.pos, root.len, 16);
        if (found !== 1) throw new Error(`the cache's find returned ${found}, not an inline value`);
        u8.set(valueFor(i), mem.readUInt32LE(result));
        return;
      }
    }
  };
  const nsPerWrite: number[] = [];
  for (let s = 0; s < writes; s += WINDOW) {
    const t0 = performance.now();
    for (let i = s; i < s + WINDOW; i++) one(i);
    nsPerWrite.push(((performance.now() - t0) * 1e6) / WINDOW);
  }
  if (mode === 'js') {
    // The writer really wrote: its tree holds the last value written for a key.
    const last = writes - 1;
    const k = toBinKey(keys[keyFor(last)]);
    let c: unknown = writer.root;
    for (;;) {
      const n = c as { t: number; keys: string[]; kids?: unknown[]; vals?: LeafValue[] };
      if (n.t === 0) c = inner.cache.load(c as DiskRef);
      else if (n.t === 2) c = n.kids![upper(n.keys, k)];
      else {
        const j = n.keys.indexOf(k);
        if (n.vals![j] !== inlineValueAt(valueFor(last), 0, VALUE_BYTES)) throw new Error('the writer lost a write');
        break;
      }
    }
  }
  return nsPerWrite;
}

function upper(ks: string[], k: string): number {
  let i = 0;
  while (i < ks.length && ks[i] <= k) i++;
  return i;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

if (process.argv[2] === '--child') {
  const windows = await measure(process.argv[3], process.argv[4] as Mode, Number(process.argv[5]));
  process.stdout.write(JSON.stringify(windows));
  process.exit(0);
}

const rounds = Number(arg('--rounds', '3'));
const writes = Number(arg('--writes', '3000000'));
const dir = mkdtempSync(join(tmpdir(), 'solifuge-writer-'));
const file = join(dir, 'store.db');
try {
  await build(file);
  const self = fileURLToPath(import.meta.url);
  const steady: Record<Mode, number[]> = { get: [], js: [], 'js-prebuilt': [], 'wasm-inplace': [] };
  for (let r = 0; r < rounds; r++) {
    for (const mode of MODES) {
      const out = execFileSync(process.execPath, [...process.execArgv, self, '--child', file, mode, String(writes)], { encoding: 'utf8', maxBuffer: 1 << 20 });
      const windows = JSON.parse(out) as number[];
      const m = median(windows.slice(4));
      steady[mode].push(m);
      console.log(`round ${r + 1} ${mode.padEnd(13)} ${Math.round(m)} ns/write (windows: ${windows.map(Math.round).join(' ')})`);
    }
  }
  console.log('\nmode           ns/write (median of rounds; each round: median of windows 5 on)');
  for (const mode of MODES) console.log(`${mode.padEnd(14)} ${Math.round(median(steady[mode]))}   [${steady[mode].map(Math.round).join(', ')}]`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
