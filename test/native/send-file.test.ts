// sendFileRegion over real loopback sockets and real files, in every mode this machine has:
// sendfile and splice (native addon) and the pread + socket.write fallback. Each transfer test
// runs in every mode with the same expectations, since the modes promise the same results.
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { AssertionError } from 'node:assert';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addon } from '../../src/native/addon.js';
import { nativeZeroCopyAvailable, sendFileRegion, type SendMode, ZeroCopyError } from '../../src/native/send-file.js';
import { connectReceiver, measureTimerLagMs, openFdCount, settleFdCount, sha256 } from './loopback.js';

const MiB = 1 << 20;
const fileSizeBytes = 100 * MiB;
const modes: SendMode[] = nativeZeroCopyAvailable ? ['sendfile', 'splice', 'fallback'] : ['fallback'];
const { EBADF, ECANCELED, ECONNRESET, ENODATA, EPIPE } = os.constants.errno;

let dir = '';
let filePath = '';
let data: Buffer;
let fd = -1;

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'solifuge-zerocopy-'));
  filePath = path.join(dir, 'values.bin');
  data = crypto.randomFillSync(Buffer.allocUnsafeSlow(fileSizeBytes));
  fs.writeFileSync(filePath, data);
  fd = fs.openSync(filePath, 'r');
});

afterAll(() => {
  if (fd >= 0) fs.closeSync(fd);
  fs.rmSync(dir, { recursive: true, force: true });
});

it('reports the native addon as available on Linux builds', () => {
  // Guards against silently testing only the fallback: on Linux with a build, native must load.
  if (process.platform === 'linux' && fs.existsSync('build/Release/zerocopy.node') && process.env.SOLIFUGE_NATIVE !== '0') {
    expect(nativeZeroCopyAvailable).toBe(true);
  }
});

it('SOLIFUGE_NATIVE=0 disables the addon', () => {
  const script = "import { addon } from './src/native/addon.ts'; process.stdout.write(String(addon === null));";
  const child = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    env: { ...process.env, SOLIFUGE_NATIVE: '0' },
    encoding: 'utf8',
  });
  expect(child.stdout).toBe('true');
});

it.skipIf(!nativeZeroCopyAvailable)('tears down cleanly when a worker thread ends or is terminated mid-transfer', () => {
  // The addon keeps one sender thread and one thread-safe function per environment; a worker's
  // teardown must join the thread and drop unsettled transfers without a fatal napi error.
  // A child process, so a crash shows as an exit code instead of taking vitest down.
  const workerCode = `
    const { workerData } = require('node:worker_threads');
    const net = require('node:net'), fs = require('node:fs');
    const addon = require(workerData.addonPath);
    const server = net.createServer((s) => (workerData.stall ? s.pause() : s.resume()));
    server.listen(0, '127.0.0.1', () => {
      const c = net.connect(server.address().port, '127.0.0.1', () => {
        const out = addon.send(workerData.mode, c._handle.fd, fs.openSync(workerData.filePath, 'r'), 0, 32 << 20);
        if (workerData.stall) return out.promise.catch(() => {});
        out.promise.then(() => { c.destroy(); server.close(); });
      });
    });`;
  const script = `
    import { Worker } from 'node:worker_threads';
    const base = ${JSON.stringify({ addonPath: path.resolve('build/Release/zerocopy.node'), filePath })};
    for (const [mode, stall] of [[0, false], [1, false], [0, true], [1, true]]) {
      const w = new Worker(${JSON.stringify(workerCode)}, { eval: true, execArgv: [], workerData: { ...base, mode, stall } });
      if (stall) { await new Promise((r) => setTimeout(r, 300)); await w.terminate(); }
      else await new Promise((r) => w.on('exit', r));
    }
    process.stdout.write('done');`;
  const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 30_000 });
  expect(child.stderr).toBe('');
  expect(child.status).toBe(0);
  expect(child.stdout).toBe('done');
});

