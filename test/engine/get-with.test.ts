// getWith and sendValue: the continuation contract and zero-copy streaming to real loopback
// sockets, in native (sendfile) and fallback (pread + write) modes.
import crypto from 'node:crypto';
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CorruptionError, open, type Db, type ValueSource } from '../../src/index.js';
import { nativeZeroCopyAvailable } from '../../src/native/send-file.js';
import { connectReceiver, measureTimerLagMs, openFdCount, settleFdCount, sha256 } from '../native/loopback.js';
import { tempDir } from '../support/tmp.js';

const tmp = tempDir('getwith');
let db: Db;
const big = crypto.randomBytes(100 << 20);
const mib = crypto.randomBytes(1 << 20);
const prefixOf = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n, 0);
  return b;
};

beforeAll(async () => {
  db = await open(tmp.file('gw.db'), { durable: false, maxValueBytes: 128 << 20 });
  await db.set('big', big);
  await db.set('mib', mib);
  await db.set('small', 'tiny value');
});
afterAll(async () => {
  await db.close();
  tmp.cleanup();
});

describe('getWith', () => {
  it('hands out NotFound, Value for inline values, Location for value entries', async () => {
    expect(await db.getWith('nope', (s) => s.kind)).toBe('notFound');
    const small = await db.getWith('small', (s) => s);
    expect(small).toEqual({ kind: 'value', value: Buffer.from('tiny value') });
    const got = await db.getWith('mib', (s) => {
      expect(s.kind).toBe('location');
      if (s.kind !== 'location') throw new Error('no location');
      const b = Buffer.alloc(s.length);
      fs.readSync(s.fd, b, 0, s.length, s.offset);
      return b;
    });
    expect(got.equals(mib)).toBe(true);
  });

  it('closes the fd when the handler settles, also when it throws, and releases the snapshot', async () => {
    const before = openFdCount();
    let kept = -1;
    await db.getWith('mib', (s) => {
      if (s.kind === 'location') kept = s.fd;
    });
    expect(() => fs.fstatSync(kept)).toThrow();
    await expect(db.getWith('mib', () => {
      throw new Error('handler failed');
    })).rejects.toThrow('handler failed');
    await expect(db.getWith('mib', async () => {
      await new Promise((r) => setTimeout(r, 5));
      throw new Error('async failure');
    })).rejects.toThrow('async failure');
    expect(openFdCount()).toBe(before);
    expect(db.pinnedSnapshots).toBe(0);
  });

  it('a handler that waits while the key is overwritten and the store compacted still reads the old bytes', async () => {
    const file = tmp.file('old.db');
    const d = await open(file);
    const old = crypto.randomBytes(300_000);
    await d.set('k', old);
    const seen = await d.getWith('k', async (s: ValueSource) => {
      if (s.kind !== 'location') throw new Error('expected a location');
      await d.set('k', crypto.randomBytes(300_000));
      await d.delete('k');
      await d.compactTo(tmp.file('old-compacted.db'));
      expect(d.pinnedSnapshots).toBe(1);
      const b = Buffer.alloc(s.length);
      fs.readSync(s.fd, b, 0, s.length, s.offset);
      return b;
    });
    expect(seen.equals(old)).toBe(true);
    expect(d.get('k')).toBeUndefined();
    await d.close();
  });

  it('never hands out a location whose bytes fail their checksum', async () => {
    const file = tmp.file('corrupt.db');
    const d = await open(file);
    const v = crypto.randomBytes(50_000);
    await d.set('k', v);
    await d.close();
    const raw = fs.readFileSync(file);
    const at = raw.indexOf(v.subarray(0, 64));
    raw[at + 1000] ^= 1;
    fs.writeFileSync(file, raw);
    const again = await open(file);
    await expect(again.getWith('k', () => 'served')).rejects.toBeInstanceOf(CorruptionError);
    expect(() => again.get('k')).toThrow(CorruptionError);
    await again.close();
  });
});

const modes = nativeZeroCopyAvailable ? (['sendfile', 'fallback'] as const) : (['fallback'] as const);

