// Background checkpoints (db.ts startBackgroundCheckpoint): a big checkpoint the store chose itself
// is written after the commit that found it due, which settles first; it waits for the writer,
// then holds it while it encodes, appends (the event loop turning between slices) and switches
// the tree to its written nodes. Its commit carries the tree of the commit published when it
// started and names that commit, so replay starts there and replays the commits in between onto
// it. Checked here: what readers, reopens and crash copies see at every phase; forced
// checkpoints and close() in the middle of one; a torn or damaged checkpoint slab.
import fs from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { CorruptionError, open, type Db, type OpenOptions } from '../../src/index.js';
import { loadCommit, readSuperblocks, replayAfterCheckpoint } from '../../src/engine/recovery.js';
import { FileLog } from '../../src/engine/log-file.js';
import { COMMIT_ENTRY_BYTES, type CommitRecord } from '../../src/engine/codec.js';
import { crashCopy } from '../support/crash-copy.js';
import { mismatches as valueMismatches } from '../support/memory-tree.js';
import { tempDir } from '../support/tmp.js';

const tmp = tempDir('background');
afterAll(() => tmp.cleanup());
let n = 0;

const KEYS = 8_000;
const key = (i: number) => `key:${((i * 7919) % KEYS).toString(36).padStart(4, '0')}`;
const value = (i: number, round: number) => Buffer.alloc(60 + (i % 40), (i * 7 + round) & 0xff);

/**
 * Background checkpoints at a small scale: one once 4 MiB of log has built up (with at least 64
 * KiB of changed nodes), staged and cached a node at a time (slice 0), so a batch runs between
 * any two of its steps. What those batches change while it runs (~1,000 of ~5 KB each) stays
 * below the 16 MiB (DIRTY_OVER_INTERVAL_MAX intervals) that make it hurry; the bounds test below
 * sets that off on purpose.
 */
const opts: OpenOptions = {
  checkpointIdleMs: 0,
  checkpointTreeOverLogMax: 0,
  checkpointIntervalBytes: 4 * 1024 * 1024,
  slicedCheckpointBytesMin: 64 * 1024,
  checkpointSliceMs: 0,
  nodeBytesMax: 1024,
};

type Phase = 'waiting' | 'writing' | null;
/** The running background checkpoint's phase (a private field: what the tests need to aim at). */
const phase = (db: Db): Phase => (db as unknown as { background: { phase: Phase } | null }).background?.phase ?? null;
const backgroundDone = (db: Db): Promise<void> => (db as unknown as { background: { done: Promise<void> } | null }).background?.done ?? Promise.resolve();

/** Keys whose value differs from the model, and the count if it does. */
function mismatches(db: Pick<Db, 'get' | 'count'>, model: Map<string, Buffer>): string[] {
  const bad = valueMismatches(db, model);
  if (db.count() !== model.size) bad.push(`count ${db.count()} against ${model.size}`);
  return bad;
}

/** Writes `groups` transactions of `size` sets from `writers` writers at once; the model follows acknowledgements. */
async function write(db: Db, model: Map<string, Buffer>, round: number, groups: number, size = 50, writers = 3, onAck?: () => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: writers }, async () => {
      while (next < groups) {
        const g = next++;
        const pairs: Array<[string, Buffer]> = [];
        for (let j = 0; j < size; j++) {
          const i = (g * size + j * 37 + round * 101) % KEYS;
          pairs.push([key(i), value(i, round + g)]);
        }
        await db.transaction((tx) => {
          for (const [k, v] of pairs) tx.set(k, v);
        });
        for (const [k, v] of pairs) model.set(k, v);
        if (onAck !== undefined) await onAck();
      }
    }),
  );
}

/**
 * The commits of a closed store's file (or a copy of an open one's), from `last` back along their
 * links, up to and including the first for which `goOn` is false.
 */
function commitsBack(file: string, last: CommitRecord, goOn: (c: CommitRecord) => boolean): CommitRecord[] {
  const log = FileLog.open(file, { readOnly: true });
  try {
    const out: CommitRecord[] = [];
    let c = loadCommit(log, last.pos, COMMIT_ENTRY_BYTES);
    for (;;) {
      out.push(c);
      if (!goOn(c) || c.prevCommitPos === 0) break;
      c = loadCommit(log, c.prevCommitPos, COMMIT_ENTRY_BYTES);
    }
    return out;
  } finally {
    log.close();
  }
}

