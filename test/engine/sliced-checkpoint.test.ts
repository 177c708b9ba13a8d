// Big checkpoints run in slices (db.ts, slicedCheckpointBytesMin): the event loop turns between
// them, readers in between see exactly the published tree, writes wait, another store commits
// meanwhile, and a failure in the middle of the append loses nothing that was published.
import { afterAll, describe, expect, it } from 'vitest';
import { BadArgumentError, ClosedError, IoFailedError, open, type Db } from '../../src/index.js';
import { SlabBuilder, type SlabInput } from '../support/js-slab.js';
import { TreeWriter } from '../support/js-tree.js';
import { T } from '../../src/engine/node.js';
import type { BinKey, InlineValue } from '../../src/engine/keys.js';
import { core } from '../../src/wasm/module.js';
import { crashCopy } from '../support/crash-copy.js';
import { memoryOnly, mismatches } from '../support/memory-tree.js';
import { tempDir } from '../support/tmp.js';

const tmp = tempDir('sliced');
afterAll(() => tmp.cleanup());
let n = 0;

const KEYS = 60_000; // ~7 MiB of changed leaves: above the 4 MiB that makes a checkpoint sliced
const key = (i: number) => `key:${((i * 7919) % KEYS).toString(36).padStart(5, '0')}:${i % 13}`;
const value = (i: number, round: number) => Buffer.alloc(100, (i + round) & 0xff);

/** No checkpoint until asked: every batch only logs, so the changed tree grows. */
const opts = { checkpointIdleMs: 0, checkpointTreeOverLogMax: 0, checkpointIntervalBytes: 1 << 30 } as const;

async function load(db: Db, model: Map<string, Buffer>, round: number): Promise<void> {
  for (let b = 0; b < KEYS; b += 2_000) {
    await db.transaction((tx) => {
      for (let i = b; i < b + 2_000; i++) {
        const v = value(i, round);
        tx.set(key(i), v);
        model.set(key(i), v);
      }
    });
  }
}


const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));


