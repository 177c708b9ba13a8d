// fdatasyncPolled (native/polled-sync.cc): fdatasync on the addon's sync thread while the caller
// polls. Real files, real fdatasyncs. What it must keep: each call's result is its own fd's
// fdatasync; both futex paths (the caller sleeping once its poll ran out, the sync thread sleeping
// between requests) wake; callers on several JS threads are served one at a time, never mixed up.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { afterAll, describe, expect, it } from 'vitest';
import { addon } from '../../src/native/addon.js';
import { FileLog } from '../../src/engine/log-file.js';
import { open } from '../../src/index.js';
import { BadArgumentError, IoFailedError } from '../../src/engine/errors.js';
import { allowedCpus, allowedCpusOfProcess, completionCpuOfFile } from '../../src/native/completion-cpu.js';

const { EBADF, EINVAL, EIO } = os.constants.errno;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'solifuge-polled-sync-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
let files = 0;
const freshFile = (): string => {
  const file = path.join(dir, `f${files++}`);
  fs.writeFileSync(file, Buffer.alloc(4096));
  return file;
};

const polled = addon?.fdatasyncPolled;
const describeNative = polled === undefined ? describe.skip : describe;

const SCHED_IDLE = 5;

/** The addon's syncThreadCounters, which these tests need. */
function syncThreadCounters(): NonNullable<NonNullable<typeof addon>['syncThreadCounters']> {
  const counters = addon?.syncThreadCounters;
  expect(counters).toBeDefined();
  return counters as NonNullable<typeof counters>;
}

/** This process's thread named `name` (/proc/self/task): its allowed CPUs, policy and state. */
function thread(name: string): { tid: string; allowed: number[]; policy: number; state: string } {
  const dir = '/proc/self/task';
  // (A thread may end between the listing and the read: V8's and libuv's come and go.)
  const commOf = (tid: string): string | null => {
    try {
      return fs.readFileSync(path.join(dir, tid, 'comm'), 'latin1').trim();
    } catch {
      return null;
    }
  };
  const tids = fs.readdirSync(dir).filter((tid) => commOf(tid) === name);
  expect(tids).toHaveLength(1);
  const status = fs.readFileSync(path.join(dir, tids[0], 'status'), 'latin1');
  const stat = fs.readFileSync(path.join(dir, tids[0], 'stat'), 'latin1');
  // stat: "tid (comm) state ..." with the policy 41st; comm may hold spaces, so count after ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return {
    tid: tids[0],
    allowed: allowedCpus(status),
    policy: Number(fields[41 - 3]),
    state: fields[0],
  };
}