/** A copy of an open store's file, as a crash would leave it. */
function copyOf(db: Db): string {
  const file = tmp.file(`copy${n++}.db`);
  fs.copyFileSync(db.path, file);
  return file;
}

/**
 * Writes until a background checkpoint is past its append, then waits for it; returns its commit:
 * the newest whose slab holds the tree it names (the commits after it name the same tree).
 */
async function untilOneWritten(
  db: Db, model: Map<string, Buffer>,
): Promise<{ round: number; cp: CommitRecord; modelAt: Map<number, Map<string, Buffer>> }> {
  let round = 0;
  // The model at each recent commit (one writer: acknowledged = published).
  const modelAt = new Map<number, Map<string, Buffer>>();
  const had = db.stats.backgroundCheckpoints;
  while (db.stats.backgroundCheckpoints === had && phase(db) === null) {
    await write(db, model, round++, 1, 50, 1);
    const seq = (db.fileInfo().lastCommit as CommitRecord).seq;
    modelAt.set(seq, new Map(model));
    modelAt.delete(seq - 8);
    expect(round).toBeLessThan(8000);
  }
  await backgroundDone(db);
  return { round, cp: lastCheckpointCommit(db), modelAt };
}

/** The newest commit whose slab holds the tree it names, from a copy of the store's file. */
function lastCheckpointCommit(db: Db): CommitRecord {
  const holdsItsTree = (c: CommitRecord) => c.rootPos >= c.slabStart && c.rootPos < c.pos;
  const chain = commitsBack(copyOf(db), db.fileInfo().lastCommit as CommitRecord, (c) => !holdsItsTree(c));
  const cp = chain[chain.length - 1];
  expect(holdsItsTree(cp) && cp.treeSeq < cp.seq).toBe(true); // (a background checkpoint's)
  return cp;
}