describe('sliced checkpoints', () => {
  it('turn the event loop between slices; reads in between see the published tree; writes wait', async () => {
    const db = await open(tmp.file(`a${n++}.db`), opts);
    const model = new Map<string, Buffer>();
    await load(db, model, 0);
    expect(db.stats.checkpoints).toBe(0);
    const keys = [...model.keys()];
    const sorted = keys.slice().sort();
    let settled = false;
    const cp = db.checkpoint().finally(() => {
      settled = true;
    });
    let during: Promise<void> | null = null;
    let turns = 0;
    let checked = false;
    while (!settled) {
      await nextTurn();
      turns++;
      // Issued once the checkpoint's batch surely runs (a write queued before it starts would join
      // its batch): it waits for it, then commits after it.
      if (turns === 3) during = db.set('written during the checkpoint', 'yes');
      for (let j = 0; j < 20; j++) {
        const k = keys[(turns * 131 + j * 977) % keys.length];
        expect(db.get(k)?.equals(model.get(k) as Buffer)).toBe(true);
      }
      // (It may commit within the very turn the checkpoint ends, as soon as the writer is free.)
      if (db.stats.checkpoints === 0) expect(db.get('written during the checkpoint')).toBeUndefined();
      const first = sorted[turns % 1000];
      const seen = [...db.range({ gte: first, limit: 50 })];
      expect(seen.length).toBe(50);
      for (const [k, v] of seen) expect(v.equals(model.get(k.toString()) as Buffer)).toBe(true);
      if (!checked && turns > 3) {
        checked = true;
        expect(db.check().problems).toEqual([]);
      }
    }
    await cp;
    await during;
    expect(db.stats.commits).toBe(KEYS / 2_000 + 2); // the load's, the checkpoint's and its own
    expect(db.stats.slicedCheckpoints).toBe(1);
    // The switch to the written nodes too (~7 MiB of nodes in ~3 MB slices at checkpointSliceMs 10: 2 pauses).
    expect(db.stats.switchSlices).toBeGreaterThan(0);
    expect(turns).toBeGreaterThan(3); // the loop really turned in between (a one-piece build runs 0)
    expect(db.get('written during the checkpoint')?.toString()).toBe('yes');
    expect(db.check().problems).toEqual([]);
    const again = await crashCopy(db, tmp.file);
    expect(again.replayedSlabs).toBe(1); // the write that waited; everything else is checkpointed
    expect(again.count()).toBe(KEYS + 1);
    expect(mismatches(again, model)).toEqual([]);
    expect(again.check().problems).toEqual([]);
    await again.close();
    await db.close();
  });

  it('an iterator opened before it walks on through it; a close issued during it waits for it', async () => {
    // Slices of ~1 ms (~600 KiB): some twenty turns through ~7 MiB, at 500 keys read a turn.
    const db = await open(tmp.file(`i${n++}.db`), { ...opts, checkpointSliceMs: 1 });
    const model = new Map<string, Buffer>();
    await load(db, model, 4);
    const sorted = [...model.keys()].sort();
    const it = db.range({ gte: sorted[100] })[Symbol.iterator]();
    let settled = false;
    const cp = db.checkpoint().finally(() => {
      settled = true;
    });
    let closing: Promise<void> | null = null;
    let turns = 0;
    let at = 100;
    while (!settled) {
      await nextTurn();
      if (db.isClosed) break; // the close goes as soon as the checkpoint is done
      turns++;
      if (turns === 3) closing = db.close();
      for (let j = 0; j < 500; j++) {
        const r = it.next();
        expect(r.done).toBe(false);
        const [k, v] = r.value as [Buffer, Buffer];
        expect(k.toString()).toBe(sorted[at]);
        expect(v.equals(model.get(sorted[at]) as Buffer)).toBe(true);
        at++;
      }
    }
    await cp;
    expect(turns).toBeGreaterThan(3);
    expect(at).toBeGreaterThan(1_500); // it read through several slices
    await closing;
    expect(db.isClosed).toBe(true);
    expect(() => it.next()).toThrow(ClosedError); // and, once closed, says so
    const again = await open(db.path);
    expect(again.replayedSlabs).toBe(0);
    expect(mismatches(again, model)).toEqual([]);
    await again.close();
  });

  it('another store commits between the slices (each in its own instance, the other one growing)', async () => {
    const a = await open(tmp.file(`a${n++}.db`), opts);
    // b's commits skip the sync: a 24 MiB fdatasync behind other test files' syncs once took as
    // long as all of a's slices (one round).
    const b = await open(tmp.file(`b${n++}.db`), { checkpointIdleMs: 0, durable: false });
    const modelA = new Map<string, Buffer>();
    await load(a, modelA, 1);
    let settled = false;
    const cp = a.checkpoint().finally(() => {
      settled = true;
    });
    const modelB = new Map<string, Buffer>();
    let round = 0;
    while (!settled) {
      // The first is big enough to grow b's instance's memory (its plan and output); the others
      // keep a's slices interleaved with b's commits.
      const size = round === 0 ? 24 * 1024 * 1024 : 64 * 1024 * (1 + (round % 8));
      const v = Buffer.alloc(size, round & 0xff);
      await b.transaction((tx) => {
        tx.set(`big ${round}`, v);
        for (let i = 0; i < 200; i++) tx.set(`small ${round} ${i}`, `v${i}`);
      });
      modelB.set(`big ${round}`, v);
      for (let i = 0; i < 200; i++) modelB.set(`small ${round} ${i}`, Buffer.from(`v${i}`));
      round++;
    }
    await cp;
    expect(a.stats.slicedCheckpoints).toBe(1);
    expect(round).toBeGreaterThan(1);
    for (const db of [a, b]) expect(db.check().problems).toEqual([]);
    const againA = await crashCopy(a, tmp.file);
    expect(againA.replayedSlabs).toBe(0);
    expect(mismatches(againA, modelA)).toEqual([]);
    expect(againA.check().problems).toEqual([]);
    await againA.close();
    await b.close();
    const againB = await open(b.path);
    expect(mismatches(againB, modelB)).toEqual([]);
    await againB.close();
    await a.close();
  });

  it('a write failing halfway through the append keeps every published key and loses nothing durable', async () => {
    const db = await open(tmp.file(`f${n++}.db`), { ...opts, cacheBytes: 8 * 1024 * 1024 });
    const model = new Map<string, Buffer>();
    await load(db, model, 2);
    const log = (db as unknown as { log: { writeAhead: (b: Buffer, len: number, off: number) => void } }).log;
    const real = log.writeAhead.bind(log);
    let parts = 0;
    log.writeAhead = (buf, len, off) => {
      if (++parts === 2) throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
      real(buf, len, off);
    };
    await expect(db.checkpoint()).rejects.toBeInstanceOf(IoFailedError);
    expect(parts).toBe(2); // it failed in the middle, with one part already in the file
    await expect(db.set('after', 'x')).rejects.toBeInstanceOf(IoFailedError);
    // Nothing points at the half-written slab: every published key reads from memory or the log.
    expect(mismatches(db, model)).toEqual([]);
    expect([...db.keys()].length).toBe(KEYS);
    log.writeAhead = real;
    await db.close();
    const again = await open(db.path);
    expect(again.count()).toBe(KEYS);
    expect(mismatches(again, model)).toEqual([]);
    expect(again.check().problems).toEqual([]);
    await again.close();
  });
});

