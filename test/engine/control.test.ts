// The control socket's bad-input handling and its stats command, over a real Unix socket.
import net from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { open } from '../../src/index.js';
import { requestControl } from '../../src/engine/control.js';
import { tempDir } from '../support/tmp.js';

const tmp = tempDir('control');
afterAll(() => tmp.cleanup());

function raw(sock: string, payload: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = net.connect(sock, () => c.write(payload));
    let out = '';
    c.on('data', (d: Buffer) => (out += d.toString()));
    c.on('close', () => resolve(out));
    c.on('error', reject);
  });
}

describe('control socket', () => {
  it('answers stats, refuses malformed, unknown and oversized requests, and stays up', async () => {
    const file = tmp.file('ctl.db');
    const db = await open(file, { controlSocket: true });
    await db.set('a', '1');
    const lines: Array<Record<string, unknown>> = [];
    await requestControl(file, 'stats', (o) => lines.push(o));
    expect((lines[0].result as { keys: number }).keys).toBe(1);
    expect(await raw(`${file}.sock`, 'not json\n')).toMatch(/malformed request/);
    expect(await raw(`${file}.sock`, '{"cmd":"drop everything"}\n')).toMatch(/unknown command/);
    expect(await raw(`${file}.sock`, 'x'.repeat(10_000))).toMatch(/request too long/);
    // Valid JSON that is no request object: this one ended the process (a TypeError in the listener).
    for (const line of ['null', '42', '"compact"', '[1]', '{}']) {
      expect(await raw(`${file}.sock`, `${line}\n`)).toMatch(/malformed request|unknown command/);
    }
    const again: Array<Record<string, unknown>> = [];
    await requestControl(file, 'stats', (o) => again.push(o));
    expect((again[0].result as { keys: number }).keys).toBe(1);
    expect(db.get('a')?.toString()).toBe('1');
    await db.close();
  });

  it('close() does not wait for a client that keeps its side open, or one that never asks', async () => {
    const file = tmp.file('ctl-half.db');
    const db = await open(file, { controlSocket: true, checkpointIdleMs: 0 });
    await db.set('a', 'b');
    // One that asked and got its answer, and never ends its side (allowHalfOpen); one that sent nothing.
    const asked = net.connect({ path: `${file}.sock`, allowHalfOpen: true });
    let reply = '';
    asked.on('data', (d: Buffer) => (reply += d.toString()));
    await new Promise((r) => asked.on('connect', r));
    asked.write('{"cmd":"stats"}\n');
    const silent = net.connect({ path: `${file}.sock`, allowHalfOpen: true });
    await new Promise((r) => silent.on('connect', r));
    const closedBy = (s: net.Socket) => new Promise((r) => s.on('close', r));
    const bothClosed = Promise.all([closedBy(asked), closedBy(silent)]);
    await new Promise((r) => setTimeout(r, 100));
    expect(reply).toMatch(/"keys":1/);
    const t0 = Date.now();
    await db.close(); // waited for the half-open client until the test timed out
    expect(Date.now() - t0).toBeLessThan(5000);
    asked.destroy();
    silent.destroy();
    await bothClosed;
  });
});