describe('background checkpoints', () => {
  it('writes wait for one; readers, a reopen and crash copies at every phase see exactly the acknowledged writes', async () => {
    const db = await open(tmp.file(`a${n++}.db`), opts);
    const model = new Map<string, Buffer>();
    const seenPhases = new Set<Phase>();
    let copies = 0;
    let reads = 0;
    /** A reader and, once a phase, a crash copy (the file as it is, no close): exactly the acknowledged writes. */
    const look = async (p: Phase) => {
      for (let j = 0; j < 5; j++) {
        const k = key((reads++ * 131) % KEYS);
        const want = model.get(k);
        if (want !== undefined) expect(db.get(k)?.equals(want)).toBe(true);
      }
      if (p === null || seenPhases.has(p)) return;
      seenPhases.add(p);
      const snapshot = new Map(model);
      const again = await crashCopy(db, tmp.file);
      copies++;
      expect(mismatches(again, snapshot)).toEqual([]);
      expect(again.check().problems).toEqual([]);
      await again.close();
    };
    // One writer: when a write is acknowledged, the file holds exactly the model (several would
    // have other transactions durable but not yet acknowledged). Batches of several writers are
    // in the in-place property test (test/engine/in-place.test.ts). A watcher looks between the
    // turns a checkpoint's slices give back (no write is acknowledged while it holds the writer).
    let stop = false;
    const watcher = (async () => {
      while (!stop) {
        await new Promise<void>((resolve) => setImmediate(resolve));
        const p = phase(db);
        if (p === 'writing') await look(p);
      }
    })();
    for (let round = 0; db.stats.backgroundCheckpoints < 2; round++) {
      await write(db, model, round, 100, 50, 1, () => look(phase(db)));
      expect(round).toBeLessThan(40);
    }
    stop = true;
    await watcher;
    expect([...seenPhases].sort(), JSON.stringify(db.stats)).toEqual(['waiting', 'writing']);
    expect(copies).toBeGreaterThanOrEqual(2);
    await backgroundDone(db);
    expect(mismatches(db, model)).toEqual([]);
    const report = db.check();
    expect(report.problems).toEqual([]);
    expect(report.keys).toBe(model.size);
    const again = await crashCopy(db, tmp.file);
    expect(mismatches(again, model)).toEqual([]);
    expect(again.check().problems).toEqual([]);
    await again.close();
    await db.close();
    const reopened = await open(db.path, opts);
    expect(reopened.replayedSlabs).toBe(0); // close wrote a checkpoint of its own
    expect(mismatches(reopened, model)).toEqual([]);
    await reopened.close();
  });

  it("its commit names the earlier commit whose tree it holds; replay starts there and goes through the checkpoint's slab", async () => {
    const db = await open(tmp.file(`b${n++}.db`), opts);
    const model = new Map<string, Buffer>();
    const { cp } = await untilOneWritten(db, model);
    // It takes the writer on the turn after its tree's commit, before any later batch.
    expect(cp.treeSeq).toBe(cp.seq - 1);
    expect(cp.rootPos).toBeGreaterThanOrEqual(cp.slabStart); // the tree lies in its own slab
    const last = db.fileInfo().lastCommit as CommitRecord;
    const file = copyOf(db);
    // Every commit from its tree's commit on, newest first: the later ones name the same tree.
    const chain = commitsBack(file, last, (c) => c.seq > cp.treeSeq);
    const treeCommit = chain[chain.length - 1];
    expect(treeCommit.seq).toBe(cp.treeSeq);
    expect(treeCommit.pos).toBe(cp.treeCommitPos);
    expect(treeCommit.slabStart).toBeLessThan(cp.slabStart);
    for (const c of chain.slice(0, chain.length - 1)) {
      if (c.seq >= cp.seq) expect([c.treeSeq, c.rootPos]).toEqual([cp.treeSeq, cp.rootPos]);
      else expect(c.treeSeq).toBeLessThan(cp.treeSeq); // before it: the checkpoint before
    }
    // What replay reads, and the log it counts toward the next checkpoint: all but its slab.
    const log = FileLog.open(file, { readOnly: true });
    const replayed = replayAfterCheckpoint(log, last, () => undefined);
    log.close();
    expect(replayed.slabs).toBe(last.seq - cp.treeSeq);
    expect(replayed.logBytes).toBe(last.pos + last.len - (treeCommit.pos + treeCommit.len) - (cp.pos + cp.len - cp.slabStart));
    const again = await open(file, opts);
    expect(again.replayedSlabs).toBe(last.seq - cp.treeSeq); // the commits in between, its own, and those after
    expect(mismatches(again, model)).toEqual([]);
    expect(again.check().problems).toEqual([]);
    await again.close();
    await db.close();
  });

  it('a checkpoint asked for while one waits for the writer or writes comes after it', async () => {
    for (const target of ['waiting', 'writing'] as const) {
      const db = await open(tmp.file(`c${n++}.db`), opts);
      const model = new Map<string, Buffer>();
      let round = 0;
      // (It takes the writer on the next turn, before the forced checkpoint's batch: never stopped.)
      let forced: Promise<void> | null = null;
      let before = { ...db.stats };
      // While it writes no write is acknowledged: a watcher asks between its slices.
      let stop = false;
      const watcher = (async () => {
        while (!stop && forced === null) {
          await new Promise<void>((resolve) => setImmediate(resolve));
          if (forced === null && phase(db) === target) {
            before = { ...db.stats };
            forced = db.checkpoint();
          }
        }
      })();
      while (forced === null) {
        await write(db, model, round++, 1, 50, 1, async () => {
          if (forced === null && phase(db) === target) {
            before = { ...db.stats };
            forced = db.checkpoint();
          }
        });
        expect(round).toBeLessThan(20_000);
      }
      stop = true;
      await watcher;
      await forced;
      await backgroundDone(db);
      expect(db.stats.backgroundDropped - before.backgroundDropped).toBe(0);
      expect(db.stats.backgroundCheckpoints - before.backgroundCheckpoints).toBe(1);
      expect(db.stats.checkpoints - before.checkpoints).toBe(2); // it, then the forced one
      expect(mismatches(db, model)).toEqual([]);
      expect(db.check().problems).toEqual([]);
      const again = await crashCopy(db, tmp.file);
      expect(again.replayedSlabs).toBe(0); // the forced checkpoint is the last commit
      expect(mismatches(again, model)).toEqual([]);
      await again.close();
      // Writes go on, and background checkpoints start again.
      const had = db.stats.backgroundCheckpoints;
      while (db.stats.backgroundCheckpoints === had) await write(db, model, round++, 20);
      await backgroundDone(db);
      expect(mismatches(db, model)).toEqual([]);
      expect(db.check().problems).toEqual([]);
      await db.close();
    }
  });

  it('close() in the middle of one loses nothing; the file then replays nothing', async () => {
    for (const target of ['waiting', 'writing'] as const) {
      const db = await open(tmp.file(`d${n++}.db`), opts);
      const model = new Map<string, Buffer>();
      let closing: Promise<void> | null = null;
      let round = 0;
      let stop = false;
      const watcher = (async () => {
        while (!stop && closing === null) {
          await new Promise<void>((resolve) => setImmediate(resolve));
          if (closing === null && phase(db) === target) closing = db.close();
        }
      })();
      while (closing === null) {
        await write(db, model, round++, 1, 50, 1);
        if (closing === null && phase(db) === target) closing = db.close();
        expect(round).toBeLessThan(8000);
      }
      stop = true;
      await watcher;
      await closing;
      const again = await open(db.path, opts);
      expect(again.replayedSlabs).toBe(0);
      expect(mismatches(again, model)).toEqual([]);
      expect(again.check().problems).toEqual([]);
      await again.close();
    }
  });

  it('a torn checkpoint slab is cut back to the commit before it, with nothing lost', async () => {
    const db = await open(tmp.file(`e${n++}.db`), opts);
    const model = new Map<string, Buffer>();
    const { cp, modelAt } = await untilOneWritten(db, model);
    // The file up to the end of its slab: as if the crash came right after its append.
    const full = fs.readFileSync(copyOf(db)).subarray(0, cp.pos + cp.len);
    const slabLen = cp.pos + cp.len - cp.slabStart;
    // What the store held then: the model at the commit before it (the slab carries no writes).
    const before = modelAt.get(cp.seq - 1);
    expect(before).toBeDefined();
    const file = tmp.file(`e-torn${n++}.db`);
    let cuts = 0;
    // Cut at a spread of offsets inside the slab, its first and last bytes among them (every
    // byte would take minutes).
    for (let k = 0; k < 12; k++) {
      const cut = k === 11 ? cp.pos + cp.len - 1 : cp.slabStart + 1 + Math.floor((slabLen * k) / 11);
      fs.writeFileSync(file, full.subarray(0, cut));
      const torn = await open(file, opts);
      expect(torn.fileInfo().lastCommit?.seq).toBe(cp.seq - 1);
      expect(torn.check().problems).toEqual([]);
      expect(mismatches(torn, before as Map<string, Buffer>)).toEqual([]);
      await torn.close();
      cuts++;
    }
    expect(cuts).toBe(12);
    await db.close();
  });

  it("damage inside its slab is reported at open, whether the superblock's durable mark lies before the slab or past it", async () => {
    for (const superblockIntervalBytes of [64 << 20, 16 * 1024]) {
      // With superblocks every 16 KiB the durable mark passes the slab, so only replay reads it.
      const o = { ...opts, superblockIntervalBytes };
      const db = await open(tmp.file(`f${n++}.db`), o);
      const model = new Map<string, Buffer>();
      const { round, cp } = await untilOneWritten(db, model);
      // More commits after it, not yet checkpointed: a crash copy replays through its slab.
      await write(db, model, round, 3, 50, 1);
      const file = copyOf(db);
      const damaged = copyOf(db);
      await db.close();
      // Where the copy's superblock puts the durable mark, read before anything opens it.
      const sbLog = FileLog.open(damaged, { readOnly: true });
      const { sb } = readSuperblocks(sbLog);
      sbLog.close();
      const again = await open(file, o);
      expect(again.replayedSlabs).toBeGreaterThan(3);
      expect(mismatches(again, model)).toEqual([]);
      await again.close();
      const b = fs.readFileSync(damaged);
      b[cp.slabStart + Math.floor((cp.pos - cp.slabStart) / 3)] ^= 0x01;
      fs.writeFileSync(damaged, b);
      await expect(open(damaged, o)).rejects.toThrow(CorruptionError);
      // Past the slab: only replay read it. Before it: the tail scan did.
      if (superblockIntervalBytes < 1 << 20) expect(sb.dataEnd).toBeGreaterThan(cp.pos);
      else expect(sb.dataEnd).toBeLessThan(cp.slabStart);
    }
  });
});

