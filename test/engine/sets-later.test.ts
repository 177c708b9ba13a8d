// Sets made after their commit's record is appended (BatchWriter.setLater, Db.commit): a batch of
// up to SET_LATER_MAX sets is logged and its sync started first, and its tree change runs while
// the disk works. The record then carries no key count (commit version 2, codec.ts), and replay
// counts. Reads inside a transaction still see its own sets; an abort still drops them; a set
// that cannot be made after its record was appended leaves nothing behind.
import { Buffer } from 'node:buffer';
import fs from 'node:fs';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { COMMIT_BODY_BYTES, decodeCommitBody, encodeCommitBody } from '../../src/engine/codec.js';
import { CorruptionError } from '../../src/engine/errors.js';
import { FORMAT_VERSION } from '../../src/engine/format.js';
import { FileLog } from '../../src/engine/log-file.js';
import { SET_LATER_MAX } from '../../src/engine/batch-writer.js';
import { open, type OpenOptions } from '../../src/index.js';
import { directIoWorks } from '../support/direct-io.js';
import { writeCorruptStore } from '../support/corrupt-store.js';
import { crashCopy } from '../support/crash-copy.js';
import { tempDir } from '../support/tmp.js';
import { crc32c } from '../../src/wasm/crc32c.js';

const tmp = tempDir('later');
afterAll(() => tmp.cleanup());
let n = 0;

const key = (i: number) => `key${String(i).padStart(5, '0')}`;
const str = (b: Buffer | undefined) => b?.toString();

describe('commit records without a key count', () => {
  const base = {
    seq: 5, rootKind: 0 as const, rootPos: 0, rootLen: 0, prevCommitPos: 9000, tag: 3, keyCount: 42 as number | null,
    slabStart: 9100, slabCrc: 7, treeSeq: 0, treeCommitPos: 0, treeKeyCount: 0, afterDurable: true,
  };
  const encoded = (c: typeof base) => {
    const b = Buffer.alloc(COMMIT_BODY_BYTES);
    encodeCommitBody(b, 0, c);
    return b;
  };
  const decode = (b: Buffer) => decodeCommitBody(b, 0, b.length, 10_000, 9 + COMMIT_BODY_BYTES);

  it('are version 2 and decode to null; version 1 keeps its count', () => {
    const v1 = encoded(base);
    expect(v1[0]).toBe(1);
    expect(decode(v1).keyCount).toBe(42);
    const v2 = encoded({ ...base, keyCount: null });
    expect(v2[0]).toBe(2);
    expect(decode(v2)).toMatchObject({ keyCount: null, seq: 5, tag: 3, prevCommitPos: 9000 });
  });

  it('appended after bytes not yet durable: versions 3 and 4, as 1 and 2 otherwise', () => {
    for (const [keyCount, version] of [[42, 3], [null, 4]] as const) {
      const b = encoded({ ...base, keyCount, afterDurable: false });
      expect(b[0]).toBe(version);
      expect(decode(b)).toMatchObject({ keyCount, afterDurable: false, seq: 5, tag: 3, prevCommitPos: 9000 });
      expect(decode(encoded({ ...base, keyCount }))).toMatchObject({ keyCount, afterDurable: true });
    }
    const v4 = encoded({ ...base, keyCount: null, afterDurable: false });
    v4[39] = 1;
    expect(() => decode(v4)).toThrow(/version-4 commit records a key count/);
  });

  it('refuse a version-2 record that counts keys or holds a checkpoint, and unknown versions', () => {
    const counted = encoded({ ...base, keyCount: null });
    counted[39] = 1;
    expect(() => decode(counted)).toThrow(CorruptionError);
    expect(() => decode(encoded({ ...base, keyCount: null, treeSeq: 5, treeCommitPos: 10_000 }))).toThrow(/checkpoint/);
    const v5 = encoded(base);
    v5[0] = 5;
    expect(() => decode(v5)).toThrow(/unknown commit version 5/);
  });
});

