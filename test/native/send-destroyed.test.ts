// A sending socket destroyed while the copy paths (pread + socket.write, and TLS) still have a
// write in flight, and an inline value sent while a transfer streams on the same socket.
//
// Node calls back a write that was in flight when its socket was destroyed with no error, so a
// copy path that trusts the callback counts a chunk the peer never got and, when that chunk was
// the last one, resolves a transfer that was cut. Which chunk is in flight when the kernel's
// buffers fill depends on how much they hold, so each test measures that on a probe connection
// and then sends regions whose ends fall around it: some of them end inside the chunk stuck in
// flight. For every region, the outcome must agree with what the peer got.
import crypto from 'node:crypto';
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { open, type Db } from '../../src/index.js';
import { nativeZeroCopyAvailable, sendFileRegion, ZeroCopyError } from '../../src/native/send-file.js';
import { tempDir } from '../support/tmp.js';
import { connectReceiver, sha256, type Connection } from './loopback.js';

const KiB = 1 << 10;
const MiB = 1 << 20;
const tmp = tempDir('send-destroyed');
const fixtures = new URL('../fixtures/', import.meta.url);
const tlsKey = fs.readFileSync(new URL('tls-key.pem', fixtures));
const tlsCert = fs.readFileSync(new URL('tls-cert.pem', fixtures));
// Long enough that a transfer to a stalled peer has filled the kernel's buffers and stopped.
const stuckAfterMs = 150;

let fd = -1;

beforeAll(() => {
  // Larger than the loopback buffers hold for a peer that stopped reading (~4 MiB on Linux).
  fs.writeFileSync(tmp.file('region.bin'), crypto.randomBytes(24 * MiB));
  fd = fs.openSync(tmp.file('region.bin'), 'r');
});
afterAll(() => {
  fs.closeSync(fd);
  tmp.cleanup();
});

type Connect = () => Promise<Connection>;
const tcpReceiver: Connect = () => connectReceiver({ stallAfterFirstByteMs: 60_000 });
/** A TLS loopback connection whose server side stops reading after the first bytes. */
const connectTlsReceiver: Connect = () => connectReceiver({ stallAfterFirstByteMs: 60_000, tls: { key: tlsKey, cert: tlsCert } });

/** Bytes a stalled peer ends up with when the sender writes without limit, then is destroyed. */
async function stalledCapacityBytes(connect: Connect): Promise<number> {
  const conn = await connect();
  const piece = Buffer.alloc(256 * KiB);
  for (let i = 0; i < 64; i++) conn.client.write(piece);
  await new Promise((r) => setTimeout(r, stuckAfterMs));
  conn.client.destroy();
  conn.resumeNow();
  const { bytes } = await conn.received;
  await conn.close();
  return bytes;
}

interface Trial {
  lengthBytes: number;
  receivedBytes: number;
  outcome: { resolved: true; bytes: number } | { resolved: false; error: unknown };
}

/** Sends [0, lengthBytes) to a stalled peer, destroys the socket once stuck, lets the peer drain. */
async function destroyWhileStuck(connect: Connect, lengthBytes: number): Promise<Trial> {
  const conn = await connect();
  const pending = sendFileRegion(conn.client, fd, 0, lengthBytes, { mode: 'fallback' }).then(
    (r) => ({ resolved: true as const, bytes: r.bytes }),
    (error: unknown) => ({ resolved: false as const, error }),
  );
  await new Promise((r) => setTimeout(r, stuckAfterMs));
  conn.client.destroy();
  const outcome = await pending;
  conn.resumeNow();
  const { bytes: receivedBytes } = await conn.received;
  await conn.close();
  return { lengthBytes, receivedBytes, outcome };
}

/**
 * Regions ending from 1 MiB below to 1 MiB above the probe's capacity, 128 KiB apart: the
 * fallback has at most two 256 KiB chunks in flight, so some of them end inside the chunk that
 * is stuck when the buffers fill. Every outcome must match what the peer got.
 */
