// The `solifuge` command line as a real process: inspect and offline compact.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { open } from '../../src/index.js';
import { tempDir } from '../support/tmp.js';

const tmp = tempDir('cli');
afterAll(() => tmp.cleanup());
const cli = fileURLToPath(new URL('../../src/cli/solifuge.ts', import.meta.url));
const run = (...args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', cli, ...args], { encoding: 'utf8' });

describe('solifuge CLI', () => {
  it('inspect reports superblocks, slabs, depth, key count and a clean check; compact shrinks the file', async () => {
    const file = tmp.file('cli.db');
    const db = await open(file);
    for (let r = 0; r < 4; r++) {
      await db.transaction((tx) => {
        for (let i = 0; i < 500; i++) tx.set(`k${i}`, `value ${r} ${i}`);
      }, { tag: r });
    }
    await db.close();
    const out = run('inspect', file);
    expect(out.status).toBe(0);
    expect(out.stdout).toMatch(/last commit\s+seq \d+ at \d+, 500 keys, tag 3/);
    expect(out.stdout).toMatch(/tree\s+depth 2/);
    expect(out.stdout).toMatch(/check\s+ok/);
    const json = JSON.parse(run('inspect', file, '--json').stdout) as { check: { keys: number }; slabs: unknown[] };
    expect(json.check.keys).toBe(500);
    expect(json.slabs.length).toBeGreaterThanOrEqual(4); // plus the checkpoint written on close

    const before = fs.statSync(file).size;
    const c = run('compact', file);
    expect(c.status).toBe(0);
    expect(fs.statSync(file).size).toBeLessThan(before / 2);
    const again = await open(file);
    expect(again.count()).toBe(500);
    expect(again.lastTag).toBe(3);
    expect(again.get('k42')?.toString()).toBe('value 3 42');
    await again.close();

    // A damaged file: exit status 1 and the problem named.
    const bad = fs.readFileSync(file);
    bad[8192 + 30] ^= 0x55;
    fs.writeFileSync(file, bad);
    const broken = run('inspect', file);
    expect(broken.status).toBe(1);
    expect(broken.stdout + broken.stderr).toMatch(/checksum mismatch|corruption/);
  });

  it('compact --online compacts in place with plain progress lines when not on a terminal', async () => {
    const file = tmp.file('online.db');
    const db = await open(file, { checkpointIntervalBytes: 16 * 1024 });
    for (let r = 0; r < 6; r++) {
      await db.transaction((tx) => {
        for (let i = 0; i < 800; i++) tx.set(`k${i}`, `value ${r} ${i}`.repeat(4));
      });
    }
    await db.close();
    const before = fs.statSync(file).blocks;
    const out = run('compact', '--online', file);
    expect(out.status).toBe(0);
    expect(out.stdout).toMatch(/^copy: /m);
    expect(out.stdout).toMatch(/^done: /m);
    expect(out.stdout).toMatch(/compacted .* online: 800 keys copied/);
    expect(fs.statSync(file).blocks).toBeLessThan(before);
    const after = run('inspect', file);
    expect(after.status).toBe(0);
    expect(after.stdout).toMatch(/reclaimed\s+.* before offset \d+ \(online compaction, holes\)/);
    expect(after.stdout).toMatch(/check\s+ok/);
    const again = await open(file);
    expect(again.get('k7')?.toString()).toBe('value 5 7'.repeat(4));
    expect(again.check().problems).toEqual([]);
    await again.close();
  });

  it('compact --online reaches a store that another process holds open, through its control socket', async () => {
    const { spawn } = await import('node:child_process');
    const file = tmp.file('running.db');
    const childPath = fileURLToPath(new URL('./control-child.ts', import.meta.url));
    const child = spawn(process.execPath, ['--import', 'tsx', childPath, file], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    while (!out.includes('ready')) await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, 500)); // let it write a while
    const before = fs.statSync(file).size;
    const r = await new Promise<{ status: number | null; stdout: string }>((resolve) => {
      const p = spawn(process.execPath, ['--import', 'tsx', cli, 'compact', '--online', file], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      p.on('exit', (status) => resolve({ status, stdout }));
    });
    expect(r.stdout).toMatch(/compacted .* online \(running store\): \d+ keys copied/);
    expect(r.status).toBe(0);
    expect(before).toBeGreaterThan(0);
    child.kill('SIGTERM');
    await new Promise((resolve) => child.on('exit', resolve));
    expect(out).toMatch(/wrote \d+/);
    expect(fs.existsSync(`${file}.sock`)).toBe(false);
    const db = await open(file);
    expect(db.check().problems).toEqual([]);
    expect(db.count()).toBe(2000);
    await db.close();
  });

  it('usage errors exit with status 2', () => {
    expect(run('bogus').status).toBe(2);
    expect(run('inspect').status).toBe(2);
  });
});
