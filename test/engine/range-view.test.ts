// Range scans over the tree in WebAssembly memory (wasm-tree-cursor.ts): every bound, prefix,
// direction and limit agrees with a sorted model through a cache that evicts and one that does
// not, also while gets evict the leaf a scan stands on, over trees that mix checkpointed and
// unwritten leaves, through snapshots, and over a corrupt leaf.
import { Buffer } from 'node:buffer';
import fs from 'node:fs';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { open, CorruptionError, type Db, type RangeOptions } from '../../src/index.js';
import type { WasmNodeCache } from '../../src/engine/wasm-cache.js';
import { T, DiskRef } from '../../src/engine/node.js';
import { readNode } from '../../src/engine/cache.js';
import type { FileLog } from '../../src/engine/log-file.js';
import { tempDir } from '../support/tmp.js';

type Internals = { tree: { cache: WasmNodeCache }; log: FileLog; published: { root: { addr: number; pos: number; len: number } } };
const fastOf = (db: Db) => (db as unknown as Internals).tree.cache;

function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

/** Keys with long shared prefixes, short and empty keys, 0x00 and 0xff bytes; some big values. */
function dataset(n: number, seed: number): Map<string, Buffer> {
  const rnd = prng(seed);
  const m = new Map<string, Buffer>();
  m.set('', Buffer.from('empty key'));
  const stems = ['a', 'ab', 'user:', 'user:1', 'zz', '\u00ff', '\u00ff\u00ff', '\u0000'];
  for (let i = 0; m.size < n; i++) {
    const stem = stems[(rnd() * stems.length) | 0];
    const tail = Buffer.alloc((rnd() * 14) | 0);
    for (let j = 0; j < tail.length; j++) tail[j] = [0x00, 0x30 + ((rnd() * 10) | 0), 0x61, 0xff][(rnd() * 4) | 0];
    const key = Buffer.concat([Buffer.from(stem, 'latin1'), tail]).toString('latin1');
    const big = rnd() < 0.04;
    m.set(key, Buffer.alloc(big ? 200 + ((rnd() * 300) | 0) : (rnd() * 100) | 0, i & 0xff));
  }
  return m;
}

/** A model's entries in key order, as binary strings (one char per byte: they sort like memcmp). */
type Sorted = Array<[string, string]>;
const sortedOf = (m: Map<string, Buffer>): Sorted =>
  [...m.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)).map((k) => [k, (m.get(k) as Buffer).toString('hex')]);
const bin = (x: unknown): string | undefined =>
  x === undefined ? undefined : typeof x === 'string' ? Buffer.from(x, 'utf8').toString('latin1') : Buffer.from(x as Uint8Array).toString('latin1');

/** What a range must return, computed from the model alone, as one string to compare cheaply. */
function expected(sorted: Sorted, o: RangeOptions): string {
  const gt = bin(o.gt), gte = bin(o.gte), lt = bin(o.lt), lte = bin(o.lte), prefix = bin(o.prefix);
  let rows = sorted.filter(([k]) =>
    (gt === undefined || k > gt) && (gte === undefined || k >= gte) &&
    (lt === undefined || k < lt) && (lte === undefined || k <= lte) &&
    (prefix === undefined || k.startsWith(prefix)));
  if (o.reverse === true) rows = rows.reverse();
  if (o.limit !== undefined && o.limit >= 0) rows = rows.slice(0, o.limit);
  return rows.map(([k, v]) => `${Buffer.from(k, 'latin1').toString('hex')}=${v}`).join('|');
}

const asText = (it: Iterable<[Buffer, Buffer]>) => [...it].map(([k, v]) => `${k.toString('hex')}=${v.toString('hex')}`).join('|');
const keysText = (it: Iterable<Buffer>) => [...it].map((k) => k.toString('hex')).join('|');
const keysOf = (text: string) => (text === '' ? '' : text.split('|').map((r) => r.slice(0, r.indexOf('='))).join('|'));

const boundArb = fc.oneof(
  fc.constantFrom('', 'a', 'ab', 'ab\u00ff', 'user:', 'user:1', 'user:2', 'zz', 'zz\u0000', '\u00ff', '\u00ff\u00ff\u00ff', '\u0000'),
  fc.uint8Array({ minLength: 1, maxLength: 8 }).map((x) => Buffer.from(x.map((y) => [0x00, 0x31, 0x61, 0x75, 0xff][y % 5])).toString('latin1')),
);
const rangeArb = fc.record(
  {
    gt: boundArb, gte: boundArb, lt: boundArb, lte: boundArb,
    prefix: fc.constantFrom('', 'a', 'ab', 'user:', 'user:1', 'z', '\u00ff', '\u00ff\u00ff', '\u0000', 'q'),
    reverse: fc.boolean(),
    limit: fc.integer({ min: 0, max: 3000 }),
  },
  { requiredKeys: [] },
);
/**
 * Bounds as Buffers, or as strings when that means the same bytes (ASCII: strings are UTF-8), so
 * both input kinds reach the cursor.
 */