describe.each(modes)('sendFileRegion, %s mode', (mode) => {
  beforeAll(async () => {
    // Warm-up: start the addon's sender thread (it keeps an epoll fd and an eventfd for the
    // life of the process) so the fd-leak checks below compare like with like.
    const conn = await connectReceiver({ stallAfterFirstByteMs: 50 });
    await sendFileRegion(conn.client, fd, 0, 16 * MiB, { mode });
    await conn.close();
  });

  it('streams 100 MiB exactly, after queued bytes and a prefix, before later writes', async () => {
    const conn = await connectReceiver();
    const head = Buffer.from('HEAD-queued-before');
    const prefix = Buffer.alloc(4);
    prefix.writeUInt32BE(fileSizeBytes);
    const tail = Buffer.from('TAIL-written-after');
    conn.client.write(head); // still queued in Node when the transfer starts
    const result = await sendFileRegion(conn.client, fd, 0, fileSizeBytes, { mode, prefix });
    expect(result).toEqual({ bytes: fileSizeBytes, mode });
    conn.client.end(tail);
    const received = await conn.received;
    expect(received.bytes).toBe(head.length + prefix.length + fileSizeBytes + tail.length);
    expect(received.sha256).toBe(sha256(head, prefix, data, tail));
    await conn.close();
  });

  it('streams 1 MiB from an unaligned offset exactly', async () => {
    const conn = await connectReceiver();
    const offset = 12_345_679;
    const result = await sendFileRegion(conn.client, fd, offset, MiB, { mode });
    expect(result.bytes).toBe(MiB);
    conn.client.end();
    const received = await conn.received;
    expect(received.bytes).toBe(MiB);
    expect(received.sha256).toBe(sha256(data.subarray(offset, offset + MiB)));
    await conn.close();
  });

  it('waits for a socket that is still connecting', async () => {
    const conn = await connectReceiver({ returnWhileConnecting: true });
    expect(conn.client.connecting).toBe(true);
    const prefix = Buffer.from([0, 0, 0, 42]);
    expect(await sendFileRegion(conn.client, fd, 42, MiB, { mode, prefix })).toEqual({ bytes: MiB, mode });
    conn.client.end();
    expect((await conn.received).sha256).toBe(sha256(prefix, data.subarray(42, 42 + MiB)));
    await conn.close();
  });

  it('sends an empty region as nothing', async () => {
    const conn = await connectReceiver();
    expect(await sendFileRegion(conn.client, fd, 5, 0, { mode })).toEqual({ bytes: 0, mode });
    conn.client.end();
    expect((await conn.received).bytes).toBe(0);
    await conn.close();
  });

  it('survives a receiver that stalls and resumes, without blocking the event loop', async () => {
    const conn = await connectReceiver({ stallAfterFirstByteMs: 800 });
    const offset = 3 * MiB + 1;
    const lengthBytes = 32 * MiB;
    const { result, maxLagMs } = await measureTimerLagMs(() => sendFileRegion(conn.client, fd, offset, lengthBytes, { mode }));
    expect(result.bytes).toBe(lengthBytes);
    expect(maxLagMs).toBeLessThan(600); // a loop blocked through the stall lags 800+ ms
    conn.client.end();
    const received = await conn.received;
    expect(received.sha256).toBe(sha256(data.subarray(offset, offset + lengthBytes)));
    await conn.close();
  });

  it('rejects with errno and bytesSent when the receiver resets mid-transfer, leaking no fd', async () => {
    const fdsBefore = openFdCount();
    const conn = await connectReceiver({ resetAfterBytes: 2 * MiB });
    const lengthBytes = 64 * MiB;
    const error = await sendFileRegion(conn.client, fd, 0, lengthBytes, { mode }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(ZeroCopyError);
    const e = error as ZeroCopyError;
    expect([EPIPE, ECONNRESET, ECANCELED]).toContain(e.errno);
    expect(e.code).toMatch(/^(EPIPE|ECONNRESET|ECANCELED)$/);
    expect(e.bytesSent).toBeGreaterThanOrEqual(0);
    expect(e.bytesSent).toBeLessThan(lengthBytes);
    expect((await conn.received).aborted).toBe(true);
    await conn.close();
    if (addon !== null && mode !== 'fallback') expect(addon.pendingTransfers()).toBe(0);
    expect(await settleFdCount(fdsBefore)).toBe(fdsBefore);
  });

  it('cancels when the sending socket is destroyed mid-transfer; the peer sees the close', async () => {
    const fdsBefore = openFdCount();
    const conn = await connectReceiver({ stallAfterFirstByteMs: 60_000 }); // never resumes in time
    const pending = sendFileRegion(conn.client, fd, 0, 64 * MiB, { mode }).then(
      () => null,
      (e: unknown) => e,
    );
    await new Promise((resolve) => setTimeout(resolve, 100));
    conn.client.destroy();
    // The socket's fd number is free now and the next open() takes it: a transfer that wrote to
    // the number rather than to its own duplicate would append region bytes to this file.
    const reusePath = path.join(dir, `reuse-${mode}.bin`);
    const reuseFd = fs.openSync(reusePath, 'w');
    const error = await pending;
    expect(fs.fstatSync(reuseFd).size).toBe(0);
    fs.closeSync(reuseFd);
    fs.rmSync(reusePath);
    expect(error).toBeInstanceOf(ZeroCopyError);
    expect([EPIPE, ECONNRESET, ECANCELED]).toContain((error as ZeroCopyError).errno);
    // Without the cancel, the addon's duplicate fd would hold the connection open and keep
    // sending: the receiver, once it reads on, would get the whole region and never an end.
    conn.resumeNow();
    const closed = await Promise.race([conn.received.then(() => true), new Promise((r) => setTimeout(() => r(false), 3000))]);
    expect(closed).toBe(true);
    await conn.close();
    expect(await settleFdCount(fdsBefore)).toBe(fdsBefore);
  });

  it('rejects with ENODATA after sending what exists when the file is shorter than the region', async () => {
    const conn = await connectReceiver();
    const offset = fileSizeBytes - 1000;
    const error = await sendFileRegion(conn.client, fd, offset, 5000, { mode }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(ZeroCopyError);
    expect((error as ZeroCopyError).errno).toBe(ENODATA);
    expect((error as ZeroCopyError).code).toBe('ENODATA');
    expect((error as ZeroCopyError).bytesSent).toBe(1000);
    conn.client.end();
    const received = await conn.received;
    expect(received.sha256).toBe(sha256(data.subarray(offset)));
    await conn.close();
  });

  it('rejects with EBADF for a file fd that is not open', async () => {
    const conn = await connectReceiver();
    const notOpenFd = 19_999; // above anything this test process opens
    const error = await sendFileRegion(conn.client, notOpenFd, 0, 100, { mode }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(ZeroCopyError);
    expect((error as ZeroCopyError).errno).toBe(EBADF);
    expect((error as ZeroCopyError).bytesSent).toBe(0);
    await conn.close();
  });

  it('refuses a second concurrent transfer on the same socket (programmer error)', async () => {
    const conn = await connectReceiver({ stallAfterFirstByteMs: 100 });
    const first = sendFileRegion(conn.client, fd, 0, 8 * MiB, { mode });
    await expect(sendFileRegion(conn.client, fd, 0, 10, { mode })).rejects.toBeInstanceOf(AssertionError);
    expect((await first).bytes).toBe(8 * MiB);
    await conn.close();
  });

  it.skipIf(mode === 'fallback')('keeps sending the right bytes when the caller closes its fd mid-transfer', async () => {
    const ownFd = fs.openSync(filePath, 'r');
    const conn = await connectReceiver({ stallAfterFirstByteMs: 300 });
    const lengthBytes = 32 * MiB;
    const pending = sendFileRegion(conn.client, ownFd, 0, lengthBytes, { mode });
    await new Promise((resolve) => setTimeout(resolve, 50));
    fs.closeSync(ownFd);
    // Reuse the fd number for a file of different bytes: a transfer still using the number
    // would now read zeros.
    const decoyPath = path.join(dir, 'decoy.bin');
    fs.writeFileSync(decoyPath, Buffer.alloc(lengthBytes));
    const decoyFd = fs.openSync(decoyPath, 'r');
    try {
      expect((await pending).bytes).toBe(lengthBytes);
      conn.client.end();
      expect((await conn.received).sha256).toBe(sha256(data.subarray(0, lengthBytes)));
    } finally {
      fs.closeSync(decoyFd);
      fs.rmSync(decoyPath);
      await conn.close();
    }
  });

  it('keeps the process responsive with 64 concurrent transfers to slow readers', async () => {
    const transfers = 64;
    const lengthBytes = 4 * MiB;
    // Readers at ~3 MB/s: each transfer stays pending for about a second, so a design that
    // parks one libuv pool thread per stalled transfer would starve the probe below for seconds.
    const conns = await Promise.all(Array.from({ length: transfers }, () => connectReceiver({ pauseEveryChunkMs: 20 })));
    let maxPending = 0;
    let maxPoolLatencyMs = 0;
    // libuv's pool (fs, dns, zlib, crypto) must stay available while readers are slow.
    let probing = true;
    const probe = (async () => {
      while (probing) {
        const t0 = performance.now();
        await fs.promises.stat(filePath);
        maxPoolLatencyMs = Math.max(maxPoolLatencyMs, performance.now() - t0);
        if (addon !== null) maxPending = Math.max(maxPending, addon.pendingTransfers());
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    })();
    const { result, maxLagMs } = await measureTimerLagMs(() =>
      Promise.all(conns.map((conn, i) => sendFileRegion(conn.client, fd, i * 1024, lengthBytes, { mode }))),
    );
    probing = false;
    await probe;
    for (const r of result) expect(r.bytes).toBe(lengthBytes);
    for (const conn of conns) conn.client.end();
    const received = await Promise.all(conns.map((c) => c.received));
    received.forEach((r, i) => {
      expect(r.bytes).toBe(lengthBytes);
      expect(r.sha256).toBe(sha256(data.subarray(i * 1024, i * 1024 + lengthBytes)));
    });
    await Promise.all(conns.map((c) => c.close()));
    // Not a benchmark: healthy runs show tens of ms; the bounds only catch a blocked loop or a
    // starved pool (seconds), with room for a shared, loaded 2-core machine.
    expect(maxLagMs).toBeLessThan(1000);
    expect(maxPoolLatencyMs).toBeLessThan(1000);
    // Far more transfers waited off-thread at once than libuv has pool threads (4).
    if (mode !== 'fallback') expect(maxPending).toBeGreaterThanOrEqual(32);
  });
});