describe('sliced checkpoint options', () => {
  it('refuses bad values with a typed error and opens nothing', async () => {
    const file = tmp.file(`o${n++}.db`);
    await expect(open(file, { checkpointSliceMs: -1 })).rejects.toBeInstanceOf(BadArgumentError);
    await expect(open(file, { checkpointSliceMs: Number.NaN })).rejects.toBeInstanceOf(BadArgumentError);
    await expect(open(file, { slicedCheckpointBytesMin: -5 })).rejects.toBeInstanceOf(BadArgumentError);
    const db = await open(file, { slicedCheckpointBytesMin: 0, checkpointSliceMs: 0 });
    await db.set('a', 'b');
    await db.checkpoint();
    expect(db.stats.checkpoints).toBeGreaterThan(0);
    expect(db.stats.slicedCheckpoints).toBe(db.stats.checkpoints); // 0: every checkpoint is sliced
    await db.close();
  });
});

describe('SlabBuilder.buildSliced', () => {
  it('builds the same bytes as one go, pausing after every leaf while linear memory grows', async () => {
    const w = new TreeWriter(memoryOnly, { root: null, count: 0 }, 1, 4096);
    for (let i = 0; i < 20_000; i++) w.set(key(i) as BinKey, value(i, 3).toString('latin1') as InlineValue);
    const input: SlabInput = { actions: [], keyCount: w.count, tag: 7, prev: null, start: 8192, checkpoint: { root: w.root, keyCount: w.count } };
    const whole = new SlabBuilder().build(input);
    const expected = Buffer.from(whole.bytes().subarray(0, whole.len)); // a copy: later allocations may move nothing, but detach views
    let pauses = 0;
    let grown = 0;
    const held: number[] = [];
    const sliced = await new SlabBuilder().buildSliced(input, 0, async () => {
      pauses++;
      // Grow linear memory now and then: every view the build holds on it is detached.
      if (pauses % 50 === 0 && grown < 4) {
        // Allocate until linear memory grows (it may hold free space from earlier work), a few
        // times (pointers are u32: this instance is not meant to pass 2 GiB).
        const before = core.memory.buffer;
        for (let i = 0; i < 64 && core.memory.buffer === before; i++) held.push(core.alloc(4 * 1024 * 1024));
        if (core.memory.buffer !== before) grown++;
      }
      await nextTurn();
    });
    expect(pauses).toBeGreaterThan(100); // once per leaf: there are hundreds
    expect(grown).toBeGreaterThan(1);
    expect(sliced.len).toBe(whole.len);
    expect(Buffer.compare(sliced.bytes().subarray(0, sliced.len), expected)).toBe(0);
    expect(sliced.commit).toEqual(whole.commit);
    const written = await sliced.applySliced(0, async () => {
      held.push(core.alloc(1024 * 1024));
      await nextTurn();
    });
    // Each node's position and length name its own entry in the bytes.
    for (const node of written) {
      const at = node.pos - input.start;
      expect(expected.readUInt32LE(at + 4) + 9).toBe(node.len);
      expect(expected[at + 8]).toBe(node.t === T.Leaf ? 2 : 3);
    }
    expect(written.length).toBeGreaterThan(100);
    for (const p of held) core.free(p);
  }, 60_000);
});
