// A full disk, for real: a small ext4 file system on a loop device (root only; skipped, saying so,
// where it cannot be mounted). The store fills it with durable group commits until a write
// fails, and then: the failure is a typed IoFailedError, nothing acknowledged is lost (served
// now, after a reopen on the still-full disk, and after space comes back), corruption is never
// reported, close() always lets the file go, and once space is freed the store writes again.
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { IoFailedError, open, type Db, type OpenOptions } from '../../src/index.js';
import { tempDir } from '../support/tmp.js';

const tmp = tempDir('disk-full');
const image = tmp.file('fs.img');
const mountDir = tmp.file('mnt');
const imageBytes = 40 << 20;
const fillerBytes = 6 << 20;

/** Mounts a fresh ext4 image, or says why it cannot (the tests then skip). */
function mountSmallFs(): string | null {
  if (process.getuid?.() !== 0) return 'not root';
  if (spawnSync('mkfs.ext4', ['-V']).error !== undefined) return 'no mkfs.ext4';
  fs.mkdirSync(mountDir);
  fs.writeFileSync(image, Buffer.alloc(0));
  fs.truncateSync(image, imageBytes);
  // -m 0: no blocks reserved for root, who would otherwise write on (as the tests run here) past
  // what a full disk is for everyone else.
  const mkfs = spawnSync('mkfs.ext4', ['-q', '-F', '-m', '0', image]);
  if (mkfs.status !== 0) return `mkfs.ext4: ${mkfs.stderr.toString().trim()}`;
  const mount = spawnSync('mount', ['-o', 'loop', image, mountDir]);
  if (mount.status !== 0) return `mount -o loop: ${mount.stderr.toString().trim()}`;
  return null;
}

const unavailable = mountSmallFs();
if (unavailable !== null) console.log(`disk-full tests skipped: ${unavailable}`);

afterAll(() => {
  // Lazily: a failed test may have left a store open on it.
  if (unavailable === null) execFileSync('umount', ['-l', mountDir]);
  tmp.cleanup();
});

