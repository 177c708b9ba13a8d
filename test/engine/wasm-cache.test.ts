// The WASM point-lookup cache (src/engine/wasm-cache.ts, asm/cache.ts): lookups agree with a Map
// under heavy eviction, every key shape and value kind, corrupt or malformed nodes are reported
// (never served), and the idle checkpoint that puts the tree on disk for it.
import { Buffer } from 'node:buffer';
import fs from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { open, CorruptionError, type Db } from '../../src/index.js';
import { DATA_START_POS, ENTRY_HEADER_BYTES, Kind } from '../../src/engine/format.js';
import { PlanWriter } from '../../src/engine/plan.js';
import { DiskRef, T, ValueRef, keyPrefixes, type TreeNode } from '../../src/engine/node.js';
import { readNode } from '../../src/engine/cache.js';
import { WasmNodeCache } from '../../src/engine/wasm-cache.js';
import { findIn } from '../../src/engine/wasm-tree-writer.js';

/** A lookup below the clean node `ref` as the store makes it (wasm-tree-writer.ts findIn), over `c`. */
function findBelow(c: WasmNodeCache, ref: DiskRef, key: Uint8Array | string): Buffer | ValueRef | undefined {
  const host = { ex: c.instance, ...c.areas, mem: () => c.buffer, load: (pos: number, len: number) => void c.nodeAt(pos, len) };
  return findIn(host, { addr: 0, pos: ref.pos, len: ref.len }, key);
}

/** The cache's copy of the node at `pos` decoded (as check() reads the tree), or null when it holds none. */
function decodedFromCache(c: WasmNodeCache, pos: number, len: number): TreeNode | null {
  const ptr = c.instance.cachedNode(pos) >>> 0;
  return ptr === 0 ? null : c.decodedAt(ptr, pos, len, null);
}
import type { FileLog } from '../../src/engine/log-file.js';
import { crc32c } from '../../src/wasm/crc32c.js';
import { addon } from '../../src/native/addon.js';
import { tempDir } from '../support/tmp.js';
import { varintBytesOf as varint } from '../support/reference-codec.js';

type Internals = { tree: { cache: WasmNodeCache }; published: { root: { addr: number; pos: number; len: number } } };
const internals = (db: Db) => db as unknown as Internals;

function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

