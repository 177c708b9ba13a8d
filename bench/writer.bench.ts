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
//   wasm-writer    what a writer with its leaves in linear memory (asm/wleaf.ts) would run: JS
//                  index nodes (their keys' prefix numbers searched with the key's bytes, no key
//                  string), whose children are leaf handles; then the leaf: copied out of the cache
//                  into the dirty region on its first touch, set there with every change kept
//                  undoable as an in-place batch keeps it (an overwrite of the same length saves
//                  the old bytes in the undo area, other changes add a record; a journal of slot
//                  and where the old value is, emptied every 100 writes), rebuilt when full. Runs
//                  on a second instance holding the store's nodes, with a dirty region.
//   wasm-writer-unjournaled   the same, a value of the same length overwritten in place.
//   wasm-tree      the writer's whole tree in linear memory (asm/wtree.ts): one call per put,
//                  copying each clean node on its first touch, then changing it in place (nothing
//                  kept undoable). Same second instance.
//   wasm-tree-batches   the same in batches of 100, as the store's in-place batches run: each put
//                  changes the published tree in place, journaled (wtreePutInPlace); one that
//                  cannot seals the batch and copies on write; every 100 writes the batch
//                  publishes (the journal settles, or the sealed tree becomes the published one).
//
// Reports ns per write, median over windows of 250k writes from the fifth on (the first ones
// include the writer's first touch of every leaf), then the median over rounds. GC is inside.
//
// With `--checkpoint-every W` (a multiple of 250k; try 500000, about the store's interval in the
// bench's group commits, bench/RESULTS.md round 24), the js and wasm-tree-batches modes also write
// their tree's changed nodes every W writes, as the store's checkpoint does, to a copy of the store
// (its log: the slab appended after the last commit; the copy is deleted afterwards), timed
// outside the windows and reported per checkpoint in three parts:
//   js                 stage + encode (SlabBuilder.build: the dirty JS nodes staged into the core
//                      instance's plan, then asm/slab.ts), append, apply + cache (positions given,
//                      the written nodes parsed into the WASM cache: NodeCache.addWritten);
//   wasm-tree-batches  plan + encode (asm/wcheckpoint.ts wtreePlan, then slabEncode in the same
//                      instance), append, written (wtreeWritten: the tree refers to the written
//                      nodes by position, which the cache adopts).
// `--modes a,b` runs only those modes.
// Reaches into the store's internals (the writer, the cache's exports): a measurement, not an API.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { open, type Db } from '../dist/index.js';
import { TreeWriter } from '../dist/engine/tree.js';
import { SlabBuilder } from '../dist/engine/slab.js';
import { inlineValueAt, toBinKey } from '../dist/engine/keys.js';
import { keyPrefixAt, keyPrefixes, type DiskRef, type IndexNode, type LeafValue } from '../dist/engine/node.js';
import { instantiateCore } from '../dist/wasm/module.js';
import { addon } from '../dist/native/addon.js';
import type { BinKey } from '../dist/engine/keys.js';
import { cmpStrBuf, makeKey } from './keys.js';

const N = 1_000_000;
const VALUE_BYTES = 100;
const WINDOW = 250_000;
const MODES = ['get', 'js', 'js-prebuilt', 'wasm-inplace', 'wasm-writer', 'wasm-writer-unjournaled', 'wasm-tree', 'wasm-tree-batches'] as const;
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
  log: StoreLog;
  cache: {
    load(ref: DiskRef): unknown;
    addWritten(node: unknown, slab: Buffer, offset: number): void;
    log: StoreLog;
    fast: { ex: { cacheFind(pos: number, len: number, probeLen: number): number }; u8: Uint8Array; mem: Buffer; probe: number; result: number };
  };
}
interface StoreLog {
  end: number;
  read(pos: number, len: number): Buffer;
  writeAhead(buf: Buffer, len: number, offset: number): void;
  advance(len: number): void;
}