/** Takes every block still free with a file of that name. */
function fillRest(name: string): void {
  const fd = fs.openSync(`${mountDir}/${name}`, 'w');
  const chunk = Buffer.alloc(64 << 10, 3);
  try {
    for (let size = chunk.length; size > 0; ) {
      try {
        fs.writeSync(fd, chunk, 0, size);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
        size >>= 1;
      }
    }
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  expect(fs.statfsSync(mountDir).bavail).toBe(0);
}

/** Fills the disk with durable groups of 100 sets until one fails; returns what was acknowledged and the first error. */
async function fillUntilRefused(db: Db, prefix: string, acked: Map<string, string>): Promise<unknown> {
  let failure: unknown = null;
  for (let i = 0; failure === null; ) {
    const group: Array<Promise<void>> = [];
    for (let j = 0; j < 100; j++, i++) {
      const key = `${prefix}${i % 40_000}`; // overwrites too, so checkpoints have garbage behind them
      const value = `${i}:`.padEnd(150 + (i % 400), 'v');
      group.push(db.set(key, value).then(() => void acked.set(key, value), (err: unknown) => void (failure ??= err)));
    }
    await Promise.all(group);
  }
  return failure;
}

function expectAll(db: Db, acked: Map<string, string>): void {
  let wrong = 0;
  for (const [k, v] of acked) if (db.get(k)?.toString() !== v) wrong++;
  expect(wrong).toBe(0);
}

/**
 * close() writes its final checkpoint if it has one and there is room, or else rejects typed;
 * the file is let go either way. Returns whether it rejected.
 */
async function closeOnFullDisk(db: Db): Promise<boolean> {
  let rejected = false;
  await db.close().catch((err: unknown) => {
    rejected = true;
    expect(err).toBeInstanceOf(IoFailedError);
    expect(String(err)).toMatch(/final checkpoint was not written.*ENOSPC/s);
  });
  expect(db.isClosed).toBe(true);
  return rejected;
}

describe.skipIf(unavailable !== null)('a full disk (ext4 on a loop device)', () => {
  let n = 0;
  beforeEach(() => {
    for (const name of fs.readdirSync(mountDir)) if (name !== 'lost+found') fs.rmSync(`${mountDir}/${name}`);
    fs.writeFileSync(`${mountDir}/filler`, Buffer.alloc(fillerBytes, 1));
  });

  // With the defaults the whole fill is one checkpoint interval, and the reopened store's close
  // has a final checkpoint to write, with no room for it. With a checkpoint every 2 MiB the last
  // commit may already be one, and its close has nothing to write.
  const variants: Array<[string, OpenOptions, boolean]> = [
    ['defaults', {}, true],
    ['a checkpoint every 2 MiB (background checkpoints meet the full disk)', { checkpointIntervalBytes: 2 << 20 }, false],
  ];
  for (const [label, opts, closeMustFail] of variants) {
    it(`${label}: refused writes are typed, nothing acknowledged is lost, and freed space writes again`, async () => {
      const file = `${mountDir}/store${n++}.db`;
      const acked = new Map<string, string>();
      const db = await open(file, opts);
      const failure = await fillUntilRefused(db, 'a', acked);
      expect(failure).toBeInstanceOf(IoFailedError);
      expect(String(failure)).toMatch(/ENOSPC/);
      expect(acked.size).toBeGreaterThan(10_000);
      await expect(db.set('later', 'x')).rejects.toBeInstanceOf(IoFailedError); // read-only until reopened
      expectAll(db, acked); // reads go on
      await db.close(); // a failed store writes nothing more on close

      // Reopened on the still-full disk: everything acknowledged, a clean check; its close
      // writes a final checkpoint if it can. Reopened again: writes refused.
      const full = await open(file, opts);
      expectAll(full, acked);
      expect(full.check().problems).toEqual([]);
      expect(full.count()).toBe(acked.size);
      fillRest('topUp'); // the reopen cut off the failed tail: something else takes that room
      const closeFailed = await closeOnFullDisk(full);
      if (closeMustFail) expect(closeFailed).toBe(true);
      const stillFull = await open(file, opts);
      expectAll(stillFull, acked);
      await expect(stillFull.set('later', 'x')).rejects.toBeInstanceOf(IoFailedError);
      await stillFull.close(); // a failed store writes nothing more on close

      // Space comes back: a reopen writes again, and what it writes survives the next one.
      fs.rmSync(`${mountDir}/filler`);
      fs.rmSync(`${mountDir}/topUp`);
      const freed = await open(file, opts);
      expectAll(freed, acked);
      await freed.transaction((tx) => {
        for (let i = 0; i < 1000; i++) {
          tx.set(`b${i}`, `after ${i}`);
          acked.set(`b${i}`, `after ${i}`);
        }
      });
      await freed.close();
      const last = await open(file, opts);
      expectAll(last, acked);
      expect(last.check().problems).toEqual([]);
      expect(last.count()).toBe(acked.size);
      await last.close();
    }, 120_000);
  }

  it('compactTo onto the full disk rejects typed, leaves no partial file, and the source goes on', async () => {
    const file = `${mountDir}/source.db`;
    const acked = new Map<string, string>();
    const db = await open(file);
    await db.transaction((tx) => {
      for (let i = 0; i < 30_000; i++) {
        const v = `${i}:`.padEnd(300, 'c');
        tx.set(`c${i}`, v);
        acked.set(`c${i}`, v);
      }
    });
    // Leave less room than the copy needs.
    const free = Number(fs.statfsSync(mountDir).bavail) * fs.statfsSync(mountDir).bsize;
    fs.writeFileSync(`${mountDir}/filler2`, Buffer.alloc(Math.max(0, free - (2 << 20)), 2));
    const target = `${mountDir}/copy.db`;
    await expect(db.compactTo(target)).rejects.toBeInstanceOf(IoFailedError);
    expect(fs.existsSync(target)).toBe(false);
    fs.rmSync(`${mountDir}/filler2`);
    await db.set('after', 'compactTo');
    acked.set('after', 'compactTo');
    await db.close();
    const again = await open(file);
    expectAll(again, acked);
    expect(again.check().problems).toEqual([]);
    await again.close();
  }, 120_000);
});