const toInput = (o: RangeOptions): RangeOptions => {
  const r: RangeOptions = { ...o };
  for (const f of ['gt', 'gte', 'lt', 'lte', 'prefix'] as const) {
    const x = r[f] as string | undefined;
    if (x !== undefined && !(/^[\x00-\x7f]*$/.test(x) && x.length % 2 === 1)) r[f] = Buffer.from(x, 'latin1');
  }
  return r;
};

describe('range scans through the WASM node cache', () => {
  let t: ReturnType<typeof tempDir>;
  let file: string;
  const model = dataset(12_000, 5);
  const sorted = sortedOf(model);
  beforeAll(async () => {
    t = tempDir('range-view');
    file = t.file('a.db');
    const db = await open(file, { checkpointIdleMs: 0 });
    const entries = [...model];
    for (let i = 0; i < entries.length; i += 500) {
      await db.transaction((tx) => {
        for (const [k, v] of entries.slice(i, i + 500)) tx.set(Buffer.from(k, 'latin1'), v);
      });
    }
    await db.close(); // checkpoints: every leaf is on disk
  });
  afterAll(() => t.cleanup());

  it('agrees with the model for every kind of bound, through a cache that evicts and one that does not', async () => {
    fs.copyFileSync(file, t.file('copy.db'));
    const viewed = await open(file, { cacheBytes: 4 << 20, checkpointIdleMs: 0 });
    const decoded = await open(t.file('copy.db'), { cacheBytes: 256 << 20, checkpointIdleMs: 0 });
    try {
      fc.assert(
        fc.property(rangeArb, (o) => {
          const input = toInput(o);
          const want = expected(sorted, input);
          expect(asText(viewed.range(input))).toBe(want);
          expect(asText(decoded.range(input))).toBe(want);
          expect(keysText(viewed.keys(input))).toBe(keysOf(want));
        }),
        { seed: 20261201, numRuns: 250 },
      );
      // Whole-tree walks both ways.
      expect(asText(viewed.range())).toBe(expected(sorted, {}));
      expect(asText(viewed.range({ reverse: true }))).toBe(expected(sorted, { reverse: true }));
    } finally {
      await viewed.close();
      await decoded.close();
    }
  });

  it('re-finds the leaf it stands on when gets evict it between steps', async () => {
    // A 4 MiB ring under a tree of more leaves than it holds: the gets between steps load other
    // leaves, the ring evicts, and the scan must re-find (or reload) its own leaf each time.
    const big = dataset(60_000, 9);
    for (const [k, v] of big) if (v.length < 120) big.set(k, Buffer.alloc(120, v[0] ?? 1)); // ~8 MiB of leaves: more than 4 MiB holds
    const f2 = t.file('evict.db');
    let db = await open(f2, { checkpointIdleMs: 0 });
    const entries = [...big];
    for (let i = 0; i < entries.length; i += 1000) {
      await db.transaction((tx) => {
        for (const [k, v] of entries.slice(i, i + 1000)) tx.set(Buffer.from(k, 'latin1'), v);
      });
    }
    await db.close();
    db = await open(f2, { cacheBytes: 4 << 20, checkpointIdleMs: 0 });
    try {
      const fast = fastOf(db) as WasmNodeCache;
      const keys = [...big.keys()];
      const rnd = prng(3);
      const bigSorted = sortedOf(big);
      for (const reverse of [false, true]) {
        const epoch0 = fast.epoch;
        const got: string[] = [];
        let wrongGets = 0;
        let step = 0;
        for (const [k, v] of db.range({ reverse })) {
          got.push(`${k.toString('hex')}=${v.toString('hex')}`);
          // Now and then drop every node, the scan's own leaf included, so the next step must
          // reload it; in between, gets evict leaves the ordinary way.
          if (++step % 997 === 0) fast.clear();
          for (let j = 0; j < 2; j++) {
            const probe = keys[(rnd() * keys.length) | 0];
            if (!(db.get(Buffer.from(probe, 'latin1')) as Buffer).equals(big.get(probe) as Buffer)) wrongGets++;
          }
        }
        expect(wrongGets).toBe(0);
        expect(got.join('|')).toBe(expected(bigSorted, { reverse }));
        expect(fast.epoch - epoch0).toBeGreaterThan(500); // the ring really did evict under it (60 of them are clears)
      }
    } finally {
      await db.close();
    }
  });

  it('sees unwritten leaves, deletions and pinned snapshots alongside on-disk ones', async () => {
    const f3 = t.file('mixed.db');
    fs.copyFileSync(file, f3);
    const db = await open(f3, { checkpointIdleMs: 0, checkpointTreeOverLogMax: 0 });
    try {
      const m = new Map(model);
      const before = db.snapshot();
      const beforeWant = expected(sortedOf(m), {});
      const rnd = prng(17);
      const keys = [...m.keys()];
      // Scattered changes: a few leaves become in-memory copies, the rest stay on disk.
      await db.transaction((tx) => {
        for (let i = 0; i < 40; i++) {
          const k = keys[(rnd() * keys.length) | 0];
          if (i % 3 === 0) {
            tx.delete(Buffer.from(k, 'latin1'));
            m.delete(k);
          } else {
            const v = Buffer.from(`new ${i}`);
            tx.set(Buffer.from(k, 'latin1'), v);
            m.set(k, v);
          }
        }
        tx.set('user:1\u0000new', 'inserted');
        m.set('user:1\u0000new', Buffer.from('inserted'));
        // Reads inside the transaction see its own writes, through the same cursor.
        expect(asText(tx.range({ prefix: 'user:1' }))).toBe(expected(sortedOf(m), { prefix: 'user:1' }));
      });
      const mSorted = sortedOf(m);
      fc.assert(
        fc.property(rangeArb, (o) => {
          const input = toInput(o);
          expect(asText(db.range(input))).toBe(expected(mSorted, input));
        }),
        { seed: 7, numRuns: 150 },
      );
      await db.checkpoint(); // the copies go to disk; the snapshot still reads the old leaves
      expect(asText(db.range())).toBe(expected(mSorted, {}));
      expect(asText(before.range())).toBe(beforeWant);
      before.release();
    } finally {
      await db.close();
    }
  });

  it('keeps a paused scan exact through cache clears, writes, checkpoints and an early break', async () => {
    const f5 = t.file('paused.db');
    fs.copyFileSync(file, f5);
    const db = await open(f5, { cacheBytes: 4 << 20, checkpointIdleMs: 0 });
    try {
      const fast = fastOf(db) as WasmNodeCache;
      const cases: RangeOptions[] = [
        { gte: 'a', lt: 'user:2' },
        { prefix: 'user:', reverse: true },
        { gt: '\u0000', lte: 'zz', limit: 700 },
        { reverse: true, lt: '\u00ff\u00ff', limit: 2500 },
      ];
      let n = 0;
      let cur = sorted;
      for (const o of cases) {
        const input = toInput(o);
        const want = expected(cur, input); // the store as the iterator found it
        const got: string[] = [];
        for (const [k, v] of db.range(input)) {
          got.push(`${k.toString('hex')}=${v.toString('hex')}`);
          n++;
          if (n % 53 === 0) fast.clear();
          if (n % 301 === 0) {
            // Writes and a checkpoint while the iterator is paused: new nodes go into the cache
            // (evicting), and the iterator must still read the commit it pinned.
            await db.set(`user:1zz${n}`, `w${n}`);
            await db.delete(Buffer.from(cur[n % cur.length][0], 'latin1'));
            await db.checkpoint();
          }
        }
        expect(got.join('|')).toBe(want);
        // The store moved on; take the model along for the next case.
        cur = sortedOf(new Map([...db.range()].map(([k, v]) => [k.toString('latin1'), v])));
      }
      // Breaking out early releases the iterator's pin.
      for (const [i] of [...Array(3).keys()].entries()) {
        let seen = 0;
        for (const _ of db.range({ reverse: i % 2 === 1 })) if (++seen === 10) break;
        expect(seen).toBe(10);
      }
      expect(db.pinnedSnapshots).toBe(0);
    } finally {
      await db.close();
    }
  });

  it('refuses nodes bigger than the tree in WebAssembly memory holds', async () => {
    await expect(open(t.file('bigleaf.db'), { nodeBytesMax: 4 << 20 })).rejects.toThrow(/nodeBytesMax must be within 512 B \.\. 32 KiB/);
    expect(fs.existsSync(t.file('bigleaf.db'))).toBe(false);
  });

  it('reports a corrupt leaf as corruption, never as data', async () => {
    const f4 = t.file('corrupt.db');
    fs.copyFileSync(file, f4);
    // A leaf in the middle of the tree, found by descending the nodes read from the file.
    let db = await open(f4, { checkpointIdleMs: 0 });
    const inner = db as unknown as Internals;
    expect(inner.published.root.addr).toBe(0);
    let ref = new DiskRef(inner.published.root.pos, inner.published.root.len);
    for (;;) {
      const n = readNode(inner.log, ref.pos, ref.len);
      if (n.t === T.Leaf) break;
      ref = n.kids[n.kids.length >> 1] as DiskRef;
    }
    const leafPos = ref;
    expect(leafPos.pos).toBeGreaterThan(0);
    await db.close();
    const fd = fs.openSync(f4, 'r+');
    const b = Buffer.alloc(1);
    fs.readSync(fd, b, 0, 1, leafPos.pos + 20);
    b[0] ^= 0x10;
    fs.writeSync(fd, b, 0, 1, leafPos.pos + 20);
    fs.closeSync(fd);
    db = await open(f4, { checkpointIdleMs: 0 });
    try {
      expect(fastOf(db)).not.toBeNull();
      expect(() => [...db.range()]).toThrow(CorruptionError);
      expect(() => [...db.range({ reverse: true })]).toThrow(CorruptionError);
      expect(() => [...db.keys()]).toThrow(CorruptionError);
    } finally {
      await db.close();
    }
  });
});