/** One checkpoint's parts, in ms, and the slab's bytes. */
interface CheckpointTimes {
  encodeMs: number;
  appendMs: number;
  settleMs: number;
  bytes: number;
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

/** One mode in this process: ns per write for each window, and its checkpoints (every `checkpointEvery` writes). */
async function measure(file: string, mode: Mode, writes: number, checkpointEvery: number): Promise<{ windows: number[]; checkpoints: CheckpointTimes[] }> {
  const db: Db = await open(file, { durable: false, checkpointIdleMs: 0 });
  for (let i = 0; i < N; i++) if (db.get(keys[i]) === undefined) throw new Error('a loaded key is missing');
  const inner = db as unknown as Internals;
  const root = inner.published.root;
  const { ex, u8, mem, probe, result } = inner.cache.fast;
  const writer = new TreeWriter(inner.cache as never, { root, count: db.count() }, inner.gen + 1, 4096);
  const binKeys: BinKey[] = mode === 'js-prebuilt' ? keys.map((k) => toBinKey(k)) : [];
  const sharedVals: LeafValue[] = Array.from({ length: 1000 }, (_, i) => inlineValueAt(valueFor(i), 0, VALUE_BYTES));
  const tree = mode === 'wasm-tree' || mode === 'wasm-tree-batches' ? wasmTree(inner, root, mode === 'wasm-tree-batches') : null;
  const ww = mode === 'wasm-writer' || mode === 'wasm-writer-unjournaled' ? wasmWriter(inner, root, mode === 'wasm-writer') : tree?.put ?? null;
  const checkpoint = checkpointEvery === 0 ? null
    : mode === 'js' ? jsCheckpoint(inner, writer)
    : mode === 'wasm-tree' || mode === 'wasm-tree-batches' ? tree!.checkpoint
    : null;
  if (checkpointEvery > 0 && checkpoint === null) throw new Error(`mode ${mode} makes no checkpoints`);
  const checkpoints: CheckpointTimes[] = [];
  const one = (i: number): void => {
    switch (mode) {
      case 'wasm-writer':
      case 'wasm-writer-unjournaled':
      case 'wasm-tree':
      case 'wasm-tree-batches':
        ww!(keys[keyFor(i)], valueFor(i));
        return;
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
    if (checkpoint !== null && (s + WINDOW) % checkpointEvery === 0) checkpoints.push(checkpoint());
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
  if (tree !== null) tree.expectLast(keys[keyFor(writes - 1)], valueFor(writes - 1));
  return { windows: nsPerWrite, checkpoints };
}

/** The js mode's checkpoint: what the store's runs, on the writer's tree (see the header). */
function jsCheckpoint(inner: Internals, writer: TreeWriter): () => CheckpointTimes {
  const builder = new SlabBuilder();
  return () => {
    const start = inner.log.end;
    const t0 = performance.now();
    const slab = builder.build({ actions: [], keyCount: null, tag: undefined, prev: null, start, checkpoint: { root: writer.root, keyCount: 0 } });
    const t1 = performance.now();
    inner.log.writeAhead(slab.bytes(), slab.len, 0);
    inner.log.advance(slab.len);
    const t2 = performance.now();
    const written = slab.apply() as Array<{ pos: number }>;
    const bytes = slab.bytes();
    for (const n of written) inner.cache.addWritten(n, bytes, n.pos - start);
    slab.release();
    const t3 = performance.now();
    return { encodeMs: t1 - t0, appendMs: t2 - t1, settleMs: t3 - t2, bytes: slab.len };
  };
}

/**
 * The wasm-* modes' instance: a second one, with a dirty region, holding every node of the store
 * in its cache, and advised for huge pages as the store advises its own (OpenOptions.hugePages).
 */
function secondInstance(inner: Internals, root: DiskRef) {
  const ex = instantiateCore();
  const start = ex.cacheInit(512 << 20, 1 << 20, 1 << 30) >>> 0;
  if (start === 0) throw new Error('no memory for the second instance');
  addon?.adviseHugePages?.(ex.memory.buffer, start, ex.memory.buffer.byteLength - start);
  const mem = Buffer.from(ex.memory.buffer);
  const input = ex.inputAddress() >>> 0;
  const ingest = (ref: DiskRef): void => {
    const node = inner.cache.load(ref) as { t: number; kids?: DiskRef[] };
    if (node.t === 2) for (const k of node.kids!) ingest(k);
    const entry = inner.cache.log.read(ref.pos, ref.len);
    mem.set(entry.subarray(9), input);
    if (ex.cacheIngest(ref.pos, ref.len, entry[8], ref.len - 9) !== 0) throw new Error('ingest failed');
  };
  ingest(root);
  return { ex, mem, probe: ex.probeAddress() >>> 0, input, result: ex.resultAddress() >>> 0 };
}

/**
 * The wasm-writer mode's put (see the header): a second instance with the store's nodes and a
 * dirty region; JS index nodes as the store decodes them; dirty leaves by their on-disk position.
 */
function wasmWriter(inner: Internals, root: DiskRef, undoable: boolean): (key: Buffer, value: Buffer) => void {
  const keepOld = undoable ? 1 : 0;
  const { ex, mem, probe, input, result } = secondInstance(inner, root);
  // The writer's tree as step 2 would hold it: JS index nodes whose children are index nodes or
  // leaf handles (the leaf's address in the dirty region once it has one).
  class LeafHandle {
    addr = 0;
    constructor(readonly pos: number) {}
  }
  class Index {
    constructor(readonly keys: string[], readonly pfx: Float64Array, readonly kids: Array<Index | LeafHandle>) {}
  }
  const shadow = (ref: DiskRef): Index | LeafHandle => {
    const node = inner.cache.load(ref) as IndexNode & { t: number };
    if (node.t !== 2) return new LeafHandle(ref.pos);
    return new Index(node.keys, keyPrefixes(node.keys), node.kids.map((k) => shadow(k as DiskRef)));
  };
  const top = shadow(root) as Index;
  const journal = new Int32Array(200);
  let journaled = 0;
  let writes = 0;
  return (key: Buffer, value: Buffer): void => {
    const kl = key.length;
    const pp = keyPrefixAt(key, 0, kl);
    let c: Index | LeafHandle = top;
    while (c instanceof Index) c = c.kids[upperBoundBuf(c.keys, c.pfx, key, pp)];
    let leaf = c.addr;
    if (leaf === 0) leaf = c.addr = ex.wleafRebuild(ex.cachedNode(c.pos), 0, 0, 1024) >>> 0;
    mem.set(key, probe);
    mem.set(value, input);
    let r = ex.wleafSet(leaf, kl, input, value.length, 0, 0, keepOld);
    if (r < 0) {
      // Full of records the journal no longer needs (it was emptied): compacted, with room.
      const next = ex.wleafRebuild(leaf, 1, kl, 1024) >>> 0;
      ex.wleafFree(leaf);
      leaf = c.addr = next;
      r = ex.wleafSet(leaf, kl, input, value.length, 0, 0, keepOld);
      if (r < 0) throw new Error('no room after a rebuild');
    }
    journal[journaled++] = mem.readUInt32LE(result + 4);
    journal[journaled++] = r === 1 || r === 3 ? mem.readUInt32LE(result) : -1;
    if (++writes % 100 === 0) {
      journaled = 0; // the batch settles
      ex.wleafUndoReset();
    }
  };
}

/**
 * The wasm-tree modes: every node of the store in a second instance's cache, puts by wtreePut (in
 * batches: wtreePutInPlace, sealing when it must); a checkpoint writes the published tree's dirty
 * nodes to the store's log (see the header). A node the cache no longer holds is read from there.
 */
function wasmTree(inner: Internals, root: DiskRef, batches: boolean) {
  const { ex, probe, input, result } = secondInstance(inner, root);
  let mem = Buffer.from(ex.memory.buffer);
  /** Runs a tree call, loading each clean node it misses (PUT_MISS: RESULT its position and length). */
  const withLoads = (call: () => number, key: Buffer, value: Buffer): number => {
    for (;;) {
      mem.set(key, probe);
      mem.set(value, input);
      const r = call();
      if (r !== 3) return r;
      const pos = mem.readDoubleLE(result);
      const len = mem.readUInt32LE(result + 8);
      const entry = inner.log.read(pos, len);
      mem.set(entry.subarray(9), input);
      if (ex.cacheIngest(pos, len, entry[8], len - 9) !== 0) throw new Error('ingest failed');
    }
  };
  /** The clean root while the tree has no dirty one. */
  let clean = { pos: root.pos, len: root.len };
  const cow = (addr: number, key: Buffer, value: Buffer): number => {
    const r = withLoads(() => ex.wtreePut(addr, clean.pos, clean.len, key.length, input, value.length, 0, 0, 4096), key, value);
    if (r !== 0) throw new Error(`wtreePut returned ${r}`);
    return mem.readUInt32LE(result);
  };
  let published = 0; // the published root (dirty), 0 while it is the clean one
  let own = 0; // the batch's own root once it sealed, 0 while it changes the published tree in place
  let sealed = false;
  let writes = 0;
  const put = (key: Buffer, value: Buffer): void => {
    if (!batches) {
      published = cow(published, key, value);
      return;
    }
    if (!sealed) {
      const r = published === 0 ? 5 : withLoads(() => ex.wtreePutInPlace(published, key.length, input, value.length, 0, 0, 4096), key, value);
      if (r !== 0) {
        if (r !== 5) throw new Error(`wtreePutInPlace returned ${r}`);
        sealed = true;
        if (published !== 0) {
          if (ex.wtreeSeal(published, 4096) !== 0) throw new Error('seal failed');
          own = mem.readUInt32LE(result);
        }
      }
    }
    if (sealed) own = cow(own, key, value);
    if (++writes % 100 === 0) {
      if (sealed) {
        if (published !== 0) ex.wtreeRelease(published);
        published = own;
        own = 0;
        sealed = false;
      } else ex.wtreeSettle();
    }
  };
  // The checkpoint's areas in the instance's memory (growing it: views are made again after).
  let plan = 0;
  let planCap = 0;
  let out = 0;
  let outCap = 0;
  let table = 0;
  let tableRows = 0;
  /** A checkpoint of the published tree, between two batches (writes are multiples of 100). */
  const checkpoint = (): CheckpointTimes => {
    if (published === 0 || own !== 0 || sealed) throw new Error('a checkpoint needs a published dirty tree between batches');
    const start = inner.log.end;
    const t0 = performance.now();
    let planLen = planCap === 0 ? -1 : ex.wtreePlan(published, plan, planCap);
    while (planLen < 0) {
      if (plan !== 0) ex.free(plan);
      planCap = Math.max(planCap * 2, 1 << 20);
      plan = ex.alloc(planCap) >>> 0;
      planLen = ex.wtreePlan(published, plan, planCap);
    }
    const rows = planLen / 5;
    if (rows > tableRows) {
      if (table !== 0) ex.free(table);
      tableRows = rows * 2;
      table = ex.alloc(tableRows * 12) >>> 0;
    }
    let n = outCap === 0 ? -1 : ex.slabEncode(plan, planLen, out, outCap, table, rows, start);
    while (n === -1) {
      if (out !== 0) ex.free(out);
      outCap = Math.max(outCap * 2, 64 << 20);
      out = ex.alloc(outCap) >>> 0;
      n = ex.slabEncode(plan, planLen, out, outCap, table, rows, start);
    }
    if (n < 0) throw new Error(`slabEncode returned ${n}`);
    mem = Buffer.from(ex.memory.buffer);
    const t1 = performance.now();
    inner.log.writeAhead(mem.subarray(out, out + n), n, 0);
    inner.log.advance(n);
    const t2 = performance.now();
    ex.wtreeWritten(published);
    published = mem.readUInt32LE(result);
    if (published === 0) clean = { pos: mem.readDoubleLE(result + 8), len: mem.readUInt32LE(result + 4) };
    const t3 = performance.now();
    return { encodeMs: t1 - t0, appendMs: t2 - t1, settleMs: t3 - t2, bytes: n };
  };
  /** The tree holds `value` for `key` (the last write). */
  const expectLast = (key: Buffer, value: Buffer): void => {
    mem.set(key, probe);
    const r = published !== 0 ? ex.cacheFindDirty(published, key.length) : ex.cacheFind(clean.pos, clean.len, key.length);
    if (r !== 1) throw new Error(`the last key written is not found inline (${r})`);
    const at = mem.readUInt32LE(result);
    if (!mem.subarray(at, at + mem.readUInt32LE(result + 4)).equals(value)) throw new Error('the tree lost a write');
  };
  return { put, checkpoint, expectLast };
}

/** upperBoundP for a key given as bytes: prefix numbers first, a byte comparison on ties. */
function upperBoundBuf(keys: readonly string[], pfx: Float64Array, key: Buffer, pp: number): number {
  let lo = 0;
  let hi = pfx.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const x = pfx[mid];
    if (x < pp || (x === pp && cmpStrBuf(keys[mid], key) <= 0)) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}


function upper(ks: string[], k: string): number {
  let i = 0;
  while (i < ks.length && ks[i] <= k) i++;
  return i;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

if (process.argv[2] === '--child') {
  // Checkpoints append to the store's file: a copy of it, so every run starts from the same one.
  const every = Number(process.argv[6] ?? '0');
  const path = every > 0 ? `${process.argv[3]}.${process.pid}` : process.argv[3];
  if (every > 0) copyFileSync(process.argv[3], path);
  try {
    process.stdout.write(JSON.stringify(await measure(path, process.argv[4] as Mode, Number(process.argv[5]), every)));
  } finally {
    if (every > 0) rmSync(path, { force: true });
  }
  process.exit(0);
}

const rounds = Number(arg('--rounds', '3'));
const writes = Number(arg('--writes', '3000000'));
const checkpointEvery = Number(arg('--checkpoint-every', '0'));
if (checkpointEvery % WINDOW !== 0) throw new Error(`--checkpoint-every must be a multiple of ${WINDOW}`);
const modes = arg('--modes', MODES.join(',')).split(',') as Mode[];
for (const m of modes) if (!MODES.includes(m)) throw new Error(`unknown mode ${m}`);
const dir = mkdtempSync(join(tmpdir(), 'solifuge-writer-'));
const file = join(dir, 'store.db');
try {
  await build(file);
  const self = fileURLToPath(import.meta.url);
  const steady = Object.fromEntries(modes.map((m) => [m, [] as number[]])) as Record<Mode, number[]>;
  const ckpts = Object.fromEntries(modes.map((m) => [m, [] as CheckpointTimes[]])) as Record<Mode, CheckpointTimes[]>;
  for (let r = 0; r < rounds; r++) {
    for (const mode of modes) {
      const out = execFileSync(process.execPath, [...process.execArgv, self, '--child', file, mode, String(writes), String(checkpointEvery)], { encoding: 'utf8', maxBuffer: 1 << 20 });
      const { windows, checkpoints } = JSON.parse(out) as { windows: number[]; checkpoints: CheckpointTimes[] };
      const m = median(windows.slice(4));
      steady[mode].push(m);
      console.log(`round ${r + 1} ${mode.padEnd(13)} ${Math.round(m)} ns/write (windows: ${windows.map(Math.round).join(' ')})`);
      for (const c of checkpoints) {
        console.log(`  checkpoint: ${(c.bytes / 1e6).toFixed(1)} MB, encode ${Math.round(c.encodeMs)} ms, append ${Math.round(c.appendMs)} ms, settle ${Math.round(c.settleMs)} ms`);
      }
      ckpts[mode].push(...checkpoints.slice(1)); // the first one writes the nodes the first touches copied
    }
  }
  console.log('\nmode           ns/write (median of rounds; each round: median of windows 5 on)');
  for (const mode of modes) console.log(`${mode.padEnd(14)} ${Math.round(median(steady[mode]))}   [${steady[mode].map(Math.round).join(', ')}]`);
  if (checkpointEvery > 0) {
    console.log(`\ncheckpoints every ${checkpointEvery} writes, from the second on: medians in ms (MB written)`);
    for (const mode of modes) {
      const c = ckpts[mode];
      const med = (f: (x: CheckpointTimes) => number) => median(c.map(f));
      console.log(`${mode.padEnd(18)} encode ${Math.round(med((x) => x.encodeMs))}, append ${Math.round(med((x) => x.appendMs))}, settle ${Math.round(med((x) => x.settleMs))}, total ${Math.round(med((x) => x.encodeMs + x.appendMs + x.settleMs))} (${(med((x) => x.bytes) / 1e6).toFixed(1)} MB, n=${c.length})`);
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