describe('background checkpoints of several MiB', () => {
  it('hold the writer from encoding to append: a transaction awaiting across turns commits before or after, never in between', async () => {
    // A slab past 4 MiB encodes and appends in pieces, a turn between them (ENCODE_SLICE_BYTES,
    // APPEND_SLICE_BYTES); a batch that could run in between would append into its stretch.
    const db = await open(tmp.file(`h${n++}.db`), { checkpointIdleMs: 0, checkpointTreeOverLogMax: 0, checkpointIntervalBytes: 4 << 20, slicedCheckpointBytesMin: 1 << 20 });
    const big = (i: number, r: number) => Buffer.alloc(100, (i + r) & 0xff);
    const model = new Map<string, Buffer>();
    const KEYS_BIG = 60_000;
    for (let b = 0; b < KEYS_BIG; b += 2_000) {
      await db.transaction((tx) => {
        for (let i = b; i < b + 2_000; i++) tx.set(`big:${i}`, big(i, 0));
      });
      for (let i = b; i < b + 2_000; i++) model.set(`big:${i}`, big(i, 0));
    }
    let slow = 0;
    for (let r = 1; db.stats.backgroundCheckpoints < 2; r++) {
      const writes: Array<[string, Buffer]> = [];
      for (let j = 0; j < 500; j++) {
        const i = (r * 7919 + j * 131) % KEYS_BIG;
        writes.push([`big:${i}`, big(i, r)]);
      }
      await Promise.all([
        // A transaction that awaits a few turns between its sets.
        db.transaction(async (tx) => {
          for (const [k, v] of writes.slice(0, 250)) {
            tx.set(k, v);
            if ((slow++ & 63) === 0) await new Promise<void>((resolve) => setImmediate(resolve));
          }
        }),
        ...writes.slice(250).map(([k, v]) => db.set(k, v)),
      ]);
      for (const [k, v] of writes) model.set(k, v);
      expect(r).toBeLessThan(400);
    }
    await backgroundDone(db);
    // Its slab was big enough to be encoded and appended in pieces.
    const cp = lastCheckpointCommit(db);
    expect(cp.pos - cp.slabStart).toBeGreaterThan(4 << 20);
    expect(mismatches(db, model)).toEqual([]);
    expect(db.check().problems).toEqual([]);
    const again = await crashCopy(db, tmp.file);
    expect(mismatches(again, model)).toEqual([]);
    expect(again.check().problems).toEqual([]);
    await again.close();
    await db.close();
  }, 60_000);
});

