// Does a node cache in WebAssembly memory beat decoded JS nodes for lookups?
//
//   npx tsx bench/descent.bench.ts [--keys N]
//
// Builds the same B+tree twice over N random 16-byte keys (leaves of 32 keys, index nodes of
// 128 children, the shape the engine's 4 KiB nodes give): once as JS objects with binary-string
// keys (what src/engine/tree.ts does today), once laid out in linear memory for asm/descent.ts,
// which descends the whole tree in one call. Both follow direct child references (the engine
// adds a Map lookup per on-disk child in JS; a WASM cache would add a hash probe).
// Reports lookups/s, median of 5 tinybench rounds, for probes given as Buffers and as strings.
import { Bench } from 'tinybench';
import { core } from '../dist/wasm/module.js';
import { cmpStrBuf, makeKey } from './keys.js';
import { upperBound } from '../dist/engine/tree.js';

const argKeys = process.argv.indexOf('--keys');
const N = argKeys > 0 ? Number(process.argv[argKeys + 1]) : 1_000_000;
const LEAF = 32;
const FANOUT = 128;

const keys = Array.from({ length: N }, (_, i) => makeKey(i)).sort(Buffer.compare);

// --- JS tree ------------------------------------------------------------------------------------
interface JsNode { leaf: boolean; keys: string[]; kids: JsNode[] }
const upper = upperBound; // the engine's own in-node search
let level: Array<{ node: JsNode; first: string }> = [];
for (let i = 0; i < N; i += LEAF) {
  const ks = keys.slice(i, i + LEAF).map((k) => k.toString('latin1'));
  level.push({ node: { leaf: true, keys: ks, kids: [] }, first: ks[0] });
}
while (level.length > 1) {
  const up: typeof level = [];
  for (let i = 0; i < level.length; i += FANOUT) {
    const group = level.slice(i, i + FANOUT);
    up.push({ node: { leaf: false, keys: group.slice(1).map((g) => g.first), kids: group.map((g) => g.node) }, first: group[0].first });
  }
  level = up;
}
const jsRoot = level[0].node;
function upperBuf(ks: string[], p: Buffer): number {
  let lo = 0;
  let hi = ks.length;
  while (lo < hi) {
    const m = (lo + hi) >>> 1;
    if (cmpStrBuf(ks[m], p) <= 0) lo = m + 1;
    else hi = m;
  }
  return lo;
}
function jsFindBuf(p: Buffer): number {
  let n = jsRoot;
  while (!n.leaf) n = n.kids[upperBuf(n.keys, p)];
  const i = upperBuf(n.keys, p) - 1;
  return i >= 0 && cmpStrBuf(n.keys[i], p) === 0 ? i : -1;
}
function jsFind(p: string): number {
  let n = jsRoot;
  while (!n.leaf) n = n.kids[upper(n.keys, p)];
  const i = upper(n.keys, p) - 1;
  return i >= 0 && n.keys[i] === p ? i : -1;
}

