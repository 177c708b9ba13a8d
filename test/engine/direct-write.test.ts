// Small durable commits written O_DIRECT | O_DSYNC (FileLog.appendSynced, native directWriteStart).
// Real files. What must hold: the file's bytes are exactly what buffered appends would have left
// (the rewritten start of the last block unchanged, zeros after the slab); a direct write never
// makes a commit durable while anything buffered before it is not (it follows an fdatasync of
// every buffered write, also of what a dead process left in the page cache); a file system that
// refuses direct I/O costs one retry and nothing else; a failed direct write fails the store.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { addon } from '../../src/native/addon.js';
import { FileLog } from '../../src/engine/log-file.js';
import { open } from '../../src/index.js';
import { IoFailedError } from '../../src/engine/errors.js';
import { directIoWorks } from '../support/direct-io.js';

const { EINVAL, EIO } = os.constants.errno;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'solifuge-direct-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
let files = 0;
const fresh = (name: string): string => path.join(dir, `${name}-${files++}`);

const native = addon;
const describeNative = native?.directWriteStart === undefined ? describe.skip : describe;

const describeDirect = directIoWorks(dir) ? describe : describe.skip;

describeNative('directWriteStart', () => {
  const a = native as Required<NonNullable<typeof native>>;

  it('writes the bytes at the block, zeros to the end of the last block, durable once finished', () => {
    const file = fresh('raw');
    fs.writeFileSync(file, Buffer.alloc(5 * 4096, 0xee));
    const fd = fs.openSync(file, fs.constants.O_WRONLY | fs.constants.O_DIRECT | fs.constants.O_DSYNC);
    try {
      for (const spinUs of [0, 300]) {
        const bytes = Buffer.alloc(4096 + 300, spinUs === 0 ? 1 : 2);
        a.directWriteStart(fd, bytes, 4096, spinUs);
        bytes.fill(9); // copied before the call returned
        expect(a.fdatasyncFinish()).toBe(0);
        const back = fs.readFileSync(file);
        expect(back.subarray(0, 4096).every((b) => b === 0xee)).toBe(true);
        expect(back.subarray(4096, 8192 + 300).every((b) => b === (spinUs === 0 ? 1 : 2))).toBe(true);
        expect(back.subarray(8192 + 300, 12288).every((b) => b === 0)).toBe(true);
        expect(back.subarray(12288).every((b) => b === 0xee)).toBe(true);
      }
    } finally {
      fs.closeSync(fd);
    }
  });

  it('returns -errno from finish, and refuses bad arguments and a second start', () => {
    a.directWriteStart(-1, Buffer.alloc(10), 0, 300);
    expect(a.fdatasyncFinish()).toBe(-os.constants.errno.EBADF);
    const bad: unknown[][] = [
      [-1, Buffer.alloc(0), 0, 300], // nothing to write
      [-1, Buffer.alloc(10), 100, 300], // not a multiple of 4096
      [-1, Buffer.alloc(10), -4096, 300],
      [-1, Buffer.alloc((1 << 20) + 1), 0, 300], // over 1 MiB
      [-1, 'text', 0, 300],
      [-1, new Uint16Array(4), 0, 300],
      [Number.NaN, Buffer.alloc(10), 0, 300],
      [-1, Buffer.alloc(10), 0, -1],
    ];
    const start = a.directWriteStart as unknown as (...args: unknown[]) => void;
    for (const args of bad) expect(() => start(...args)).toThrow(TypeError);
    expect(() => a.fdatasyncFinish()).toThrow(/no fdatasyncStart/);
    a.directWriteStart(-1, Buffer.alloc(10), 0, 300);
    expect(() => a.directWriteStart(-1, Buffer.alloc(10), 0, 300)).toThrow(/not yet finished/);
    expect(() => a.fdatasyncStart(-1, 300)).toThrow(/not yet finished/);
    expect(() => a.fdatasyncPolled(-1, 300)).toThrow(/not yet finished/);
    expect(a.fdatasyncFinish()).toBe(-os.constants.errno.EBADF);
  });
});

