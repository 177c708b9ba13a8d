// Recovery paths: a torn tail cut at every byte of the last slab, bit flips in committed data,
// files that are not ours, wrong versions, and the single-writer lock.
import fs from 'node:fs';
import os from 'node:os';
import { afterAll, describe, expect, it } from 'vitest';
import {
  CorruptionError, LockedError, NotASolifugeFileError, UnsupportedVersionError, open,
} from '../../src/index.js';
import { crc32c } from '../../src/wasm/crc32c.js';
import { tempDir } from '../support/tmp.js';
import { addon } from '../../src/native/addon.js';
import { writeCorruptStore } from '../support/corrupt-store.js';

const tmp = tempDir('recovery');
afterAll(() => tmp.cleanup());
let n = 0;

async function build(commits: Array<Record<string, string>>, opts = {}): Promise<{ file: string; ends: number[]; heads: Buffer[] }> {
  const file = tmp.file(`r${n++}.db`);
  const db = await open(file, { nodeBytesMax: 512, ...opts });
  const ends: number[] = [];
  const heads: Buffer[] = []; // the two superblocks as they were after each commit
  for (const c of commits) {
    await db.transaction((tx) => {
      for (const [k, v] of Object.entries(c)) tx.set(k, v);
    });
    ends.push(db.fileInfo().fileBytes);
    heads.push(fs.readFileSync(file).subarray(0, 8192));
  }
  // Crash-like: no close, so the superblock still points at the start; release the lock only.
  (db as unknown as { log: { close(): void } }).log.close();
  return { file, ends, heads };
}

function contents(db: { range(): Iterable<[Buffer, Buffer]> }): Record<string, string> {
  const o: Record<string, string> = {};
  for (const [k, v] of db.range()) o[k.toString()] = v.toString();
  return o;
}

describe('torn tail', () => {
  const first: Record<string, string> = {};
  for (let i = 0; i < 40; i++) first[`a${i}`] = `v${i}`.repeat(i % 7);
  const second: Record<string, string> = { a3: 'changed', b: 'x'.repeat(300), c: 'small' };

  // Cuts the file at every byte inside its last slab and checks recovery to the commit before.
  async function tornAtEveryOffset(whole: Buffer, head: Buffer, from: number, to: number, expected: Record<string, string>, full: Record<string, string>) {
    const victim = tmp.file(`torn${n++}.db`);
    for (let cut = from; cut < to; cut++) {
      // The superblocks as they were before the last slab's write: a crash before its sync.
      fs.writeFileSync(victim, Buffer.concat([head, whole.subarray(8192, cut)]));
      const db = await open(victim);
      expect(contents(db)).toEqual(expected);
      expect(db.check().problems).toEqual([]);
      expect(fs.statSync(victim).size).toBe(from); // the torn bytes are cut off
      if (cut === from + 17) {
        // New writes after a truncated tail land cleanly and survive a reopen.
        await db.set('after', 'crash');
        await db.close();
        const again = await open(victim);
        expect(again.get('after')?.toString()).toBe('crash');
        expect(again.check().ok).toBe(true);
        await again.close();
      } else {
        await db.close();
      }
    }
    fs.writeFileSync(victim, whole);
    const db = await open(victim);
    expect(contents(db)).toEqual(full);
    await db.close();
  }

  it('truncating at every byte offset inside the last slab recovers exactly the previous commit (log replay)', async () => {
    // No checkpoint at all (adaptive ones off too): open replays the log.
    const { file, ends, heads } = await build([first, second], { checkpointTreeOverLogMax: 0 });
    expect(ends[1]).toBeGreaterThan(ends[0]);
    const replay = await open(file, { readOnly: true });
    expect(replay.replayedSlabs).toBe(2);
    await replay.close();
    await tornAtEveryOffset(fs.readFileSync(file), heads[0], ends[0], ends[1], first, { ...first, ...second });
  });

  it('the same when every commit is a checkpoint', async () => {
    const third = { zz: 'third', a1: 'again' };
    const { file, ends, heads } = await build([first, second, third], { checkpointIntervalBytes: 0 });
    await tornAtEveryOffset(fs.readFileSync(file), heads[1], ends[1], ends[2], { ...first, ...second }, { ...first, ...second, ...third });
  });

  it('a file shorter than the durable end its superblock records is corruption, not a torn tail', async () => {
    const { file, ends } = await build([first, second], { checkpointIntervalBytes: 0, superblockIntervalBytes: 0 });
    fs.truncateSync(file, ends[1] - 10);
    await expect(open(file)).rejects.toBeInstanceOf(CorruptionError);
  });

  it('garbage (zeros, random bytes) after the last commit is cut, with the zeros written ahead', async () => {
    const { file, ends } = await build([{ k: 'v' }]);
    // The crashed writer left its zero-filled region ahead of the log end.
    expect(fs.statSync(file).size).toBeGreaterThan(ends[0]);
    for (const junk of [Buffer.alloc(5000), Buffer.from(Array.from({ length: 3000 }, (_, i) => (i * 131) & 0xff))]) {
      const end = (await (async () => {
        const probe = await open(file, { readOnly: true });
        const e = probe.fileInfo().fileBytes;
        await probe.close();
        return e;
      })());
      fs.appendFileSync(file, junk);
      const size = fs.statSync(file).size;
      const db = await open(file);
      expect(db.get('k')?.toString()).toBe('v');
      expect(db.tornBytesCut).toBe(size - end);
      expect(fs.statSync(file).size).toBe(end);
      await db.close();
    }
  });
});