describe('WASM node cache through the store', () => {
  let t: ReturnType<typeof tempDir>;
  beforeEach(() => {
    t = tempDir('wasm-cache');
  });
  afterEach(() => t.cleanup());

  it('agrees with a Map while evicting (4 MiB cache, ~9 MiB of nodes)', async () => {
    const file = t.file('a.db');
    const rnd = prng(11);
    const model = new Map<string, Buffer>();
    let db = await open(file, { cacheBytes: 4 << 20, checkpointIdleMs: 0 });
    for (let b = 0; b < 80; b++) {
      await db.transaction((tx) => {
        for (let i = 0; i < 1000; i++) {
          const k = Buffer.alloc(12);
          k.writeUInt32BE((rnd() * 2 ** 32) >>> 0, 0);
          k.writeUInt32BE(b, 4);
          k.writeUInt32BE(i, 8);
          // Mostly inline values, some kept in Value entries (> inlineValueBytesMax).
          const v = Buffer.alloc(rnd() < 0.05 ? 300 : 90, (b * 7 + i) & 0xff);
          tx.set(k, v);
          model.set(k.toString('hex'), v);
        }
      });
    }
    await db.close();
    db = await open(file, { cacheBytes: 4 << 20, checkpointIdleMs: 0 });
    const fast = internals(db).tree.cache;
    expect(fast).not.toBeNull();
    const keys = [...model.keys()];
    for (let i = 0; i < 20_000; i++) {
      const k = keys[(rnd() * keys.length) | 0];
      expect(db.get(Buffer.from(k, 'hex'))).toEqual(model.get(k));
      // Absent neighbours: one byte more, one byte less, last byte changed.
      const kb = Buffer.from(k, 'hex');
      expect(db.get(Buffer.concat([kb, Buffer.from([0])]))).toBeUndefined();
      expect(db.get(kb.subarray(0, 11))).toBeUndefined();
    }
    // The cache is far smaller than the tree: it must have evicted and reloaded nodes.
    expect(fast.misses).toBeGreaterThan(fast.nodes * 2);
    expect(db.get(Buffer.alloc(0))).toBeUndefined();
    expect(db.get(Buffer.alloc(12, 0xff))).toBeUndefined();
    await db.close();
  });

  it('builds the same decoded nodes from its copies as reading the entries from the file does', async () => {
    const file = t.file('d.db');
    const rnd = prng(5);
    const db = await open(file, { checkpointIdleMs: 0, nodeBytesMax: 1024 });
    const keys: Buffer[] = [];
    await db.transaction((tx) => {
      for (let i = 0; i < 3000; i++) {
        // Shared prefixes, bytes above 0x7f, lengths from 0 to 40 (both key-building paths).
        const k = Buffer.concat([Buffer.from(i % 3 === 0 ? 'user:' : 'ü'), Buffer.from(Array.from({ length: (rnd() * 36) | 0 }, () => (rnd() * 256) | 0))]);
        keys.push(k);
        tx.set(k, Buffer.alloc(rnd() < 0.1 ? 200 : (rnd() * 60) | 0, i & 0xff));
      }
    });
    await db.checkpoint();
    for (const k of keys) db.get(k); // every node on every path into the WASM cache
    const cache = { fast: internals(db).tree.cache };
    const log = (db as unknown as { log: FileLog }).log;
    const root = internals(db).published.root;
    expect(root.addr).toBe(0); // written by the checkpoint
    let level: DiskRef[] = [new DiskRef(root.pos, root.len)];
    let compared = 0;
    while (level.length > 0) {
      const next: DiskRef[] = [];
      for (const ref of level) {
        const fromCache = decodedFromCache(cache.fast, ref.pos, ref.len) as TreeNode;
        expect(fromCache).not.toBeNull();
        // The copy comes with its search accelerator, built from the bytes: it must be the keys'.
        expect(Array.from(fromCache.pfx as Float64Array)).toEqual(Array.from(keyPrefixes(fromCache.keys)));
        fromCache.pfx = null;
        const fromFile = readNode(log, ref.pos, ref.len);
        expect(fromCache).toEqual(fromFile);
        compared++;
        if (fromFile.t === T.Index) next.push(...(fromFile.kids as DiskRef[]));
      }
      level = next;
    }
    expect(compared).toBeGreaterThan(50);
    expect(decodedFromCache(cache.fast, 123_456_789, 100)).toBeNull();
    await db.close();
  });

  it.each([
    ['with the WASM cache', undefined],
    ['with cacheBytes: 0 (taken as the 4 MiB least)', 0],
  ])('answers string, UTF-8 and binary keys alike, with shared prefixes and Value entries, %s', async (_label, cacheBytes) => {
    const file = t.file('b.db');
    const db = await open(file, { checkpointIdleMs: 0, cacheBytes });
    expect(internals(db).tree.cache).toBeDefined();
    const keys = ['', 'a', 'ab', 'abc', 'abcd', 'abcde', 'abcdef', 'user:0001', 'user:0002', 'user:00021', 'zé', 'ü', '\x00', '\x00\x00'];
    for (let i = 0; i < 500; i++) keys.push(`user:${String(i).padStart(6, '0')}:profile`);
    for (const [i, k] of keys.entries()) await db.set(k, i % 7 === 0 ? Buffer.alloc(1000, i) : `v${i}`);
    await db.checkpoint();
    expect(internals(db).published.root.addr).toBe(0); // all of it written: gets start in the cache
    for (const [i, k] of keys.entries()) {
      const want = i % 7 === 0 ? Buffer.alloc(1000, i) : Buffer.from(`v${i}`);
      expect(db.get(k)).toEqual(want);
      expect(db.get(Buffer.from(k, 'utf8'))).toEqual(want);
      expect(db.exists(k)).toBe(true);
    }
    for (const k of ['abcdeg', 'user:', 'user:0000', 'user:000499:profilf', 'user:000499:profil', 'zz', '\x00\x00\x00', 'é']) {
      expect(db.get(k)).toBeUndefined();
      expect(db.exists(k)).toBe(false);
    }
    // Returned values are copies: changing one changes nothing stored.
    const v = db.get('a')!;
    v.fill(0);
    expect(db.get('a')).toEqual(Buffer.from('v1'));
    await db.close();
  });

  it('reports a flipped bit in a cached leaf as corruption, never as data', async () => {
    const file = t.file('c.db');
    let db = await open(file, { checkpointIdleMs: 0 });
    await db.transaction((tx) => {
      for (let i = 0; i < 2000; i++) tx.set(`key${String(i).padStart(5, '0')}`, `value-${i}`);
    });
    await db.close();
    // Find a leaf entry holding value-1234 and flip a bit of that value.
    const bytes = fs.readFileSync(file);
    const at = bytes.lastIndexOf(Buffer.from('value-1234'));
    expect(at).toBeGreaterThan(0);
    bytes[at + 2] ^= 0x04;
    fs.writeFileSync(file, bytes);
    db = await open(file, { checkpointIdleMs: 0 });
    expect(() => db.get('key01234')).toThrow(CorruptionError);
    await db.close().catch(() => undefined);
  });

  it('checkpoints after writes pause (checkpointIdleMs), so gets go to WASM and reopen replays nothing', async () => {
    const file = t.file('d.db');
    let db = await open(file, { checkpointIdleMs: 50 });
    for (let i = 0; i < 20; i++) await db.set(`k${i}`, `v${i}`);
    const before = db.stats.checkpoints;
    expect(internals(db).published.root.addr).not.toBe(0); // changed nodes in memory
    await new Promise((r) => setTimeout(r, 300));
    expect(db.stats.checkpoints).toBe(before + 1);
    expect(internals(db).published.root.addr).toBe(0); // all of it written: gets start in the cache
    expect(db.get('k7')).toEqual(Buffer.from('v7'));
    // A crash now (no close) loses nothing and replays nothing.
    const copy = t.file('copy.db');
    fs.copyFileSync(file, copy);
    await db.close();
    db = await open(copy);
    expect(db.replayedSlabs).toBe(0);
    expect(db.get('k19')).toEqual(Buffer.from('v19'));
    await db.close();
  });
});

