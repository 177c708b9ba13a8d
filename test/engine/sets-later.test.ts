// Sets made after their commit's record is appended (TreeWriter.setLater, Db.commit): a batch of
// up to SET_LATER_MAX sets is logged and its sync started first, and its tree change runs while
// the disk works. The record then carries no key count (commit version 2, codec.ts), and replay
// counts. Reads inside a transaction still see its own sets; an abort still drops them; a set
// that cannot be made after its record was appended leaves nothing behind.
import { Buffer } from 'node:buffer';
import fs from 'node:fs';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { COMMIT_BODY_BYTES, decodeCommitBody, encodeCommitBody } from '../../src/engine/codec.js';
import { CorruptionError } from '../../src/engine/errors.js';
import { FileLog } from '../../src/engine/log-file.js';
import { SET_LATER_MAX } from '../../src/engine/tree.js';
import { open } from '../../src/index.js';
import { crashCopy } from '../support/crash-copy.js';
import { tempDir } from '../support/tmp.js';

const tmp = tempDir('later');
afterAll(() => tmp.cleanup());
let n = 0;

const key = (i: number) => `key${String(i).padStart(5, '0')}`;
const str = (b: Buffer | undefined) => b?.toString();

describe('commit records without a key count', () => {
  const base = {
    seq: 5, rootKind: 0 as const, rootPos: 0, rootLen: 0, prevCommitPos: 9000, tag: 3, keyCount: 42 as number | null,
    slabStart: 9100, slabCrc: 7, treeSeq: 0, treeCommitPos: 0, treeKeyCount: 0,
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

  it('refuse a version-2 record that counts keys or holds a checkpoint, and unknown versions', () => {
    const counted = encoded({ ...base, keyCount: null });
    counted[39] = 1;
    expect(() => decode(counted)).toThrow(CorruptionError);
    expect(() => decode(encoded({ ...base, keyCount: null, treeSeq: 5, treeCommitPos: 10_000 }))).toThrow(/checkpoint/);
    const v3 = encoded(base);
    v3[0] = 3;
    expect(() => decode(v3)).toThrow(/unknown commit version 3/);
  });
});

describe('sets made while the commit syncs', () => {
  it('small batches are logged before their tree changes; reads, check() and replay see every key', async () => {
    const file = tmp.file(`s${n++}.db`);
    const db = await open(file);
    await db.set('a', 'first'); // an empty store: the first commit writes its tree
    const groups: Array<Promise<unknown>> = [];
    for (let g = 0; g < 20; g++) {
      // New keys and overwrites, single sets and groups, several jobs in one batch.
      groups.push(db.set(key(g), `v${g}`));
      groups.push(db.transaction((tx) => {
        for (let i = 0; i < 50; i++) tx.set(key((g * 37 + i * 11) % 400), `g${g}-${i}`);
      }));
    }
    await Promise.all(groups);
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

  it('a set that meets a corrupt node after its record was appended: the record is erased, the batch fails, the store goes on', async () => {
    const file = tmp.file(`s${n++}.db`);
    const db0 = await open(file, { nodeBytesMax: 512 });
    await db0.transaction((tx) => {
      for (let i = 0; i < 400; i++) tx.set(`key${String(i).padStart(4, '0')}`, `value-${i}-`.repeat(4));
    });
    await db0.close(); // a checkpoint: every leaf is on disk
    const bad = fs.readFileSync(file);
    const at = bad.indexOf('value-200-value-200-');
    expect(at).toBeGreaterThan(0);
    bad[at + 3] ^= 0x10;
    fs.writeFileSync(file, bad);
    const erase = vi.spyOn(FileLog.prototype, 'eraseFrom');
    try {
      for (const durable of [true, false]) {
        const db = await open(file, { durable });
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