describeNative('fdatasyncPolled', () => {
  const sync = polled as NonNullable<typeof polled>;

  it('syncs a real file with every kind of spin: none, too short to see the sync, long', () => {
    const fd = fs.openSync(freshFile(), 'r+');
    try {
      for (const spinUs of [0, 1, 1000]) {
        for (let i = 0; i < 50; i++) {
          fs.writeSync(fd, Buffer.from(`write ${i}`), 0, undefined, i * 16);
          expect(sync(fd, spinUs)).toBe(0);
        }
      }
    } finally {
      fs.closeSync(fd);
    }
  });

  it("returns each call's own errno, also when good and bad fds alternate", () => {
    const fd = fs.openSync(freshFile(), 'r+');
    const [pipeRead, pipeWrite] = pipeFds();
    const closed = fs.openSync(freshFile(), 'r');
    fs.closeSync(closed);
    try {
      for (let i = 0; i < 20; i++) {
        expect(sync(fd, 500)).toBe(0);
        expect(sync(closed, 500)).toBe(-EBADF);
        expect(sync(fd, 500)).toBe(0);
        expect(sync(pipeRead, 500)).toBe(-EINVAL); // fdatasync on a pipe
      }
    } finally {
      fs.closeSync(fd);
      fs.closeSync(pipeRead);
      fs.closeSync(pipeWrite);
    }
  });

  it('serves callers on several JS threads at once, each its own result', async () => {
    // Each worker syncs its own file 200 times, its good fd and fd -1 in turn; the main thread
    // syncs its own meanwhile. A mixed-up slot returns the wrong errno to someone. (Not a closed
    // fd: its number may be reused at once by another thread's open.)
    const source = `
      const { parentPort, workerData } = require('node:worker_threads');
      const fs = require('node:fs');
      const addon = require(workerData.addonPath);
      const fd = fs.openSync(workerData.file, 'r+');
      let wrong = 0;
      for (let i = 0; i < 200; i++) {
        fs.writeSync(fd, Buffer.from('w' + i), 0, undefined, 0);
        if (addon.fdatasyncPolled(fd, i % 3 === 0 ? 1 : 300) !== 0) wrong++;
        if (addon.fdatasyncPolled(-1, 300) !== -${EBADF}) wrong++;
      }
      fs.closeSync(fd);
      parentPort.postMessage(wrong);
    `;
    const addonPath = path.resolve('build/Release/zerocopy.node');
    const results = [0, 1].map(
      () =>
        new Promise<number>((resolve, reject) => {
          const w = new Worker(source, { eval: true, workerData: { addonPath, file: freshFile() } });
          w.once('message', resolve);
          w.once('error', reject);
        }),
    );
    const fd = fs.openSync(freshFile(), 'r+');
    let wrong = 0;
    for (let i = 0; i < 200; i++) if (sync(fd, 300) !== 0) wrong++;
    fs.closeSync(fd);
    expect(wrong).toBe(0);
    expect(await Promise.all(results)).toEqual([0, 0]);
  }, 60_000);

  it('refuses arguments that are not an fd and a spin within bounds, and syncs nothing for them', () => {
    // Coerced, NaN would be fd 0 and 2**32 + 1 fd 1: a sync of someone else's file.
    for (const fd of [Number.NaN, 2 ** 32 + 1, 1.5, -2, Number.POSITIVE_INFINITY]) expect(() => sync(fd, 100)).toThrow(TypeError);
    for (const spinUs of [-1, Number.NaN, Number.POSITIVE_INFINITY, 1e6 + 1]) expect(() => sync(0, spinUs)).toThrow(TypeError);
    expect(() => (sync as unknown as (fd: unknown, spinUs: unknown) => number)('3', 100)).toThrow(TypeError);
    expect(sync(-1, 100)).toBe(-EBADF);
  });

  it('refuses a cpu that is not an integer in -1 .. 1023, and syncs nothing for it', () => {
    const withCpu = sync as unknown as (fd: number, spinUs: number, cpu: unknown) => number;
    for (const cpu of [-2, 1.5, 1024, Number.NaN, '1', null]) expect(() => withCpu(-1, 100, cpu)).toThrow(TypeError);
    expect(withCpu(-1, 100, undefined)).toBe(-EBADF);
    expect(withCpu(-1, 100, -1)).toBe(-EBADF);
  });

  const allowed = allowedCpusOfProcess() ?? [];
  it.skipIf(allowed.length < 2)("serves a request with a cpu pinned there, a SCHED_IDLE keeper beside it that sleeps once a request's spin has passed after it; -1 unpins", async () => {
    const fd = fs.openSync(freshFile(), 'r+');
    try {
      for (const cpu of [allowed[allowed.length - 1], allowed[0]]) {
        fs.writeSync(fd, Buffer.from(`to ${cpu}`), 0, undefined, 0);
        expect(sync(fd, 300, cpu)).toBe(0);
        const syncThread = thread('solifuge-sync');
        const keeper = thread('solifuge-keep');
        expect(syncThread.allowed).toEqual([cpu]);
        expect(keeper.allowed).toEqual([cpu]);
        expect(keeper.policy).toBe(SCHED_IDLE);
        expect(syncThread.policy).toBe(0); // SCHED_OTHER, with a short slice where the kernel has them
        // The keeper spins while the sync thread waits for the disk and, watching for the next
        // request, up to the request's spin after it (300 µs); then it goes to sleep.
        const until = Date.now() + 5000;
        while (thread('solifuge-keep').state !== 'S' && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
        expect(thread('solifuge-keep').state).toBe('S');
      }
      expect(sync(fd, 300, -1)).toBe(0);
      expect(thread('solifuge-sync').allowed).toEqual(allowed);
      // A CPU this process may not run on (none has 1023 here): served unpinned.
      expect(sync(fd, 300, 1023)).toBe(0);
      expect(thread('solifuge-sync').allowed).toEqual(allowed);
    } finally {
      fs.closeSync(fd);
    }
  });

  const sleepMs = (ms: number): void => void Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
  it.skipIf(allowed.length < 2)('between requests the keeper watches for the next one and wakes the sync thread for it', () => {
    const read = syncThreadCounters();
    const fd = fs.openSync(freshFile(), 'r+');
    try {
      const cpu = allowed[allowed.length - 1];
      // 0.3 ms apart: too far apart for the sync thread to poll (PollAfterNs), within the 1 ms
      // the keeper watches after each request.
      for (let i = 0; i < 5; i++) expect(sync(fd, 1000, cpu)).toBe(0);
      const before = read();
      for (let i = 0; i < 60; i++) {
        sleepMs(0.3);
        expect(sync(fd, 1000, cpu)).toBe(0);
      }
      const after = read();
      expect(after.requestsServed - before.requestsServed).toBe(60);
      // Measured here: 59 of 60 (the keeper runs only when nothing else wants its CPU).
      expect(after.requestsHandedOff - before.requestsHandedOff).toBeGreaterThan(0);
    } finally {
      fs.closeSync(fd);
    }
  });

  it.skipIf(allowed.length < 2 || spawnSync('taskset', ['--version']).status !== 0)(
    "is not held up when the keeper's CPU is busy: the caller wakes the sync thread itself",
    async () => {
      const fd = fs.openSync(freshFile(), 'r+');
      const cpu = allowed[allowed.length - 1];
      // A process spinning on the keeper's CPU: the keeper (SCHED_IDLE) then hardly runs, and a
      // caller that left the wake-up to it must not wait for it. Measured here: p50 80 µs; with
      // no wake-up of the caller's own, 3.6 ms (p90 11.6 ms).
      const hog = spawn('taskset', ['-c', String(cpu), process.execPath, '-e', 'for (;;) {}'], { stdio: 'ignore' });
      try {
        await new Promise((r) => setTimeout(r, 200));
        const latencyUs: number[] = [];
        for (let i = 0; i < 60; i++) {
          sleepMs(0.3);
          const t = process.hrtime.bigint();
          expect(sync(fd, 1000, cpu)).toBe(0);
          latencyUs.push(Number(process.hrtime.bigint() - t) / 1000);
        }
        latencyUs.sort((a, b) => a - b);
        expect(latencyUs[30]).toBeLessThan(1000);
      } finally {
        hog.kill('SIGKILL');
        fs.closeSync(fd);
      }
    },
  );

  it.skipIf(allowed.length < 2)("bounds the keeper's spin by the request's: with 1 µs it naps through the I/O", () => {
    const fd = fs.openSync(freshFile(), 'r+');
    try {
      const cpu = allowed[allowed.length - 1];
      expect(sync(fd, 1000, cpu)).toBe(0); // the keeper exists and sits on `cpu`
      const keeperNs = (): number => Number(fs.readFileSync(`/proc/self/task/${thread('solifuge-keep').tid}/schedstat`, 'latin1').split(' ')[0]);
      const before = keeperNs();
      const t0 = process.hrtime.bigint();
      // Syncs long enough that spinning through them shows (256 KiB each, ~0.2 ms here): with a
      // few bytes each, a ~110 µs fdatasync (2026-12-07) left the wake-up a nap costs at ~20% of
      // the wall, at this bound. Measured then: 6–7% of the wall napping, 46–47% spinning (a
      // 1000 µs request; the keeper is SCHED_IDLE beside the sync thread).
      const chunk = Buffer.alloc(256 * 1024, 7);
      for (let i = 0; i < 100; i++) {
        fs.writeSync(fd, chunk, 0, undefined, (i % 8) * chunk.length);
        expect(sync(fd, 1, cpu)).toBe(0);
      }
      const wallNs = Number(process.hrtime.bigint() - t0);
      expect(keeperNs() - before).toBeLessThan(wallNs * 0.2);
    } finally {
      fs.closeSync(fd);
    }
  });

  it('polls for the next request only while requests come close together', () => {
    const read = syncThreadCounters();
    const fd = fs.openSync(freshFile(), 'r+');
    try {
      // Back to back (a few µs apart, as durable single commits come): the sync thread sees most
      // of them while it polls, with no futex wake-up between.
      expect(sync(fd, 1000)).toBe(0);
      const before = read();
      for (let i = 0; i < 200; i++) expect(sync(fd, 1000)).toBe(0);
      const after = read();
      expect(after.requestsServed - before.requestsServed).toBe(200);
      expect(after.requestsSeenPolling - before.requestsSeenPolling).toBeGreaterThanOrEqual(100);
      // 3 ms apart (a sorted load's commits come ~0.6 ms apart): after a few, no poll at all. With
      // the request's whole spin after each (1 ms, as before round 32) the thread ran >= 30 ms here.
      const syncThreadNs = (): number => Number(fs.readFileSync(`/proc/self/task/${thread('solifuge-sync').tid}/schedstat`, 'latin1').split(' ')[0]);
      const cpuBefore = syncThreadNs();
      const spaced = read();
      for (let i = 0; i < 30; i++) {
        sleepMs(3);
        expect(sync(fd, 1000)).toBe(0);
      }
      expect(read().requestsSeenPolling - spaced.requestsSeenPolling).toBe(0);
      expect(syncThreadNs() - cpuBefore).toBeLessThan(10e6);
    } finally {
      fs.closeSync(fd);
    }
  });

  it('survives the worker threads that started it exiting (the addon stays loaded)', () => {
    // Node unloads a worker's addons when the worker exits; the sync thread must not lose its code.
    // The child's main thread never loads the addon, so only the workers hold it.
    const script = `
      const { Worker } = require('node:worker_threads');
      const source = "const a = require(" + JSON.stringify(process.argv[1]) + "); const fs = require('node:fs');" +
        "const fd = fs.openSync(" + JSON.stringify(process.argv[2]) + ", 'r+');" +
        "for (let i = 0; i < 20; i++) if (a.fdatasyncPolled(fd, i === 19 ? 200000 : 1000) !== 0) process.exit(3);" +
        "fs.closeSync(fd);";
      (async () => {
        for (let i = 0; i < 6; i++) await new Promise((res, rej) => { const w = new Worker(source, { eval: true }); w.on('exit', res); w.on('error', rej); });
        await new Promise((res) => setTimeout(res, 300)); // the sync thread still polling or asleep
        console.log('ok');
      })();
    `;
    const r = spawnSync(process.execPath, ['-e', script, path.resolve('build/Release/zerocopy.node'), freshFile()], { encoding: 'utf8', timeout: 60_000 });
    expect({ status: r.status, signal: r.signal, out: r.stdout.trim() }).toEqual({ status: 0, signal: null, out: 'ok' });
  }, 70_000);

  it('a failed polled fdatasync rejects the commit and turns the store read-only', async () => {
    const native = addon as Required<NonNullable<typeof addon>>;
    // syncDirect off: every commit is an fdatasync (direct-write.test.ts fails a direct write).
    const db = await open(path.join(dir, `eio-${files++}.db`), { syncSpinUs: 100, syncDirect: false, checkpointTreeOverLogMax: 0 });
    await db.set('before', '1');
    const finish = native.fdatasyncFinish;
    native.fdatasyncFinish = () => {
      finish();
      return -EIO;
    };
    try {
      const err = await db.set('during', '2').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(IoFailedError);
      expect(((err as IoFailedError).cause as NodeJS.ErrnoException).code).toBe('EIO');
      await expect(db.set('after', '3')).rejects.toBeInstanceOf(IoFailedError);
      expect(db.get('before')?.toString()).toBe('1');
      expect(db.get('during')).toBeUndefined();
    } finally {
      native.fdatasyncFinish = finish;
    }
    await db.close();
  });

  it('FileLog.syncNow throws the same error with or without polling', () => {
    const log = FileLog.open(freshFile(), { readOnly: false });
    log.close();
    const thrown = (spinUs: number) => {
      try {
        log.syncNow(spinUs);
      } catch (err) {
        return err as NodeJS.ErrnoException;
      }
      throw new Error('syncNow on a closed file did not throw');
    };
    const plain = thrown(0);
    const viaPoll = thrown(1000);
    expect(plain.code).toBe('EBADF');
    expect({ code: viaPoll.code, errno: viaPoll.errno, syscall: viaPoll.syscall }).toEqual({ code: plain.code, errno: plain.errno, syscall: plain.syscall });
  });
});

describe('OpenOptions.syncSpinUs', () => {
  it('is validated', async () => {
    for (const syncSpinUs of [-1, 1_000_001, Number.NaN]) {
      await expect(open(path.join(dir, `bad-${files++}.db`), { syncSpinUs })).rejects.toThrow(BadArgumentError);
    }
  });

  it("reaches the small commits' fdatasync, and 0 keeps them plain", async () => {
    for (const syncSpinUs of [0, 250]) {
      // No checkpoints chosen by size: these commits' slabs then stay small logs, synced inline.
      const db = await open(path.join(dir, `spin-${files++}.db`), { syncSpinUs, checkpointTreeOverLogMax: 0 });
      type Log = { appendSynced: (buf: Buffer, len: number, spinUs: number, direct?: boolean) => void };
      const log = (db as unknown as { log: Log }).log;
      const real = log.appendSynced.bind(log);
      const seen: Array<number | undefined> = [];
      log.appendSynced = (buf, len, spinUs, direct) => {
        seen.push(spinUs);
        real(buf, len, spinUs, direct);
      };
      await db.set('k', 'v');
      await db.transaction((tx) => {
        tx.set('a', '1');
        tx.set('b', '2');
      });
      log.appendSynced = real;
      expect(seen).toEqual([syncSpinUs, syncSpinUs]);
      // Direct writes are off by default (OpenOptions.syncDirect): both are fdatasyncs.
      expect(db.stats.directSyncs).toBe(0);
      await db.close();
    }
  });
});

function pipeFds(): [number, number] {
  // Node has no pipe(2); a FIFO opened read-write twice gives pipe fds without a second process.
  const fifo = path.join(dir, `fifo-${files++}`);
  if (spawnSync('mkfifo', [fifo]).status !== 0) throw new Error('mkfifo failed');
  const readFd = fs.openSync(fifo, fs.constants.O_RDWR | fs.constants.O_NONBLOCK);
  const writeFd = fs.openSync(fifo, fs.constants.O_RDWR | fs.constants.O_NONBLOCK);
  return [readFd, writeFd];
}

describe('OpenOptions.syncCpu', () => {
  it('is validated', async () => {
    // 1023: a CPU number this machine's process may not run on.
    for (const syncCpu of [-1, 1024, 1.5, Number.NaN, 'on', 1023]) {
      await expect(open(path.join(dir, `bad-cpu-${files++}.db`), { syncCpu: syncCpu as number })).rejects.toThrow(BadArgumentError);
    }
  });

  it("is null where no polled sync runs: 'off', no spin, read-only", async () => {
    const file = path.join(dir, `cpu-off-${files++}.db`);
    for (const opts of [{ syncCpu: 'off' as const }, { syncSpinUs: 0, syncCpu: 0 }]) {
      const db = await open(file, opts);
      expect(db.syncCpu).toBeNull();
      await db.set('k', 'v');
      await db.close();
    }
    const ro = await open(file, { readOnly: true, syncCpu: 0 });
    expect(ro.syncCpu).toBeNull();
    await ro.close();
  });

  it("'auto' passes the disk's completion CPU (completion-cpu.test.ts tests finding it)", async () => {
    const db = await open(path.join(dir, `cpu-auto-${files++}.db`));
    const fd = (db as unknown as { log: FileLog }).log.fd;
    expect(db.syncCpu).toBe(addon?.fdatasyncStart === undefined || os.availableParallelism() < 2 ? null : completionCpuOfFile(fd));
    await db.close();
  });

  const allowed = allowedCpusOfProcess() ?? [];
  it.skipIf(addon?.fdatasyncStart === undefined || allowed.length < 2)('a CPU number pins the small commits\' syncs there; what they wrote reads back after reopening', async () => {
    const cpu = allowed[allowed.length - 1];
    const file = path.join(dir, `cpu-n-${files++}.db`);
    const db = await open(file, { syncCpu: cpu, checkpointTreeOverLogMax: 0 });
    expect(db.syncCpu).toBe(cpu);
    for (let i = 0; i < 50; i++) await db.set(`k${i}`, `v${i}`);
    expect(thread('solifuge-sync').allowed).toEqual([cpu]);
    expect(db.stats.syncs).toBeGreaterThanOrEqual(50);
    await db.close();
    const again = await open(file, { syncCpu: 'off' });
    for (let i = 0; i < 50; i++) expect(again.get(`k${i}`)?.toString()).toBe(`v${i}`);
    await again.close();
  });
});