describe('WASM node cache, huge pages', () => {
  let t: ReturnType<typeof tempDir>;
  beforeEach(() => {
    t = tempDir('wasm-thp');
  });
  afterEach(() => t.cleanup());

  // Sizes of the mappings the kernel marks advised ("hg" in VmFlags). The stores below use cache
  // sizes no other store in this process uses, so the check finds their own regions: counting
  // advised areas before and after was flaky (other stores' memories go away meanwhile).
  const advisedMiB = (): number[] => {
    const sizes: number[] = [];
    let bytes = 0;
    for (const l of fs.readFileSync('/proc/self/smaps', 'utf8').split('\n')) {
      const range = /^([0-9a-f]+)-([0-9a-f]+) /.exec(l);
      if (range !== null) bytes = parseInt(range[2], 16) - parseInt(range[1], 16);
      else if (l.startsWith('VmFlags:') && / hg( |$)/.test(l)) sizes.push(bytes / 2 ** 20);
    }
    return sizes;
  };
  const near = (sizes: number[], mib: number) => sizes.some((x) => Math.abs(x - mib) <= 4);
  // madvise succeeds whatever the THP mode ("never" only means the kernel keeps small pages).
  const expectAdvice = process.platform === 'linux' && addon?.adviseHugePages !== undefined;

  it('advises the node cache region by default, and not with hugePages: false', async () => {
    const db = await open(t.file('a.db'), { checkpointIdleMs: 0, cacheBytes: 44 << 20 });
    expect(internals(db).tree.cache.hugePages).toBe(expectAdvice);
    // The cache's ring and the changed nodes' region after it (768 MiB at the default checkpointIntervalBytes).
    if (expectAdvice) expect(near(advisedMiB(), 44 + 768), JSON.stringify(advisedMiB())).toBe(true);
    const plain = await open(t.file('b.db'), { checkpointIdleMs: 0, hugePages: false, cacheBytes: 60 << 20 });
    expect(internals(plain).tree.cache.hugePages).toBe(false);
    expect(near(advisedMiB(), 60 + 768), JSON.stringify(advisedMiB())).toBe(false);
    await db.set('k', 'v');
    await db.checkpoint();
    expect(db.get(Buffer.from('k'))).toEqual(Buffer.from('v'));
    await db.close();
    await plain.close();
    await expect(open(t.file('c.db'), { hugePages: 'yes' as unknown as boolean })).rejects.toThrow(/hugePages must be a boolean/);
  });

  it.runIf(addon?.adviseHugePages !== undefined)('refuses ranges outside the buffer and non-buffers', () => {
    const advise = addon!.adviseHugePages!.bind(addon);
    const buf = new ArrayBuffer(1 << 16);
    expect(advise(buf, 0, 1 << 16)).toBe(0); // no whole 2 MiB page inside: nothing to advise
    expect(() => advise(buf, 1, 1 << 16)).toThrow(RangeError);
    expect(() => advise(buf, -1, 10)).toThrow(RangeError);
    expect(() => advise(buf, Number.NaN, 10)).toThrow(RangeError);
    expect(() => advise(buf, 0.5, 10)).toThrow(RangeError);
    expect(() => advise(new Uint8Array(4) as unknown as ArrayBuffer, 0, 4)).toThrow(TypeError);
  });
});