async function checkDestroyedTransfers(connect: Connect): Promise<void> {
  const capacityBytes = await stalledCapacityBytes(connect);
  expect(capacityBytes).toBeGreaterThan(256 * KiB);
  expect(capacityBytes + MiB).toBeLessThan(24 * MiB);
  let cutTrials = 0;
  for (let lengthBytes = capacityBytes - MiB; lengthBytes <= capacityBytes + MiB; lengthBytes += 128 * KiB) {
    const trial = await destroyWhileStuck(connect, lengthBytes);
    if (trial.outcome.resolved) {
      // A resolved transfer handed every byte over before the destroy: the peer got them all.
      expect(trial, 'resolved although the peer did not get every byte').toMatchObject({ receivedBytes: lengthBytes });
      expect(trial.outcome.bytes).toBe(lengthBytes);
      continue;
    }
    cutTrials++;
    const error = trial.outcome.error;
    expect(error).toBeInstanceOf(ZeroCopyError);
    const e = error as ZeroCopyError;
    expect(e.code).toBe('ECANCELED');
    expect(e.mode).toBe('fallback');
    // Never a chunk the peer could not have received.
    expect(e.bytesSent).toBeLessThanOrEqual(trial.receivedBytes);
    expect(trial.receivedBytes).toBeLessThan(lengthBytes);
  }
  expect(cutTrials, 'some regions were larger than the buffers').toBeGreaterThan(0);
}

describe('a socket destroyed mid-transfer', () => {
  it('fallback (pread + write): rejects ECANCELED, never resolves a cut transfer, bytesSent <= received', async () => {
    await checkDestroyedTransfers(tcpReceiver);
  });

  it('TLS: rejects ECANCELED, never resolves a cut transfer, bytesSent <= received', async () => {
    await checkDestroyedTransfers(connectTlsReceiver);
  });
});

describe('one send per socket at a time, inline values included', () => {
  let db: Db;
  const big = crypto.randomBytes(16 * MiB); // more than a stalled peer's buffers take
  const prefixOf = (n: number): Buffer => {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(n, 0);
    return b;
  };

  beforeAll(async () => {
    db = await open(tmp.file('busy.db'), { durable: false, maxValueBytes: 32 * MiB });
    await db.set('big', big);
    await db.set('small', 'tiny value');
  });
  afterAll(async () => {
    await db.close();
  });

  const modes = nativeZeroCopyAvailable ? (['sendfile', 'fallback'] as const) : (['fallback'] as const);
  it.each(modes)('%s: an inline value sent while a value streams is refused, not written into it', async (mode) => {
    expect(await db.getWith('small', (src) => src.kind)).toBe('value');
    const conn = await tcpReceiver();
    const streaming = db.sendValue('big', conn.client, { mode });
    await new Promise((r) => setTimeout(r, 50));
    // Refusals are immediate; an inline write let through would wait in the stalled stream's
    // queue, so the peer reads on after a while either way rather than the test hanging.
    const resume = setTimeout(() => conn.resumeNow(), 300);
    await expect(db.sendValue('small', conn.client, { mode })).rejects.toThrow('one send per socket at a time');
    // The same refusal as a second Location send.
    await expect(db.sendValue('big', conn.client, { mode })).rejects.toThrow('one send per socket at a time');
    clearTimeout(resume);
    conn.resumeNow();
    expect(await streaming).toEqual({ found: true, bytes: big.length });
    // Once the stream settled, the socket takes an inline value again, after it.
    expect(await db.sendValue('small', conn.client, { mode })).toEqual({ found: true, bytes: 10 });
    conn.client.end();
    const got = await conn.received;
    expect(got.sha256).toBe(sha256(prefixOf(big.length), big, prefixOf(10), Buffer.from('tiny value')));
    await conn.close();
  });
});