describeDirect('FileLog.appendSynced', () => {
  function emptyLog(): FileLog {
    const file = fresh('log');
    fs.writeFileSync(file, '');
    return FileLog.open(file, { readOnly: false });
  }

  it('leaves the bytes buffered appends would, across block boundaries and mixed with them', () => {
    // Random appends, each either direct-eligible (appendSynced) or plain (append, then sometimes
    // a sync): the file must equal the concatenation, and direct writes must have happened.
    let direct = 0;
    let synced = 0;
    fc.assert(
      fc.property(
        fc.array(fc.record({ len: fc.integer({ min: 1, max: 9000 }), how: fc.constantFrom('synced', 'synced', 'plain', 'plainSync') }), { minLength: 1, maxLength: 40 }),
        (steps) => {
          const log = emptyLog();
          const expected: Buffer[] = [];
          try {
            steps.forEach((step, i) => {
              const buf = Buffer.alloc(step.len, (i % 250) + 1);
              expected.push(buf);
              if (step.how === 'synced') {
                log.appendSynced(buf, step.len, 200);
                synced++;
                if (log.syncFinish()) direct++;
              } else {
                log.append(buf, step.len);
                if (step.how === 'plainSync') log.syncNow();
              }
            });
            const want = Buffer.concat(expected);
            // Through the log (the recent window, else the file), every record and the last 5000 bytes.
            let at = 0;
            for (const rec of expected) {
              expect(log.read(at, rec.length).equals(rec)).toBe(true);
              at += rec.length;
            }
            const last = Math.min(5000, want.length);
            expect(log.read(want.length - last, last).equals(want.subarray(want.length - last))).toBe(true);
            const got = fs.readFileSync(log.path);
            expect(got.subarray(0, want.length).equals(want)).toBe(true);
            expect(got.subarray(want.length).every((b) => b === 0)).toBe(true);
            expect(log.end).toBe(want.length);
          } finally {
            log.close();
          }
        },
      ),
      { numRuns: 30, seed: 17 },
    );
    expect(direct).toBeGreaterThan(synced / 3);
  });

  it('writes directly only once every buffered write before is synced', async () => {
    const log = emptyLog();
    try {
      const rec = Buffer.alloc(200, 7);
      const synced = () => {
        log.appendSynced(rec, rec.length, 200);
        return log.syncFinish();
      };
      expect(synced()).toBe(false); // the first one after open: the file may hold what a dead process left
      expect(synced()).toBe(true);
      expect(synced()).toBe(true);
      log.append(rec, rec.length); // a commit with durable: false
      expect(synced()).toBe(false); // its fdatasync makes the one before durable too
      expect(synced()).toBe(true);
      log.writeAt(Buffer.alloc(16), 16, 0); // a superblock
      expect(synced()).toBe(false);
      expect(synced()).toBe(true);
      const pooled = log.sync(); // a pooled fdatasync covers only the writes before it
      log.append(rec, rec.length);
      await pooled;
      expect(synced()).toBe(false);
      expect(synced()).toBe(true);
      expect(log.appendSynced(rec, rec.length, 0)).toBeUndefined(); // spin 0: never direct
      expect(log.syncFinish()).toBe(false);
    } finally {
      log.close();
    }
  });

  it('falls back to buffered writes for good when the file system refuses direct I/O', () => {
    const a = native as Required<NonNullable<typeof native>>;
    const log = emptyLog();
    const realStart = a.directWriteStart;
    const realFinish = a.fdatasyncFinish;
    try {
      const rec = Buffer.alloc(300, 5);
      log.appendSynced(rec, rec.length, 200);
      log.syncFinish();
      // A file system that refuses direct I/O: the write does nothing and finishes with EINVAL.
      let refused = 0;
      let pending = false;
      a.directWriteStart = () => {
        pending = true;
      };
      a.fdatasyncFinish = () => {
        if (!pending) return realFinish();
        pending = false;
        refused++;
        return -EINVAL;
      };
      log.appendSynced(Buffer.alloc(300, 6), 300, 200);
      expect(log.syncFinish()).toBe(false);
      expect(refused).toBe(1);
      a.directWriteStart = realStart;
      a.fdatasyncFinish = realFinish;
      for (let i = 0; i < 3; i++) {
        log.appendSynced(Buffer.alloc(300, 7), 300, 200);
        expect(log.syncFinish()).toBe(false);
      }
      const got = fs.readFileSync(log.path);
      expect(got.subarray(0, 300).every((b) => b === 5)).toBe(true);
      expect(got.subarray(300, 600).every((b) => b === 6)).toBe(true);
      expect(got.subarray(600, 1500).every((b) => b === 7)).toBe(true);
    } finally {
      a.directWriteStart = realStart;
      a.fdatasyncFinish = realFinish;
      log.close();
    }
  });
});

