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
    const again: Array<Record<string, unknown>> = [];
    await requestControl(file, 'stats', (o) => again.push(o));
    expect((again[0].result as { keys: number }).keys).toBe(1);
    expect(db.get('a')?.toString()).toBe('1');
    await db.close();
  });
});