// --- WASM tree ----------------------------------------------------------------------------------
// Layout per asm/descent.ts; one arena allocated up front.
const leafCount = Math.ceil(N / LEAF);
let arenaBytes = N * (16 + 8) + leafCount * 16 + 64;
for (let n = leafCount; n > 1; n = Math.ceil(n / FANOUT)) arenaBytes += Math.ceil(n / FANOUT) * 16 + n * (16 + 8 + 4);
const arena = core.alloc(arenaBytes + 1024);
let at = arena;
const mem = () => new DataView(core.memory.buffer);
const u8 = () => new Uint8Array(core.memory.buffer);
function writeNode(kind: number, ks: Buffer[], kids: number[]): number {
  const dv = mem();
  const bytes = u8();
  const node = at;
  const dirBytes = 12 + ks.length * 8 + (kind === 1 ? (ks.length + 1) * 4 : 0);
  const keyBase = node + dirBytes;
  dv.setUint32(node, kind, true);
  dv.setUint32(node + 4, ks.length, true);
  dv.setUint32(node + 8, keyBase, true);
  let off = 0;
  ks.forEach((k, i) => {
    dv.setUint32(node + 12 + i * 8, off, true);
    dv.setUint32(node + 16 + i * 8, k.length, true);
    bytes.set(k, keyBase + off);
    off += k.length;
  });
  if (kind === 1) kids.forEach((c, i) => dv.setUint32(node + 12 + ks.length * 8 + i * 4, c, true));
  at = (keyBase + off + 7) & ~7;
  if (at > arena + arenaBytes + 1024) throw new Error('arena overflow');
  return node;
}
let wlevel: Array<{ ptr: number; first: Buffer }> = [];
for (let i = 0; i < N; i += LEAF) {
  const ks = keys.slice(i, i + LEAF);
  wlevel.push({ ptr: writeNode(0, ks, []), first: ks[0] });
}
while (wlevel.length > 1) {
  const up: typeof wlevel = [];
  for (let i = 0; i < wlevel.length; i += FANOUT) {
    const group = wlevel.slice(i, i + FANOUT);
    up.push({ ptr: writeNode(1, group.slice(1).map((g) => g.first), group.map((g) => g.ptr)), first: group[0].first });
  }
  wlevel = up;
}
const wasmRoot = wlevel[0].ptr;
const probePtr = core.alloc(64 * 1024);
let probeView = new Uint8Array(core.memory.buffer, probePtr, 64 * 1024);
function wasmFind(p: Buffer): number {
  if (probeView.buffer !== core.memory.buffer) probeView = new Uint8Array(core.memory.buffer, probePtr, 64 * 1024);
  probeView.set(p);
  return core.descendFind(wasmRoot, probePtr, p.length);
}

// --- check and measure --------------------------------------------------------------------------
let seed = 1;
const probes = Array.from({ length: 100_000 }, () => keys[(seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) % N]);
const probeStrings = probes.map((p) => p.toString('latin1'));
for (let i = 0; i < 1000; i++) {
  const a = jsFind(probeStrings[i]);
  const b = wasmFind(probes[i]);
  if (a < 0 || a !== b) throw new Error(`lookups disagree at ${i}: js ${a}, wasm ${b}`);
}
if (wasmFind(Buffer.from('not a key at all')) !== -1) throw new Error('wasm found a missing key');

const results = new Map<string, number[]>();
for (let round = 0; round < 5; round++) {
  const bench = new Bench({ time: 400, warmupTime: 100 });
  let i = 0;
  let sink = 0;
  bench
    .add('JS nodes, Buffer probe (toString latin1 + descent)', () => {
      sink += jsFind(probes[i++ % probes.length].toString('latin1'));
    })
    .add('JS nodes, Buffer probe compared in place (charCodeAt)', () => {
      sink += jsFindBuf(probes[i++ % probes.length]);
    })
    .add('JS nodes, string probe', () => {
      sink += jsFind(probeStrings[i++ % probes.length]);
    })
    .add('WASM nodes, Buffer probe (copy in + one call)', () => {
      sink += wasmFind(probes[i++ % probes.length]);
    });
  await bench.run();
  for (const t of bench.tasks) {
    if (t.result.state !== 'completed') throw new Error(`${t.name} ${t.result.state}`);
    (results.get(t.name) ?? results.set(t.name, []).get(t.name)!).push(t.result.throughput.mean);
  }
  if (sink === 42) console.log('');
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
console.log(`descent over ${N} keys, leaves of ${LEAF}, fan-out ${FANOUT}; median of 5 rounds`);
console.log('| lookup path | lookups/s | µs/lookup |');
console.log('|---|---:|---:|');
for (const [name, xs] of results) console.log(`| ${name} | ${(median(xs) / 1000).toFixed(0)}k | ${(1e6 / median(xs)).toFixed(3)} |`);
