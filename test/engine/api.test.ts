// The public API's contracts: limits, typed errors that change nothing, transaction semantics,
// tags, snapshots, ranges, offline compaction.
import fs from 'node:fs';
import v8 from 'node:v8';
import vm from 'node:vm';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { BadArgumentError, ClosedError, CommitTooLargeError, IoFailedError, KeyTooLargeError, LockedError, ValueTooLargeError, open } from '../../src/index.js';
import { tempDir } from '../support/tmp.js';

const tmp = tempDir('api');
afterAll(() => tmp.cleanup());
let n = 0;
const fresh = () => tmp.file(`a${n++}.db`);

describe('limits and bad input', () => {
  it('rejects oversized keys and values with typed errors and writes nothing', async () => {
    const db = await open(fresh(), { maxKeyBytes: 100, maxValueBytes: 1000 });
    await db.set('ok', 'v');
    const size = db.fileInfo().fileBytes;
    await expect(db.set('k'.repeat(101), 'v')).rejects.toBeInstanceOf(KeyTooLargeError);
    await expect(db.set('k', Buffer.alloc(1001))).rejects.toBeInstanceOf(ValueTooLargeError);
    await expect(db.delete('k'.repeat(101))).rejects.toBeInstanceOf(KeyTooLargeError);
    await expect(db.transaction((tx) => tx.set('x', Buffer.alloc(5000)))).rejects.toBeInstanceOf(ValueTooLargeError);
    await expect(db.transaction(() => undefined, { tag: -1 })).rejects.toBeInstanceOf(BadArgumentError);
    expect(db.fileInfo().fileBytes).toBe(size);
    expect(db.count()).toBe(1);
    expect(db.get('x')).toBeUndefined();
    await db.close();
    await expect(db.set('a', 'b')).rejects.toBeInstanceOf(ClosedError);
    expect(() => db.get('a')).toThrow(ClosedError);
  });

  it('values up to what one slab carries: a larger maxValueBytes is refused; a batch of sets past a slab commits in halves', async () => {
    // Each value passes whole through the encoder's WebAssembly memory, whose blocks stop at 1 GiB:
    // a 520 MiB value used to fail its commit with IO_FAILED and leave the store read-only.
    await expect(open(fresh(), { maxValueBytes: 1 << 30 })).rejects.toBeInstanceOf(BadArgumentError);
    const file = fresh();
    const db = await open(file, { maxValueBytes: 768 << 20, durable: false });
    await db.set('small', 'v');
    const big = Buffer.alloc(600 << 20, 7);
    // One batch: ~1.2 GiB of slab, refused whole before anything is written (it failed both
    // sets until round 30), then made again as two batches, one value each.
    const commits = db.stats.commits;
    await Promise.all([db.set('big1', big), db.set('big2', big)]);
    expect(db.stats.batchesSplit).toBe(1);
    expect(db.stats.commits - commits).toBe(2);
    // A transaction is one commit: past a slab it fails whole, nothing written, and the store goes on.
    const size = db.fileInfo().fileBytes;
    await expect(db.transaction((tx) => {
      tx.set('t1', big);
      tx.set('t2', big);
    })).rejects.toBeInstanceOf(CommitTooLargeError);
    expect(db.fileInfo().fileBytes).toBe(size);
    expect(db.get('t1')).toBeUndefined();
    await db.set('after', 'ok');
    expect(db.get('big1')?.length).toBe(big.length);
    expect(db.get('big2')?.equals(big)).toBe(true);
    await db.close();
    const again = await open(file, { maxValueBytes: 768 << 20 });
    expect(again.count()).toBe(4);
    expect(again.get('big2')?.length).toBe(big.length);
    expect(again.get('after')?.toString()).toBe('ok');
    await again.close();
  });

  it('a closed store leaves no encoder memory behind: open, write, close, many times, stays flat', async () => {
    const { core } = await import('../../src/wasm/module.js');
    const cycle = async () => {
      const db = await open(fresh(), { durable: false, maxValueBytes: 16 << 20 });
      await db.set('v', Buffer.alloc(8 << 20, 1));
      await db.close();
    };
    await cycle();
    const before = core.memory.buffer.byteLength;
    for (let i = 0; i < 20; i++) await cycle();
    // Without the builder's dispose at close, 20 cycles grew it by ~800 MiB.
    expect(core.memory.buffer.byteLength - before).toBeLessThan(64 << 20);
  });

  it('a closed Db object the application still holds keeps none of its tree\'s WebAssembly memory', async () => {
    // The instance reserves ~2.7 GB and, after a 1M-key load, holds ~1 GB resident: a server that
    // keeps its closed stores' objects (in a map, a shutdown list) kept all of it until they went.
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    const db = await open(fresh());
    await db.transaction((tx) => {
      for (let i = 0; i < 5000; i++) tx.set(`k${i}`, `v${i}`);
    });
    const snap = db.snapshot(); // held, unreleased, past close: it holds the Db, not the tree
    const tree = new WeakRef((db as unknown as { storeTree: object }).storeTree);
    await db.close();
    // (No deref() between the collections: it would keep the tree alive until the job ends.)
    for (let i = 0; i < 3; i++) {
      gc();
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(tree.deref() === undefined).toBe(true); // (the tree itself would be too big to print)
    // Every call still answers as a closed store does.
    expect(() => db.get('k1')).toThrow(ClosedError);
    expect(() => db.count()).toThrow(ClosedError);
    expect(() => [...db.range()]).toThrow(ClosedError);
    expect(() => snap.get('k1')).toThrow(ClosedError);
    expect(() => snap.count()).toThrow(ClosedError);
    snap.release();
    await expect(db.set('a', 'b')).rejects.toBeInstanceOf(ClosedError);
    expect(db.isClosed).toBe(true);
  });

  it('rejects keys and values of the wrong type with a clear error', async () => {
    const db = await open(fresh());
    const bad = [42, null, undefined, { a: 1 }, [1, 2]] as unknown as string[];
    for (const x of bad) {
      await expect(db.set(x, 'v')).rejects.toBeInstanceOf(BadArgumentError);
      await expect(db.set('k', x)).rejects.toBeInstanceOf(BadArgumentError);
      expect(() => db.get(x)).toThrow(BadArgumentError);
    }
    expect(db.count()).toBe(0);
    await db.close();
  });

  it('concurrent close() calls share one close and leave one final checkpoint', async () => {
    const file = fresh();
    const db = await open(file);
    void db.set('a', '1');
    await Promise.all([db.close(), db.close(), db.close()]);
    const again = await open(file);
    expect(again.get('a')?.toString()).toBe('1');
    expect(again.check().problems).toEqual([]);
    expect(again.replayedSlabs).toBe(0);
    await again.close();
  });

  it('writes queued while close() drains a batch that spans turns all commit, one batch at a time', async () => {
    // close() starts the queued batch itself; the start already scheduled for it must not run a
    // second batch beside the first (it did, and one of the two commits was lost on reopen).
    const file = fresh();
    const db = await open(file, { checkpointIdleMs: 0 });
    await db.set('base', 'x');
    await new Promise((r) => setTimeout(r, 20)); // nothing running
    const tx = db.transaction(async (t) => {
      await new Promise((r) => setTimeout(r, 20));
      t.set('a', '1');
    });
    const closing = db.close();
    const later = db.set('b', '2');
    await Promise.all([tx, later, closing]);
    const again = await open(file);
    expect([again.get('base')?.toString(), again.get('a')?.toString(), again.get('b')?.toString()]).toEqual(['x', '1', '2']);
    expect(again.count()).toBe(3);
    expect(again.check().problems).toEqual([]);
    await again.close();
  });

  it('an opener that found no file never replaces the one another opener created meanwhile', async () => {
    // Two openers of a new path both saw no file; the first created it, locked it and wrote. The
    // second's init renamed a fresh file over it: it then locked that one without conflict, and
    // every write the first acknowledged went with the old inode (3 of 40 racing process pairs).
    // Here the race is made certain: the second opener is told the file does not exist.
    const file = fresh();
    const a = await open(file);
    await a.set('a', '1');
    const spy = vi.spyOn(fs, 'existsSync').mockReturnValueOnce(false);
    try {
      await expect(open(file)).rejects.toBeInstanceOf(LockedError);
    } finally {
      spy.mockRestore();
    }
    await a.set('b', '2');
    await a.close();
    const again = await open(file);
    expect([again.get('a')?.toString(), again.get('b')?.toString()]).toEqual(['1', '2']);
    await again.close();
    expect(fs.readdirSync(tmp.file('')).filter((f) => f.includes('.init-'))).toEqual([]);
  });

  it('a durable operation that writes nothing still syncs the commits it rests on', async () => {
    // A confirm of an equal value, a failed testAndSet, a delete of a missing key and a read-only
    // transaction resolved without an fdatasync, though the value they confirmed came from a
    // commit made with durable: false: a power loss after the answer lost it.
    const db = await open(fresh(), { checkpointIdleMs: 0 });
    const ops: Array<[string, () => Promise<unknown>]> = [
      ['confirm', () => db.confirm('k', 'v1')],
      ['testAndSet', () => db.testAndSet('k', 'other', 'v2')],
      ['delete', () => db.delete('missing')],
      ['read-only transaction', () => db.transaction((tx) => tx.get('k'))],
    ];
    for (const [name, op] of ops) {
      await db.transaction((tx) => tx.set('k', 'v1'), { durable: false });
      const before = db.stats.syncs;
      await op();
      expect([name, db.stats.syncs - before]).toEqual([name, 1]);
      await op(); // nothing unsynced now: no second sync
      expect([name, db.stats.syncs - before]).toEqual([name, 1]);
    }
    await db.close();
  });

  it('default limits are 64 KiB keys and 64 MiB values', async () => {
    const db = await open(fresh());
    await db.set(Buffer.alloc(64 * 1024, 1), 'max key');
    await expect(db.set(Buffer.alloc(64 * 1024 + 1, 1), 'v')).rejects.toBeInstanceOf(KeyTooLargeError);
    await expect(db.set('big', Buffer.alloc(64 * 1024 * 1024 + 1))).rejects.toBeInstanceOf(ValueTooLargeError);
    expect(db.get(Buffer.alloc(64 * 1024, 1))?.toString()).toBe('max key');
    // A key longer than any the store takes (and than the tree's probe area) is simply absent.
    const tooLong = Buffer.alloc(64 * 1024 + 1, 1);
    expect(db.get(tooLong)).toBeUndefined();
    expect(db.exists(tooLong)).toBe(false);
    await db.transaction((tx) => {
      expect(tx.get(tooLong)).toBeUndefined();
      expect(tx.exists(tooLong)).toBe(false);
      expect(tx.get(Buffer.alloc(64 * 1024, 1))?.toString()).toBe('max key');
    });
    const snap = db.snapshot();
    expect(snap.get(tooLong)).toBeUndefined();
    snap.release();
    await expect(open(fresh(), { maxKeyBytes: 64 * 1024 + 1 })).rejects.toBeInstanceOf(BadArgumentError);
    expect(db.check().ok).toBe(true);
    await db.close();
  });
});

describe('writes and transactions', () => {
  it('group-commits writes issued in one turn into one slab', async () => {
    const db = await open(fresh());
    const before = db.stats.commits;
    await Promise.all(Array.from({ length: 500 }, (_, i) => db.set(`k${i}`, `v${i}`)));
    expect(db.stats.commits - before).toBe(1);
    expect(db.stats.syncs).toBe(1);
    expect(db.count()).toBe(500);
    await db.close();
  });

  it('a throwing transaction writes nothing; others in the same batch commit', async () => {
    const db = await open(fresh());
    await db.set('a', '1');
    const bad = db.transaction(async (tx) => {
      tx.set('a', '2');
      tx.set('b', '2');
      await new Promise((r) => setTimeout(r, 5));
      throw new Error('nope');
    });
    const good = db.transaction((tx) => {
      expect(tx.get('a')?.toString()).toBe('1'); // the aborted one left nothing behind
      tx.set('c', '3');
      return 42;
    });
    await expect(bad).rejects.toThrow('nope');
    expect(await good).toBe(42);
    expect(db.get('a')?.toString()).toBe('1');
    expect(db.get('b')).toBeUndefined();
    expect(db.get('c')?.toString()).toBe('3');
    await db.close();
  });

  it('reads are not visible before the commit is durable; the transaction sees its own writes', async () => {
    const db = await open(fresh());
    const p = db.set('k', 'v');
    expect(db.get('k')).toBeUndefined();
    await p;
    expect(db.get('k')?.toString()).toBe('v');
    await db.transaction((tx) => {
      tx.set('k2', 'v2');
      tx.delete('k');
      expect([...tx.keys()].map(String)).toEqual(['k2']);
      expect(tx.exists('k')).toBe(false);
    });
    expect([...db.keys()].map(String)).toEqual(['k2']);
    await db.close();
  });

  it('stores a commit tag that survives reopen, and deletePrefix counts', async () => {
    const file = fresh();
    const db = await open(file);
    expect(db.lastTag).toBeUndefined();
    await db.transaction((tx) => tx.set('p/1', 'x'), { tag: 17 });
    await db.set('p/2', 'y');
    await db.set('q', 'z');
    expect(db.lastTag).toBe(17); // carried forward by untagged commits
    expect(await db.deletePrefix('p/')).toBe(2);
    await db.transaction(() => undefined, { tag: 2 ** 40 });
    await db.close();
    const again = await open(file);
    expect(again.lastTag).toBe(2 ** 40);
    expect([...again.keys()].map(String)).toEqual(['q']);
    await again.close();
  });
});

describe('Arakoon single-key operations (spec §5.2)', () => {
  it('testAndSet, replace, confirm and getMany follow Arakoon\'s semantics', async () => {
    const db = await open(fresh());
    // TEST_AND_SET always returns the previous value; null expected matches an absent key.
    expect(await db.testAndSet('k', null, 'a')).toBeUndefined();
    expect(db.get('k')?.toString()).toBe('a');
    expect((await db.testAndSet('k', 'nope', 'b'))?.toString()).toBe('a'); // no swap
    expect(db.get('k')?.toString()).toBe('a');
    expect((await db.testAndSet('k', 'a', 'b'))?.toString()).toBe('a'); // swap
    expect(db.get('k')?.toString()).toBe('b');
    expect((await db.testAndSet('k', 'b', null))?.toString()).toBe('b'); // wanted null deletes
    expect(db.exists('k')).toBe(false);
    expect(await db.testAndSet('k', 'x', 'y')).toBeUndefined(); // absent, expected set: no swap
    expect(db.exists('k')).toBe(false);
    // REPLACE stores and returns the previous value; null deletes without an error when absent.
    expect(await db.replace('r', '1')).toBeUndefined();
    expect((await db.replace('r', '2'))?.toString()).toBe('1');
    expect((await db.replace('r', null))?.toString()).toBe('2');
    expect(await db.replace('r', null)).toBeUndefined();
    // CONFIRM writes nothing when the value is already there.
    await db.confirm('c', 'same');
    const commits = db.stats.commits;
    await db.confirm('c', 'same');
    expect(db.stats.commits).toBe(commits);
    await db.confirm('c', 'other');
    expect(db.stats.commits).toBe(commits + 1);
    expect(db.get('c')?.toString()).toBe('other');
    // getMany: in the keys' order, undefined for the missing ones.
    expect(db.getMany(['c', 'missing', 'c']).map((v) => v?.toString())).toEqual(['other', undefined, 'other']);
    expect(db.check().problems).toEqual([]);
    await db.close();
  });
});

describe('I/O failure', () => {
  it('a checkpoint whose append fails leaves every published key readable (nothing points at unwritten bytes)', async () => {
    const file = fresh();
    // A tiny cache, so nothing survives in memory by accident; no checkpoint until close (an
    // adaptive one would make the transaction below a checkpoint itself, and leave the forced one
    // nothing to write).
    const db = await open(file, { cacheBytes: 8 * 1024, nodeBytesMax: 1024, checkpointTreeOverLogMax: 0, checkpointIdleMs: 0 });
    const model = new Map<string, string>();
    await db.transaction((tx) => {
      for (let i = 0; i < 3000; i++) {
        const v = `value ${i}`.repeat(1 + (i % 30)); // some inline, some Value entries
        tx.set(`k${i}`, v);
        model.set(`k${i}`, v);
      }
    });
    const log = (db as unknown as { log: { append: (b: Buffer, n: number) => number } }).log;
    const realAppend = log.append.bind(log);
    log.append = () => {
      throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
    };
    expect(db.stats.checkpoints).toBe(0); // the changed tree is all in memory
    // Forcing a checkpoint: the compaction starts with one.
    await expect(db.compact()).rejects.toBeInstanceOf(IoFailedError);
    for (const [k, v] of model) expect(db.get(k)?.toString()).toBe(v);
    expect([...db.keys()].length).toBe(3000);
    log.append = realAppend;
    await db.close();
    const again = await open(file);
    for (const [k, v] of model) expect(again.get(k)?.toString()).toBe(v);
    await again.close();
  });

  it('a failed append rejects the batch, turns the store read-only, and a reopen recovers what was durable', async () => {
    const file = fresh();
    const db = await open(file);
    await db.set('before', '1');
    const log = (db as unknown as { log: { sync: () => Promise<void>; syncFinish: () => boolean } }).log;
    const realSync = log.sync.bind(log);
    const realSyncFinish = log.syncFinish.bind(log);
    const eio = () => Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' });
    log.sync = () => Promise.reject(eio());
    log.syncFinish = () => {
      realSyncFinish(); // the sync thread's request finished, as a failed one would be
      throw eio();
    };
    await expect(db.set('during', '2')).rejects.toBeInstanceOf(IoFailedError);
    await expect(db.set('after', '3')).rejects.toBeInstanceOf(IoFailedError);
    expect(db.get('before')?.toString()).toBe('1'); // reads go on
    expect(db.get('during')).toBeUndefined(); // never published
    log.sync = realSync;
    log.syncFinish = realSyncFinish;
    await db.close();
    const again = await open(file);
    expect(again.get('before')?.toString()).toBe('1');
    expect(again.check().problems).toEqual([]);
    await again.close();
  });

  // The pooled fdatasync of a big commit starts before the nodes get their positions and the
  // caches fill (sliced: across turns of the event loop); its failure must still reach the batch,
  // never surface as an unhandled rejection meanwhile.
  for (const sliced of [false, true]) {
    it(`a failed pooled fdatasync of a ${sliced ? 'sliced ' : ''}checkpoint rejects it and loses nothing durable`, async () => {
      const file = fresh();
      const opts = sliced ? { slicedCheckpointBytesMin: 0, checkpointSliceMs: 0, backgroundCheckpoints: false } : {};
      const db = await open(file, opts);
      const keys = Array.from({ length: 20_000 }, (_, i) => `k${String(i).padStart(5, '0')}`);
      await db.transaction((tx) => {
        for (const k of keys) tx.set(k, 'durable');
      });
      const log = (db as unknown as { log: { sync: () => Promise<void> } }).log;
      const realSync = log.sync.bind(log);
      let failedSyncs = 0;
      log.sync = () => {
        failedSyncs++;
        return Promise.reject(Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' }));
      };
      const before = { ...db.stats };
      await expect(
        db.transaction((tx) => {
          for (const k of keys) tx.set(k, 'x'.repeat(100)); // ~2.3 MB, ~550 leaves: past syncInlineBytesMax, and the cache fills in slices
        }),
      ).rejects.toBeInstanceOf(IoFailedError);
      expect(failedSyncs).toBe(1);
      expect(db.stats.checkpoints - before.checkpoints).toBe(1);
      expect(db.stats.slicedCheckpoints - before.slicedCheckpoints).toBe(sliced ? 1 : 0);
      for (const k of keys) expect(db.get(k)?.toString()).toBe('durable'); // the published tree
      await expect(db.set('after', '1')).rejects.toBeInstanceOf(IoFailedError);
      log.sync = realSync;
      await db.close().catch(() => undefined);
      const again = await open(file);
      expect(again.check().problems).toEqual([]);
      expect(again.count()).toBe(keys.length);
      for (const k of keys) expect(['durable', 'x'.repeat(100)]).toContain(again.get(k)?.toString());
      await again.close();
    });
  }
});

describe('reads', () => {
  it('orders keys as unsigned bytes, then by length', async () => {
    const db = await open(fresh());
    const keys = [Buffer.from([0xff]), Buffer.from('a'), Buffer.from('ab'), Buffer.from([0x00]), Buffer.from(''), Buffer.from('é')];
    await Promise.all(keys.map((k) => db.set(k, 'v')));
    expect([...db.keys()].map((k) => k.toString('hex'))).toEqual(['', '00', '61', '6162', 'c3a9', 'ff']);
    expect([...db.keys({ gt: 'a', lt: Buffer.from([0xff]) })].map((k) => k.toString('hex'))).toEqual(['6162', 'c3a9']);
    expect([...db.keys({ reverse: true, limit: 2 })].map((k) => k.toString('hex'))).toEqual(['ff', 'c3a9']);
    await db.close();
  });

  it('a snapshot keeps its view while writes go on', async () => {
    const db = await open(fresh());
    await db.set('a', '1');
    const snap = db.snapshot();
    await db.set('a', '2');
    await db.set('b', '2');
    expect(snap.get('a')?.toString()).toBe('1');
    expect([...snap.keys()].map(String)).toEqual(['a']);
    expect(snap.count()).toBe(1);
    expect(db.pinnedSnapshots).toBe(1);
    snap.release();
    expect(db.pinnedSnapshots).toBe(0);
    expect(() => snap.get('a')).toThrow(ClosedError);
    await db.close();
  });

  it('a range or keys iterator closed before its first step releases its snapshot', async () => {
    // A generator's finally never runs when it is closed before it starts: the pin stayed until
    // garbage collection, and online compaction waited for it.
    const db = await open(fresh(), { checkpointIdleMs: 0 });
    for (let i = 0; i < 20; i++) await db.set(`k${i}`, `v${i}`);
    const unstarted = [db.range(), db.keys({ reverse: true })];
    const started = db.range();
    expect(started.next().done).toBe(false);
    expect(db.pinnedSnapshots).toBe(3);
    for (const it of [...unstarted, started]) it.return?.();
    expect(db.pinnedSnapshots).toBe(0);
    expect(unstarted[0].next().done).toBe(true);
    for (const _ of db.range()) break; // a for-of that breaks, as before
    expect(db.pinnedSnapshots).toBe(0);
    expect((await db.compact()).keysCopied).toBe(20);
    await db.close();
  });

  it('close() waits for getWith handlers still running', async () => {
    // A handler's transfer reads the file through its own descriptor; with the store closed under
    // it, online compaction by the next opener punched out bytes it was still sending.
    const db = await open(fresh());
    await db.set('v', Buffer.alloc(300_000, 1));
    let release = () => {};
    const gate = new Promise<void>((r) => (release = r));
    const got = db.getWith('v', async (src) => {
      await gate;
      return src.kind;
    });
    let closed = false;
    const closing = db.close().then(() => (closed = true));
    await new Promise((r) => setTimeout(r, 50));
    expect(closed).toBe(false);
    release();
    await closing;
    expect(await got).toBe('location');
  });

  it('a range, keys or compactTo refused for its arguments leaves no snapshot pinned', async () => {
    // A pin left behind held online compaction in its wait for older readers until close.
    const db = await open(fresh(), { checkpointIdleMs: 0 });
    for (let i = 0; i < 50; i++) await db.set(`k${i}`, `v${i}`);
    expect(() => db.range({ limit: 1.5 })).toThrow(BadArgumentError);
    expect(() => db.keys({ gte: 42 as unknown as string })).toThrow(BadArgumentError);
    await expect(db.compactTo(tmp.file('no-such-dir/out.db'))).rejects.toThrow();
    expect(db.pinnedSnapshots).toBe(0);
    const r = await db.compact();
    expect(r.keysCopied).toBe(50);
    await db.close();
  });
});

describe('offline compaction', () => {
  it('compactTo writes only the live tree, with the same contents and tag, and a smaller file', async () => {
    const db = await open(fresh(), { durable: false, checkpointIntervalBytes: 1 }); // a checkpoint per commit
    for (let round = 0; round < 5; round++) {
      await db.transaction((tx) => {
        for (let i = 0; i < 2000; i++) tx.set(`key${(i * 7919) % 2000}`, `v${round}-${i}`.repeat(3));
      }, { tag: round });
    }
    await db.set('big', Buffer.alloc(100_000, 7));
    const target = tmp.file(`compacted${n++}.db`);
    const r = await db.compactTo(target);
    expect(r.keys).toBe(2001);
    const out = await open(target);
    expect(out.check().problems).toEqual([]);
    expect([...out.range()].map(([k, v]) => k.toString() + v.toString())).toEqual([...db.range()].map(([k, v]) => k.toString() + v.toString()));
    expect(out.lastTag).toBe(4);
    const logical = [...db.range()].reduce((s, [k, v]) => s + k.length + v.length, 0);
    expect(fs.statSync(target).size).toBeLessThan(logical * 1.3);
    expect(fs.statSync(target).size).toBeLessThan(db.fileInfo().fileBytes / 2);
    await out.close();
    await expect(db.compactTo(target)).rejects.toBeInstanceOf(BadArgumentError);
    await db.close();
  });
});