describe('WASM node cache, prefault', () => {
  let t: ReturnType<typeof tempDir>;
  beforeEach(() => {
    t = tempDir('wasm-prefault');
  });
  afterEach(() => t.cleanup());
  const prefault = addon?.prefault?.bind(addon);
  const faults = () => process.resourceUsage().minorPageFault;

  it.runIf(prefault !== undefined)('faults pages in without changing them, and refuses bad ranges', async () => {
    const pages = 256; // 16 MiB of 64 KiB WebAssembly pages
    const mem = new WebAssembly.Memory({ initial: pages, maximum: pages });
    const u8 = new Uint8Array(mem.buffer);
    for (let o = 0; o < u8.length; o += 1 << 20) u8[o + 7] = (o >>> 20) + 1; // 16 pages in use
    expect(await prefault!(mem.buffer, 0, u8.length)).toBe(0);
    for (let o = 0; o < u8.length; o += 1 << 20) expect(u8[o + 7]).toBe((o >>> 20) + 1);
    expect(u8[12345]).toBe(0);
    // Touching every 4 KiB page now costs (almost) no faults; a fresh memory costs one a page
    // (4 KiB pages: WebAssembly memory is not advised huge, and THP here is "madvise").
    const f1 = faults();
    for (let o = 0; o < u8.length; o += 4096) u8[o] = 1;
    const touchedAfter = faults() - f1;
    const fresh = new Uint8Array(new WebAssembly.Memory({ initial: pages, maximum: pages }).buffer);
    const f2 = faults();
    for (let o = 0; o < fresh.length; o += 4096) fresh[o] = 1;
    const touchedFresh = faults() - f2;
    if (touchedFresh > 1000) expect(touchedAfter).toBeLessThan(touchedFresh / 8);
    expect(() => prefault!(mem.buffer, 1, u8.length)).toThrow(RangeError);
    expect(() => prefault!(mem.buffer, -1, 10)).toThrow(RangeError);
    expect(() => prefault!(mem.buffer, Number.NaN, 10)).toThrow(RangeError);
    expect(() => prefault!(new Uint8Array(4) as unknown as ArrayBuffer, 0, 4)).toThrow(TypeError);
    expect(await prefault!(mem.buffer, 4095, 2)).toBe(0); // no whole page inside: nothing to do
  });

  it('keeps the ring\'s next pages faulted in as checkpoints fill it, and gets still agree', async () => {
    const db = await open(t.file('a.db'), { checkpointIdleMs: 0, cacheBytes: 64 << 20 });
    const fast = internals(db).tree.cache;
    type Ring = { ex: { ringHead(): number }; arenaStart: number; prefaultedTo: number; prefaulting: boolean };
    const ring = fast as unknown as Ring;
    const value = Buffer.alloc(100, 3);
    const rounds = 12;
    for (let b = 0; b < rounds; b++) {
      await db.transaction((tx) => {
        for (let j = 0; j < 10_000; j++) tx.set(`k${String(b * 10_000 + j).padStart(8, '0')}`, value);
      });
      await db.checkpoint();
      await new Promise((r) => setTimeout(r, 20)); // the pool thread answers the request meanwhile
      const used = (ring.ex.ringHead() >>> 0) - ring.arenaStart;
      if (prefault === undefined) {
        expect(fast.prefaultRequestedBytes).toBe(0);
        continue;
      }
      // Requested at least up to the head and ahead of it, never far past it: PREFAULT_AHEAD_BYTES.
      expect(ring.prefaultedTo - ring.arenaStart).toBeGreaterThan(used);
      expect(ring.prefaultedTo - ring.arenaStart).toBeLessThanOrEqual(used + (16 << 20));
      expect(fast.prefaultRequestedBytes).toBeLessThanOrEqual(ring.prefaultedTo - ring.arenaStart);
    }
    expect((ring.ex.ringHead() >>> 0) - ring.arenaStart).toBeGreaterThan(12 << 20); // the ring did move
    for (let i = 0; i < rounds * 10_000; i += 997) expect(db.get(`k${String(i).padStart(8, '0')}`)).toEqual(value);
    expect(db.get('k99999999')).toBeUndefined();
    await db.close();
  });
});