describe('format versions', () => {
  /** Rewrites both superblocks of a closed store as format version 1 (what older builds wrote). */
  function asVersion1(file: string): void {
    const b = fs.readFileSync(file);
    for (const base of [0, 4096]) {
      b.writeUInt32LE(1, base + 8);
      b.writeUInt32LE(crc32c(b, base, base + 52), base + 52);
    }
    fs.writeFileSync(file, b);
  }
  const versions = (file: string) => {
    const b = fs.readFileSync(file);
    return [0, 4096].map((base) => ({ version: b.readUInt32LE(base + 8), counter: Number(b.readBigUInt64LE(base + 16)) }));
  };

  it('a version-1 file is read; a writable open rewrites its newest superblock as this build\'s version first, a read-only one changes nothing', async () => {
    const file = tmp.file(`v${n++}.db`);
    const db0 = await open(file);
    for (let i = 0; i < 50; i++) await db0.set(key(i), `v${i}`);
    await db0.close();
    asVersion1(file);
    const bytes = fs.readFileSync(file);
    const ro = await open(file, { readOnly: true });
    expect(ro.fileInfo().superblock.version).toBe(1);
    expect(ro.count()).toBe(50);
    await ro.close();
    expect(fs.readFileSync(file).equals(bytes)).toBe(true);
    const db = await open(file);
    const newest = versions(file).sort((x, y) => y.counter - x.counter)[0];
    expect(newest.version).toBe(FORMAT_VERSION); // before any commit: an older build refuses the file from here on
    expect(db.fileInfo().superblock.version).toBe(FORMAT_VERSION);
    expect(str(db.get(key(7)))).toBe('v7');
    await db.set('after', 'upgrade');
    await db.close();
    const again = await open(file);
    expect(again.count()).toBe(51);
    expect(again.check().ok).toBe(true);
    await again.close();
  });
});