describe('corruption in committed data', () => {
  it('a bit flip anywhere in committed slabs is detected by check() or open, never served', async () => {
    const data: Record<string, string> = {};
    for (let i = 0; i < 60; i++) data[`key${i}`] = `value-${i}-`.repeat(1 + (i % 30));
    const { file, ends } = await build([data, { key7: 'new', extra: 'e'.repeat(200) }, { key9: 'nine' }]);
    const whole = fs.readFileSync(file);
    const victim = tmp.file('flip.db');
    const expected = { ...data, key7: 'new', extra: 'e'.repeat(200), key9: 'nine' };
    let detected = 0;
    let positions = 0;
    // Every 7th byte of the committed data (8192 .. end of the last commit; the zeros written
    // ahead of the log after it are not data), a different bit each time.
    for (let pos = 8192; pos < ends[2]; pos += 7) {
      const bad = Buffer.from(whole);
      bad[pos] ^= 1 << (pos % 8);
      fs.writeFileSync(victim, bad);
      positions++;
      let db;
      try {
        db = await open(victim);
      } catch (err) {
        expect(err).toBeInstanceOf(CorruptionError);
        detected++;
        continue;
      }
      try {
        const report = db.check();
        if (!report.ok) {
          detected++;
          // Reads either fail with CorruptionError or return the right bytes: never wrong data.
          for (const [k, v] of Object.entries(expected)) {
            try {
              const got = db.get(k);
              if (got !== undefined) expect(got.toString()).toBe(v);
            } catch (err) {
              expect(err).toBeInstanceOf(CorruptionError);
            }
          }
        } else {
          // A flip that check() calls clean must lie in the last slab, beyond the superblock's
          // durable mark, where it is indistinguishable from a torn append: cut as a torn tail,
          // keeping every earlier commit exactly (documented in recovery.ts).
          expect(pos).toBeGreaterThanOrEqual(ends[1]);
          expect(db.tornBytesCut).toBeGreaterThan(0);
          expect(contents(db)).toEqual({ ...data, key7: 'new', extra: 'e'.repeat(200) });
        }
      } finally {
        await db.close();
      }
    }
    expect(positions).toBeGreaterThan(100);
    expect(detected).toBeGreaterThan(positions * 0.5);
  });

  it('a write whose path meets a corrupt node fails with CorruptionError, writes nothing, and the store goes on', async () => {
    // Before: the error escaped the batch as an unhandled rejection (the process ended) and the
    // write's promise never settled. vitest fails a test on an unhandled rejection.
    const file = await writeCorruptStore(tmp.file(`wc${n++}.db`));
    for (const durable of [true, false]) {
      const db = await open(file, { durable });
      const before = db.fileInfo().fileBytes;
      expect(() => db.get('key0200')).toThrow(CorruptionError);
      // Alone, in a group with a good write (the whole batch fails: it commits as one), a delete.
      await expect(db.set('key0200', 'x')).rejects.toBeInstanceOf(CorruptionError);
      const grouped = [db.set('key0001', 'y'), db.set('key0200', 'x')];
      await expect(grouped[0]).rejects.toBeInstanceOf(CorruptionError);
      await expect(grouped[1]).rejects.toBeInstanceOf(CorruptionError);
      await expect(db.delete('key0201')).rejects.toBeInstanceOf(CorruptionError);
      expect(db.fileInfo().fileBytes).toBe(before);
      // Keys elsewhere are still read and written.
      expect(db.get('key0001')?.toString()).toBe('value-1-'.repeat(4));
      await db.set('key0001', 'one');
      await db.set('new', 'n');
      expect(db.get('key0001')?.toString()).toBe('one');
      expect(db.count()).toBe(401);
      await db.close();
      const again = await open(file);
      expect(again.get('key0001')?.toString()).toBe('one');
      expect(again.get('new')?.toString()).toBe('n');
      expect(() => again.get('key0200')).toThrow(CorruptionError);
      await again.delete('new');
      await again.set('key0001', 'value-1-'.repeat(4));
      await again.close();
    }
  });

  it('damage followed by later valid commits is reported with its offset, not cut as a torn tail', async () => {
    const { file, ends } = await build([{ a: '1' }, { b: '2' }, { c: '3' }]);
    const bad = fs.readFileSync(file);
    const pos = ends[0] + 20; // inside the second slab; the third follows
    bad[pos] ^= 0xff;
    fs.writeFileSync(file, bad);
    await expect(open(file)).rejects.toSatisfy((e: unknown) => e instanceof CorruptionError && /offset \d+|at \d+/.test((e as Error).message));
    // With repair, the store opens at the last commit before the damage.
    const db = await open(file, { repair: true });
    expect(contents(db)).toEqual({ a: '1' });
    await db.close();
  });

  it('damage followed only by commits appended before it was durable is a torn tail; a commit appended after a sync proves it durable', async () => {
    const file = tmp.file(`nd${n++}.db`);
    const db = await open(file);
    const ends: number[] = [];
    const flags: boolean[] = [];
    const commit = async (k: string, durable: boolean) => {
      await db.transaction((tx) => tx.set(k, k.repeat(50)), { durable });
      ends.push(db.fileInfo().fileBytes);
      flags.push(db.fileInfo().lastCommit!.afterDurable);
    };
    await commit('a', true);
    await commit('b', false); // appended after a's sync
    await commit('c', false); // after b, not synced
    await commit('d', true); // after c, not synced; its own sync covers all four
    const beforeE = fs.readFileSync(file);
    await commit('e', true); // after d's sync
    (db as unknown as { log: { close(): void } }).log.close(); // a crash: no final checkpoint
    expect(flags).toEqual([true, true, false, false, true]);
    const whole = fs.readFileSync(file);
    const damaged = (bytes: Buffer) => {
      const b = Buffer.from(bytes);
      b[ends[1] + 20] ^= 0xff; // inside c's slab
      return b;
    };
    // Only d, appended while c was not durable, follows the damage: a power cut could have left
    // exactly this (c torn, d whole, neither acknowledged), so it is a torn tail.
    const victim = tmp.file(`nd${n++}.db`);
    fs.writeFileSync(victim, damaged(beforeE.subarray(0, ends[3])));
    const cut = await open(victim);
    expect(contents(cut)).toEqual({ a: 'a'.repeat(50), b: 'b'.repeat(50) });
    expect(cut.check().problems).toEqual([]);
    await cut.close();
    // e was appended after d's sync had covered c: the damage hit durable bytes.
    fs.writeFileSync(victim, damaged(whole));
    await expect(open(victim)).rejects.toThrow(/corruption at offset \d+.*a valid commit follows/);
    fs.writeFileSync(victim, whole);
    const all = await open(victim);
    expect(all.count()).toBe(5);
    await all.close();
  });

  it('a Solifuge file stored as a value does not make a torn tail look like mid-file corruption', async () => {
    // A small store's bytes, commits and all, become a value of the outer store.
    const inner = await build([{ x: '1' }, { y: '2' }]);
    const innerBytes = fs.readFileSync(inner.file).subarray(0, inner.ends[1]);
    const file = tmp.file(`outer${n++}.db`);
    const db0 = await open(file);
    await db0.set('a', '1');
    const end1 = db0.fileInfo().fileBytes;
    const head = fs.readFileSync(file).subarray(0, 8192);
    await db0.set('blob', innerBytes);
    const end2 = db0.fileInfo().fileBytes;
    (db0 as unknown as { log: { close(): void } }).log.close();
    const whole = fs.readFileSync(file);
    expect(whole.indexOf(innerBytes.subarray(8192, 8300))).toBeGreaterThan(end1); // stored verbatim
    // Tear the outer file 40 bytes before its last commit's end, as a crash before its sync would.
    fs.writeFileSync(file, Buffer.concat([head, whole.subarray(8192, end2 - 40)]));
    const db = await open(file);
    expect(contents(db)).toEqual({ a: '1' });
    await db.close();
  });

  it('a corrupt superblock copy falls back to the other; both corrupt is an error', async () => {
    const { file } = await build([{ a: '1' }]);
    const db0 = await open(file);
    await db0.close(); // writes a fresh superblock copy
    const good = fs.readFileSync(file);
    const one = Buffer.from(good);
    one[20] ^= 1;
    fs.writeFileSync(file, one);
    const db = await open(file);
    expect(db.get('a')?.toString()).toBe('1');
    await db.close();
    const both = Buffer.from(good);
    both[20] ^= 1;
    both[4096 + 20] ^= 1;
    fs.writeFileSync(file, both);
    await expect(open(file)).rejects.toBeInstanceOf(CorruptionError);
  });
});