describe.each(modes)('sendValue (%s)', (mode) => {
  it('streams a 100 MiB value with its length prefix, byte-exact', async () => {
    const conn = await connectReceiver();
    const r = await db.sendValue('big', conn.client, { mode });
    expect(r).toEqual({ found: true, bytes: big.length });
    conn.client.end();
    const got = await conn.received;
    expect(got.bytes).toBe(4 + big.length);
    expect(got.sha256).toBe(sha256(prefixOf(big.length), big));
    await conn.close();
  });

  it('1 MiB, an inline value and a missing key, in order on one socket, and without a prefix', async () => {
    const conn = await connectReceiver();
    expect(await db.sendValue('mib', conn.client, { mode })).toEqual({ found: true, bytes: mib.length });
    expect(await db.sendValue('small', conn.client, { mode })).toEqual({ found: true, bytes: 10 });
    expect(await db.sendValue('missing', conn.client, { mode })).toEqual({ found: false, bytes: 0 });
    expect(await db.sendValue('mib', conn.client, { mode, lengthPrefix: 'none' })).toEqual({ found: true, bytes: mib.length });
    conn.client.end();
    const got = await conn.received;
    expect(got.sha256).toBe(sha256(prefixOf(mib.length), mib, prefixOf(10), Buffer.from('tiny value'), mib));
    await conn.close();
  });

  it('a receiver that stalls and resumes gets everything; the event loop stays responsive', async () => {
    const conn = await connectReceiver({ stallAfterFirstByteMs: 500 });
    const { result, maxLagMs } = await measureTimerLagMs(() => db.sendValue('big', conn.client, { mode }));
    expect(result.bytes).toBe(big.length);
    conn.client.end();
    expect((await conn.received).sha256).toBe(sha256(prefixOf(big.length), big));
    expect(maxLagMs).toBeLessThan(1000);
    await conn.close();
  });

  it('a receiver that resets mid-transfer rejects the promise and leaks no fd', async () => {
    const before = openFdCount();
    const conn = await connectReceiver({ resetAfterBytes: 3 << 20 });
    await expect(db.sendValue('big', conn.client, { mode })).rejects.toThrow();
    await conn.received;
    await conn.close();
    expect(await settleFdCount(before)).toBe(before);
    expect(db.pinnedSnapshots).toBe(0);
  });

  it('64 concurrent sends to slow readers keep the process responsive', async () => {
    const conns = await Promise.all(Array.from({ length: 64 }, () => connectReceiver({ pauseEveryChunkMs: 2 })));
    const { result, maxLagMs } = await measureTimerLagMs(() => Promise.all(conns.map((c) => db.sendValue('mib', c.client, { mode }))));
    expect(result.every((r) => r.bytes === mib.length)).toBe(true);
    for (const c of conns) c.client.end();
    const got = await Promise.all(conns.map((c) => c.received));
    expect(got.every((g) => g.sha256 === sha256(prefixOf(mib.length), mib))).toBe(true);
    expect(maxLagMs).toBeLessThan(1000);
    await Promise.all(conns.map((c) => c.close()));
  });
});

describe('without the native addon (SOLIFUGE_NATIVE=0)', () => {
  it('locks, hands out locations and streams values through the fallbacks', async () => {
    const { spawnSync } = await import('node:child_process');
    const child = new URL('./no-native-child.ts', import.meta.url).pathname;
    const r = spawnSync(process.execPath, ['--import', 'tsx', child, tmp.file('nonative.db')], {
      encoding: 'utf8',
      env: { ...process.env, SOLIFUGE_NATIVE: '0' },
    });
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toEqual({ addon: false, lockedOut: true, viaFd: 'ok', sent: 300_000, hashOk: true });
  });
});

describe('sendValue over TLS', () => {
  it('falls back to pread + write for a TLS socket (no plaintext fd), byte-exact', async () => {
    const tls = await import('node:tls');
    const crypto = await import('node:crypto');
    const fixtures = new URL('../fixtures/', import.meta.url);
    const key = fs.readFileSync(new URL('tls-key.pem', fixtures));
    const cert = fs.readFileSync(new URL('tls-cert.pem', fixtures));
    const received = new Promise<{ bytes: number; sha: string }>((resolve) => {
      const server = tls.createServer({ key, cert }, (s) => {
        const h = crypto.createHash('sha256');
        let bytes = 0;
        s.on('data', (d: Buffer) => {
          bytes += d.length;
          h.update(d);
        });
        s.on('end', () => {
          resolve({ bytes, sha: h.digest('hex') });
          server.close();
        });
      });
      server.listen(0, '127.0.0.1', () => {
        const port = (server.address() as { port: number }).port;
        const client = tls.connect({ port, host: '127.0.0.1', ca: cert, servername: 'localhost' }, async () => {
          const r = await db.sendValue('mib', client);
          expect(r).toEqual({ found: true, bytes: mib.length });
          client.end();
        });
      });
    });
    const got = await received;
    expect(got.bytes).toBe(4 + mib.length);
    expect(got.sha).toBe(sha256(prefixOf(mib.length), mib));
  });
});

describe('value references that do not match their entry', () => {
  it('a checked Value entry named with another length, or past the end, is corruption, never other bytes', async () => {
    // The verifier skips re-checking an entry it checked once: by position and length, so a
    // reference with the right position and a wrong length (a leaf damaged with its checksum
    // intact, or made so) is checked again and refused instead of reading other bytes.
    const loc = await db.getWith('mib', (src) => (src.kind === 'location' ? { offset: src.offset, length: src.length } : null));
    expect(loc).not.toBeNull();
    const internals = db as unknown as {
      verifier: { verify(pos: number, len: number): void };
      materialize(v: unknown): Buffer;
    };
    const { ValueRef } = await import('../../src/engine/node.js');
    const { ENTRY_HEADER_BYTES } = await import('../../src/engine/format.js');
    const pos = (loc as { offset: number }).offset - ENTRY_HEADER_BYTES;
    expect(internals.materialize(new ValueRef(pos, mib.length, undefined)).equals(mib)).toBe(true); // checked now
    expect(() => internals.materialize(new ValueRef(pos, mib.length + 4096, undefined))).toThrow(CorruptionError);
    expect(() => internals.verifier.verify(pos, mib.length - 1)).toThrow(CorruptionError);
    expect(() => internals.verifier.verify(2 ** 60, 10)).toThrow(CorruptionError);
    expect(() => internals.verifier.verify(pos, 2 ** 40)).toThrow(CorruptionError);
  });
});