describe('sets made while the commit syncs', () => {
  it('small batches are logged before their tree changes; reads, check() and replay see every key', async () => {
    const file = tmp.file(`s${n++}.db`);
    const db = await open(file);
    await db.set('a', 'first'); // an empty store: the first commit writes its tree
    for (let g = 0; g < 20; g++) {
      // New keys and overwrites, single sets and groups, alone in their batch and (every fifth)
      // side by side in one.
      const set = db.set(key(g), `v${g}`);
      if (g % 5 !== 0) await set;
      await db.transaction((tx) => {
        for (let i = 0; i < 50; i++) tx.set(key((g * 37 + i * 11) % 400), `g${g}-${i}`);
      });
      await set;
    }
    const want = new Map<string, string>([['a', 'first']]);
    for (let g = 0; g < 20; g++) {
      want.set(key(g), `v${g}`);
      for (let i = 0; i < 50; i++) want.set(key((g * 37 + i * 11) % 400), `g${g}-${i}`);
    }
    // The last commit was logged before its sets were made: it records no count.
    expect(db.fileInfo().lastCommit?.keyCount).toBeNull();
    expect(db.count()).toBe(want.size);
    for (const [k, v] of want) expect(str(db.get(k))).toBe(v);
    expect(db.check()).toMatchObject({ ok: true, keys: want.size });
    const copy = await crashCopy(db, tmp.file); // as a crash leaves it: the commits replayed
    expect(copy.replayedSlabs).toBeGreaterThan(0);
    expect(copy.count()).toBe(want.size);
    for (const [k, v] of want) expect(str(copy.get(k))).toBe(v);
    expect(copy.check().ok).toBe(true);
    await copy.close();
    await db.close();
  });

  it(`a batch of more than ${SET_LATER_MAX} sets changes the tree first (a sorted one writes its tree at once)`, async () => {
    const db = await open(tmp.file(`s${n++}.db`));
    await db.transaction((tx) => {
      for (let i = 0; i < SET_LATER_MAX + 1; i++) tx.set(key(i), `v${i}`);
    });
    expect(db.stats.checkpoints).toBe(1);
    expect(db.fileInfo().lastCommit?.keyCount).toBe(SET_LATER_MAX + 1);
    // Scattered, and past SET_LATER_MAX by more than one: every set is made before the append.
    for (const size of [SET_LATER_MAX + 2, 2 * SET_LATER_MAX + 7, 1000]) {
      await db.transaction((tx) => {
        for (let i = 0; i < size; i++) tx.set(key((i * 7919) % 5000), `w${size}-${i}`);
      });
      expect(db.fileInfo().lastCommit?.keyCount).toBe(db.count());
    }
    expect(db.check().ok).toBe(true);
    await db.close();
  });

  it("a transaction's reads see its own sets; an abort drops them and keeps the batch's others", async () => {
    const db = await open(tmp.file(`s${n++}.db`));
    for (let i = 0; i < 10; i++) await db.set(key(i), `old${i}`);
    const seen: unknown[] = [];
    const kept = db.set('before', 'kept'); // same batch as the transactions below
    const ok = db.transaction((tx) => {
      tx.set(key(1), 'new1');
      tx.set('zz', 'new');
      seen.push(str(tx.get(key(1))), tx.exists('zz'), tx.count());
      tx.set(key(2), 'new2');
      seen.push([...tx.keys({ gte: key(0), lt: key(3) })].map((k) => k.toString()));
      tx.set(key(3), 'new3');
      seen.push([...tx.range({ gte: key(3), lt: key(4) })].map(([, v]) => v.toString()));
    });
    const aborted = db.transaction((tx) => {
      tx.set(key(4), 'lost');
      tx.set('lost', 'lost');
      throw new Error('abort');
    });
    await kept;
    await ok;
    await expect(aborted).rejects.toThrow('abort');
    expect(seen).toEqual(['new1', true, 12, [key(0), key(1), key(2)], ['new3']]);
    expect(str(db.get('before'))).toBe('kept');
    expect(str(db.get(key(1)))).toBe('new1');
    expect(str(db.get(key(4)))).toBe('old4');
    expect(db.get('lost')).toBeUndefined();
    expect(db.count()).toBe(12);
    expect(db.check().ok).toBe(true);
    await db.close();
  });

  /** 400 keys (key0000 …) in 512-byte nodes, all on disk, with the leaf holding key0200 corrupt. */
  const corruptStore = () => writeCorruptStore(tmp.file(`s${n++}.db`));

  it('a transaction whose held set fails fails, even when it caught the error; beside other jobs, it fails alone', async () => {
    const db = await open(await corruptStore());
    await db.set('key0001', 'one'); // the first commit after the open writes its tree
    const caught: unknown[] = [];
    const tx = db.transaction((t) => {
      t.set('key0002', 'two');
      t.set('key0200', 'x'); // held: its path is read when the next read makes it
      try {
        t.get('key0300');
      } catch (err) {
        caught.push(err);
      }
      return 'done';
    });
    await expect(tx).rejects.toBeInstanceOf(CorruptionError);
    expect(caught[0]).toBeInstanceOf(CorruptionError);
    expect(str(db.get('key0002'))).toBe('value-2-'.repeat(4));
    // Several jobs in one batch: the transaction on the corrupt path fails, the others commit.
    const jobs = [
      db.set('key0003', 'three'),
      db.transaction((t) => {
        t.set('key0004', 'four');
        t.set('key0200', 'x');
      }),
      db.transaction((t) => t.set('key0005', 'five')),
    ];
    await jobs[0];
    await expect(jobs[1]).rejects.toBeInstanceOf(CorruptionError);
    await jobs[2];
    expect([db.get('key0003'), db.get('key0004'), db.get('key0005')].map(str)).toEqual(['three', 'value-4-'.repeat(4), 'five']);
    expect(db.count()).toBe(400);
    await db.close();
    const again = await open(db.path);
    expect([again.get('key0001'), again.get('key0003'), again.get('key0004'), again.get('key0005')].map(str))
      .toEqual(['one', 'three', 'value-4-'.repeat(4), 'five']);
    await again.close();
  });

  it('a set that meets a corrupt node after its record was appended: the record is erased, the batch fails, the store goes on', async () => {
    const file = await corruptStore();
    const erase = vi.spyOn(FileLog.prototype, 'eraseFrom');
    // Durable (a write and an fdatasync on the sync thread), not durable (no sync), and written
    // directly (O_DIRECT | O_DSYNC, where the file system takes it: the erased block is then not
    // in the page cache).
    const configs: Array<[string, OpenOptions]> = [['durable', {}], ['lazy', { durable: false }]];
    if (directIoWorks(tmp.dir)) configs.push(['direct', { syncDirect: true }]);
    try {
      for (const [durable, options] of configs) {
        const db = await open(file, options);
        // The first set after the open writes its tree (nothing is dirty yet); the next is logged first.
        await db.set('key0001', `one-${durable}`);
        await db.set('key0002', `two-${durable}`);
        expect(db.fileInfo().lastCommit?.keyCount).toBeNull();
        const before = db.fileInfo().fileBytes;
        const commits = db.stats.commits;
        erase.mockClear();
        await expect(db.set('key0200', 'x')).rejects.toBeInstanceOf(CorruptionError);
        expect(erase).toHaveBeenCalledTimes(1); // appended, then erased
        expect(db.fileInfo().fileBytes).toBe(before);
        expect(db.stats.commits).toBe(commits);
        const tail = Buffer.alloc(256);
        const fd = fs.openSync(file, 'r');
        fs.readSync(fd, tail, 0, tail.length, before);
        fs.closeSync(fd);
        expect(tail.equals(Buffer.alloc(256))).toBe(true);
        // The store goes on; a crash now replays the commits before and after, not the erased one.
        await db.set('key0003', `three-${durable}`);
        if (durable === 'direct') expect(db.stats.directSyncs).toBeGreaterThan(0);
        const copy = await crashCopy(db, tmp.file);
        for (const d of [db, copy]) {
          expect(str(d.get('key0001'))).toBe(`one-${durable}`);
          expect(str(d.get('key0003'))).toBe(`three-${durable}`);
          expect(() => d.get('key0200')).toThrow(CorruptionError);
          expect(d.count()).toBe(400);
        }
        await copy.close();
        await db.close();
      }
    } finally {
      erase.mockRestore();
    }
  });
});