describe('WASM node cache, unit', () => {
  /** A FileLog stand-in holding entries in memory (the cache only calls read and end). */
  function fakeLog(entries: Buffer[]): { log: FileLog; refs: DiskRef[] } {
    const refs: DiskRef[] = [];
    let pos = 8192;
    const parts: Buffer[] = [Buffer.alloc(8192)];
    for (const e of entries) {
      refs.push(new DiskRef(pos, e.length));
      parts.push(e);
      pos += e.length;
    }
    const file = Buffer.concat(parts);
    const log = { end: file.length, read: (p: number, n: number) => Buffer.from(file.subarray(p, p + n)) };
    return { log: log as unknown as FileLog, refs };
  }

  function entry(kind: Kind, body: number[]): Buffer {
    const b = Buffer.alloc(ENTRY_HEADER_BYTES + body.length);
    b.writeUInt32LE(body.length, 4);
    b[8] = kind;
    Buffer.from(body).copy(b, ENTRY_HEADER_BYTES);
    b.writeUInt32LE(crc32c(b, 4, b.length), 0);
    return b;
  }
  const bytes = (s: string) => [...Buffer.from(s, 'latin1')];

  it('reads a hand-encoded leaf and index (codec.ts layouts)', () => {
    // Leaf 1: prefix "k", keys k1 -> "a", k3 -> Value entry (pos 9000, 5 bytes).
    const leaf1 = entry(Kind.Leaf, [2, 1, ...bytes('k'), 1, ...bytes('1'), 0, 1, ...bytes('a'), 1, ...bytes('3'), 1, 0xa8, 0x46, 5]);
    // Leaf 2: no prefix, key "m" -> "zz".
    const leaf2 = entry(Kind.Leaf, [1, 0, 1, ...bytes('m'), 0, 2, ...bytes('zz')]);
    const { refs } = fakeLog([leaf1, leaf2]);
    // Index: child0 = leaf1, separator "m" -> leaf2.
    const index = entry(Kind.Index, [2, 0, ...varint(refs[0].pos), leaf1.length, 1, ...bytes('m'), ...varint(refs[1].pos), leaf2.length]);
    const { log, refs: all } = fakeLog([leaf1, leaf2, index]);
    const c = new WasmNodeCache(log, 4 << 20);
    const root = all[2];
    expect(findBelow(c, root, 'k1')).toEqual(Buffer.from('a'));
    const ref = findBelow(c, root, 'k3');
    expect(ref).toBeInstanceOf(ValueRef);
    expect((ref as ValueRef).pos).toBe(9000);
    expect((ref as ValueRef).len).toBe(5);
    expect(findBelow(c, root, Buffer.from('m'))).toEqual(Buffer.from('zz'));
    for (const k of ['', 'k', 'k2', 'k4', 'l', 'ma', 'z']) expect(findBelow(c, root, k)).toBeUndefined();
    expect(c.nodes).toBe(3);
    expect(findBelow(c, root, 'x'.repeat(70_000))).toBeUndefined(); // longer than any key the store takes: absent
  });

  it("serves reads after a slab plan built in its instance grew that memory (refreshViews)", () => {
    const leaf = entry(Kind.Leaf, [2, 0, 1, ...bytes('a'), 0, 2, ...bytes('xy'), 1, ...bytes('b'), 0, 1, ...bytes('z')]);
    const { log, refs } = fakeLog([leaf]);
    const c = new WasmNodeCache(log, 4 << 20, false, 1 << 20);
    expect(findBelow(c, refs[0], Buffer.from('a'))).toEqual(Buffer.from('xy'));
    const before = c.u8.buffer;
    let told = 0;
    const plan = new PlanWriter(c.instance, () => {
      told++;
      c.refreshViews();
    });
    plan.reset();
    plan.value(Buffer.alloc(40 << 20, 7)); // past what the instance had: its memory grows
    const enc = plan.encode(DATA_START_POS, 64);
    expect(told).toBeGreaterThan(0);
    expect(before.byteLength).toBe(0); // detached by the growth: the old views would read nothing
    expect(c.u8.buffer).toBe(c.instance.memory.buffer);
    expect(enc.out.buffer).toBe(c.instance.memory.buffer); // encoded where the cache lives
    expect(enc.len).toBe(ENTRY_HEADER_BYTES + (40 << 20));
    expect(findBelow(c, refs[0], Buffer.from('a'))).toEqual(Buffer.from('xy'));
    expect(findBelow(c, refs[0], 'b')).toEqual(Buffer.from('z'));
    plan.dispose();
  });

  it('reports a checksummed but malformed body as corruption', () => {
    const bad = [
      [3, 0, 1, ...bytes('a'), 0, 9, 1], // value runs past the body
      [1, 0, 1, ...bytes('a'), 7, 1, 1], // unknown value kind
      [1, 0, 1, ...bytes('a'), 0, 1, 1, 0], // trailing bytes
      [1, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], // number too long
      [200, 0], // count larger than the body
    ];
    for (const body of bad) {
      const { log, refs } = fakeLog([entry(Kind.Leaf, body)]);
      const c = new WasmNodeCache(log, 4 << 20);
      expect(() => findBelow(c, refs[0], 'a')).toThrow(CorruptionError);
    }
    const { log, refs } = fakeLog([entry(Kind.Value, [1, 2, 3])]);
    expect(() => findBelow(new WasmNodeCache(log, 4 << 20), refs[0], 'a')).toThrow(CorruptionError);
  });
});