describe('files that are not ours', () => {
  it('refuses a foreign file, a short file and a wrong version, changing nothing', async () => {
    const foreign = tmp.file('foreign.txt');
    fs.writeFileSync(foreign, 'hello world '.repeat(1000));
    await expect(open(foreign)).rejects.toBeInstanceOf(NotASolifugeFileError);
    expect(fs.readFileSync(foreign, 'utf8')).toBe('hello world '.repeat(1000));
    const short = tmp.file('short.db');
    fs.writeFileSync(short, 'SOLIFUGE');
    await expect(open(short)).rejects.toBeInstanceOf(NotASolifugeFileError);

    const { file } = await build([{ a: '1' }]);
    const b = fs.readFileSync(file);
    for (const base of [0, 4096]) {
      b.writeUInt32LE(99, base + 8);
      b.writeUInt32LE(crc32c(b, base, base + 52), base + 52);
    }
    fs.writeFileSync(file, b);
    await expect(open(file)).rejects.toBeInstanceOf(UnsupportedVersionError);
  });
});

describe('lock', () => {
  it('refuses a second open of the same file in this process until the first closes', async () => {
    const file = tmp.file('lock.db');
    const db = await open(file);
    await expect(open(file)).rejects.toBeInstanceOf(LockedError);
    await db.close();
    const again = await open(file);
    await again.close();
  });

  it('a writer with the addon and one without it exclude each other (pid file and flock both)', async () => {
    // The addon's flock and the pid file of a process without it (SOLIFUGE_NATIVE=0) were two
    // schemes that did not see each other: one writer of each kind got in, and the second one's
    // acknowledged writes were lost. A writer now takes the pid file either way.
    const { spawn } = await import('node:child_process');
    const child = new URL('./lock-child.ts', import.meta.url).pathname;
    const start = (file: string, native: boolean) => {
      const p = spawn(process.execPath, ['--import', 'tsx', child, file], {
        env: { ...process.env, SOLIFUGE_NATIVE: native ? '1' : '0' },
        stdio: ['pipe', 'pipe', 'inherit'],
      });
      const line = new Promise<{ addon: boolean; opened: boolean; code?: string }>((resolve) => {
        let out = '';
        p.stdout.on('data', (d: Buffer) => {
          out += d.toString();
          if (out.includes('\n')) resolve(JSON.parse(out.slice(0, out.indexOf('\n'))));
        });
      });
      const exited = new Promise((r) => p.on('exit', r));
      return { line, stop: async () => { p.stdin.end(); await exited; } };
    };
    // This process (with the addon, if built) holds it; a child without the addon is refused.
    const file = tmp.file('lock-mixed.db');
    const db = await open(file);
    const outsider = start(file, false);
    expect(await outsider.line).toEqual({ addon: false, opened: false, code: 'LOCKED' });
    await outsider.stop();
    await db.close();
    // A child without the addon holds it; this process is refused until it lets go.
    const holder = start(file, false);
    expect(await holder.line).toEqual({ addon: false, opened: true });
    await expect(open(file)).rejects.toBeInstanceOf(LockedError);
    // A reader too: it could meet bytes that writer's online compaction punched out.
    await expect(open(file, { readOnly: true })).rejects.toBeInstanceOf(LockedError);
    await holder.stop();
    const after = await open(file);
    expect(after.get('child')).toBeDefined();
    await after.close();
    expect(fs.existsSync(`${file}.lock`)).toBe(false);
  });

  it('a pid file left by a crash is stale when its pid is this process or one that does not hold the store', async () => {
    const file = tmp.file('lock-stale.db');
    await (await open(file)).close();
    for (const pid of [process.pid, process.ppid]) {
      fs.writeFileSync(`${file}.lock`, String(pid)); // a container restarted with the same pid; a pid reused
      const db = await open(file);
      expect(fs.readFileSync(`${file}.lock`, 'utf8')).toBe(String(process.pid));
      await db.close();
      expect(fs.existsSync(`${file}.lock`)).toBe(false);
    }
  });

  it.skipIf(addon === null)('reports any other flock failure as the errno error fs would throw, and keeps no descriptor', async () => {
    const file = tmp.file('lock-enolck.db');
    await (await open(file)).close();
    const native = addon as NonNullable<typeof addon>;
    const real = native.flock;
    const fdsBefore = fs.readdirSync('/proc/self/fd').length;
    native.flock = () => -os.constants.errno.ENOLCK; // as NFS without a lock manager answers
    try {
      const err = await open(file).then(() => null, (e: NodeJS.ErrnoException) => e);
      expect(err).toMatchObject({ code: 'ENOLCK', errno: -os.constants.errno.ENOLCK, syscall: 'flock', path: file });
    } finally {
      native.flock = real;
    }
    expect(fs.readdirSync('/proc/self/fd').length).toBe(fdsBefore);
    await (await open(file)).close();
  });
});