describe('bounds', () => {
  it('a big sorted batch, whose tree costs about what its log does, is written once, in its commit', async () => {
    const db = await open(tmp.file(`j${n++}.db`), { checkpointIdleMs: 0, slicedCheckpointBytesMin: 64 * 1024 });
    let logical = 0;
    await db.transaction((tx) => {
      for (let i = 0; i < 20_000; i++) {
        const k = `sorted:${String(i).padStart(6, '0')}`;
        tx.set(k, Buffer.alloc(100, i & 0xff));
        logical += k.length + 100;
      }
    });
    await backgroundDone(db);
    expect(db.stats.backgroundCheckpoints).toBe(0);
    expect(db.stats.checkpoints).toBe(1);
    // The tree alone, not also a log of the same keys and values.
    expect(db.fileInfo().fileBytes).toBeLessThan(1.4 * logical);
    expect(db.count()).toBe(20_000);
    expect(db.check().problems).toEqual([]);
    await db.close();
  });

  it('compactTo writes the tree once: its batches checkpoint in their own commits, never in the background', async () => {
    const db = await open(tmp.file(`j${n++}.db`), { checkpointIdleMs: 0 });
    let logical = 0;
    for (let b = 0; b < 50_000; b += 2_000) {
      await db.transaction((tx) => {
        for (let i = b; i < b + 2_000; i++) {
          tx.set(`compact:${i}`, Buffer.alloc(100, i & 0xff));
          logical += `compact:${i}`.length + 100;
        }
      });
    }
    const target = tmp.file(`j-out${n++}.db`);
    const r = await db.compactTo(target); // 4 MiB batches: each past slicedCheckpointBytesMin
    expect(r.keys).toBe(50_000);
    // Written once: the tree (keys, values, the leaves' framing), not also a log of the keys.
    expect(r.bytes).toBeLessThan(1.4 * logical);
    await db.close();
  });
});

describe('backgroundCheckpoints: false', () => {
  it('writes wait for the whole checkpoint, as before', async () => {
    const db = await open(tmp.file(`g${n++}.db`), { ...opts, backgroundCheckpoints: false });
    const model = new Map<string, Buffer>();
    for (let round = 0; db.stats.checkpoints < 2; round++) {
      await write(db, model, round, 100);
      expect(round).toBeLessThan(100);
    }
    expect(db.stats.slicedCheckpoints).toBeGreaterThan(0); // in slices, inside their commits
    expect(db.stats.backgroundCheckpoints).toBe(0);
    expect(db.stats.backgroundCommits).toBe(0);
    expect(mismatches(db, model)).toEqual([]);
    expect(db.check().problems).toEqual([]);
    await db.close();
  });
});