describeDirect('small durable commits written directly', () => {
  it('reopen with every commit, mixed with non-durable ones, big values and checkpoints', async () => {
    const file = fresh('db');
    let db = await open(file, { syncSpinUs: 200, syncDirect: true });
    const model = new Map<string, string>();
    let seed = 7;
    const rnd = (n: number) => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) % n);
    for (let i = 0; i < 400; i++) {
      const key = `k${rnd(150)}`;
      const value = `v${i}-`.padEnd(rnd(10) === 0 ? 3000 : 1 + rnd(200), String.fromCharCode(97 + (i % 26)));
      model.set(key, value);
      if (i % 17 === 0) await db.transaction((tx) => tx.set(key, value), { durable: false });
      else await db.set(key, value);
      if (i % 97 === 0) await db.checkpoint();
    }
    expect(db.stats.directSyncs).toBeGreaterThan(250);
    expect(db.stats.directSyncs).toBeLessThan(db.stats.syncs);
    await db.close();
    db = await open(file);
    for (const [k, v] of model) expect(db.get(k)?.toString()).toBe(v);
    expect(db.check().ok).toBe(true);
    await db.close();
  });

  it('writes into the file it has open, also after its path was renamed and taken by another', async () => {
    const file = fresh('renamed');
    const db = await open(file, { syncSpinUs: 200, syncDirect: true });
    await db.set('a', '1');
    fs.renameSync(file, `${file}.moved`);
    fs.writeFileSync(file, 'someone else');
    for (let i = 0; i < 20; i++) await db.set(`k${i}`, `v${i}`);
    expect(db.stats.directSyncs).toBeGreaterThan(15);
    await db.close();
    expect(fs.readFileSync(file, 'utf8')).toBe('someone else');
    const again = await open(`${file}.moved`);
    for (let i = 0; i < 20; i++) expect(again.get(`k${i}`)?.toString()).toBe(`v${i}`);
    await again.close();
  });

  it('a sliced checkpoint right after direct writes (its first piece rewrites the end block whole)', async () => {
    const file = fresh('sliced');
    let db = await open(file, { syncSpinUs: 200, syncDirect: true, slicedCheckpointBytesMin: 0, checkpointTreeOverLogMax: 0 });
    const model = new Map<string, string>();
    for (let round = 0; round < 4; round++) {
      for (let i = 0; i < 30; i++) {
        const key = `r${round}k${i}`;
        model.set(key, `${round}-${i}-`.padEnd(150 + i * 7, 'z'));
        await db.set(key, model.get(key) as string);
      }
      await db.checkpoint();
    }
    expect(db.stats.slicedCheckpoints).toBeGreaterThanOrEqual(4);
    expect(db.stats.directSyncs).toBeGreaterThan(100);
    for (const [k, v] of model) expect(db.get(k)?.toString()).toBe(v);
    await db.close();
    db = await open(file);
    for (const [k, v] of model) expect(db.get(k)?.toString()).toBe(v);
    expect(db.check().ok).toBe(true);
    await db.close();
  });

  it('a failed direct write rejects the commit and turns the store read-only', async () => {
    const a = native as Required<NonNullable<typeof native>>;
    const db = await open(fresh('eio'), { syncSpinUs: 200, syncDirect: true, checkpointTreeOverLogMax: 0 });
    await db.set('first', '1'); // an fdatasync (the first after open)
    await db.set('before', '2'); // direct
    expect(db.stats.directSyncs).toBe(1);
    const realFinish = a.fdatasyncFinish;
    a.fdatasyncFinish = () => {
      realFinish();
      return -EIO;
    };
    try {
      const err = await db.set('during', '3').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(IoFailedError);
      const cause = (err as IoFailedError).cause as NodeJS.ErrnoException;
      expect({ code: cause.code, syscall: cause.syscall }).toEqual({ code: 'EIO', syscall: 'write' });
      await expect(db.set('after', '4')).rejects.toBeInstanceOf(IoFailedError);
    } finally {
      a.fdatasyncFinish = realFinish;
    }
    expect(db.get('before')?.toString()).toBe('2');
    expect(db.get('during')).toBeUndefined();
    await db.close();
  });

  it('getWith hands a value still in the recent window over as bytes, older ones as a location', async () => {
    // Written directly, a value's blocks are not in the page cache: a send from the file would
    // wait for the disk. Out of the window (more than ~1 MiB written since), the file again.
    const kinds = async (db: Awaited<ReturnType<typeof open>>, key: string) =>
      db.getWith(key, (src) => (src.kind === 'value' ? `value:${src.value.length}` : src.kind === 'location' ? `location:${src.length}` : 'notFound'));
    for (const syncDirect of [true, false]) {
      const db = await open(fresh('getwith'), { syncSpinUs: 200, syncDirect, checkpointTreeOverLogMax: 0 });
      await db.set('warm', 'x'); // the first commit after open is an fdatasync
      await db.set('fresh', Buffer.alloc(1000, 1));
      expect(await kinds(db, 'fresh')).toBe(syncDirect ? 'value:1000' : 'location:1000');
      for (let i = 0; i < 40; i++) await db.set(`filler${i}`, Buffer.alloc(30_000, i));
      expect(await kinds(db, 'fresh')).toBe('location:1000');
      expect(db.get('fresh')?.equals(Buffer.alloc(1000, 1))).toBe(true);
      // All direct but the one that found the zeros written ahead used up (1 MiB of them).
      if (syncDirect) expect(db.stats.directSyncs).toBeGreaterThanOrEqual(39);
      else expect(db.stats.directSyncs).toBe(0);
      await db.close();
    }
  });
});
