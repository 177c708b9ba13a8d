// The `solifuge` command line as a real process: inspect and offline compact.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { open } from '../../src/index.js';
import { tempDir } from '../support/tmp.js';

const tmp = tempDir('cli');
afterAll(() => tmp.cleanup());
const cli = fileURLToPath(new URL('../../src/cli/solifuge.ts', import.meta.url));
const run = (...args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', cli, ...args], { encoding: 'utf8' });
/** As run, without blocking this process's event loop (which may be serving the CLI). */
function runAsync(...args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['--import', 'tsx', cli, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.on('error', reject);
    p.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

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

  it('inspect --slabs refuses anything but a whole number of 0 or more as a usage error', async () => {
    const file = tmp.file('slabs.db');
    const db = await open(file);
    await db.set('k', 'v');
    await db.close();
    for (const bad of ['abc', '-1', '2.5', '']) {
      const out = run('inspect', file, `--slabs=${bad}`);
      expect(out.status, bad).toBe(2);
      expect(out.stderr).toMatch(/--slabs/);
    }
    expect(run('inspect', file, '--slabs', '0').status).toBe(0);
  });

  it('inspect on a store a running process holds: its figures over the control socket, or a clear refusal without one', async () => {
    const file = tmp.file('live.db');
    // No idle checkpoint: the store itself writes nothing while the CLI runs.
    const db = await open(file, { controlSocket: true, checkpointIdleMs: 0 });
    for (let i = 0; i < 300; i++) await db.set(`k${i}`, `v${i}`);
    const before = fs.readFileSync(file);
    const text = await runAsync('inspect', file);
    expect(text.stderr).toBe('');
    expect(text.status).toBe(0);
    expect(text.stdout).toMatch(/open in a running process/);
    expect(text.stdout).toMatch(/keys\s+300\b/);
    const json = await runAsync('inspect', file, '--json');
    expect(json.status).toBe(0);
    expect(JSON.parse(json.stdout)).toMatchObject({ live: true, stats: { keys: 300 } });
    // It only asked: the file and the store are as they were.
    expect(fs.readFileSync(file).equals(before)).toBe(true);
    await db.set('after', 'x');
    expect(db.count()).toBe(301);
    await db.close();

    // Held without a control socket: an error that says why, status 1, nothing on stdout.
    const quiet = await open(file);
    const refused = await runAsync('inspect', file);
    expect(refused.status).toBe(1);
    expect(refused.stdout).toBe('');
    expect(refused.stderr).toMatch(/already open .*does not listen on a control socket/);
    await quiet.close();
    expect((await runAsync('inspect', file)).status).toBe(0);
  });

  it('inspect reports a file recovery refuses: superblocks, the refusal and its offset, status 1', async () => {
    const file = tmp.file('short.db');
    const db = await open(file);
    for (let r = 0; r < 3; r++) await db.transaction((tx) => { for (let i = 0; i < 200; i++) tx.set(`k${i}`, `value ${r} ${i}`); });
    await db.close();
    const whole = JSON.parse(run('inspect', file, '--json').stdout) as { superblocks: Array<{ read: { kind: string; sb?: { dataEnd: number } } }> };
    const dataEnd = Math.max(...whole.superblocks.map((s) => s.read.sb?.dataEnd ?? 0));
    expect(dataEnd).toBeGreaterThan(8192);
    // Cut short of the durable end the superblock records: acknowledged commits are gone.
    fs.truncateSync(file, dataEnd - 100);
    const text = run('inspect', file);
    expect(text.status).toBe(1);
    expect(text.stdout).toMatch(/superblock@0\s+counter \d+/);
    expect(text.stdout).toMatch(new RegExp(`refused\\s+corruption at offset ${dataEnd - 100}: file ends at ${dataEnd - 100}, before the durable end ${dataEnd}`));
    expect(text.stderr).toBe('');
    const json = run('inspect', file, '--json');
    expect(json.status).toBe(1);
    const r = JSON.parse(json.stdout) as { fileBytes: number; check: unknown; lastCommit: unknown; failure: { code: string; offset: number } };
    expect(r.failure).toMatchObject({ code: 'CORRUPTION', offset: dataEnd - 100 });
    expect(r.check).toBeNull();
    expect(r.lastCommit).toBeNull();
    expect(r.fileBytes).toBe(dataEnd - 100);
    // Inspect changed nothing: the file is as short as it was, and a writable open refuses it.
    expect(fs.statSync(file).size).toBe(dataEnd - 100);
    await expect(open(file)).rejects.toThrow(/before the durable end/);

    // Not a store at all: reported the same way, with the superblocks' verdicts.
    const foreign = tmp.file('foreign.db');
    fs.writeFileSync(foreign, Buffer.alloc(3 * 8192, 0x41));
    const f = run('inspect', foreign);
    expect(f.status).toBe(1);
    expect(f.stdout).toMatch(/superblock@0\s+foreign/);
    expect(f.stdout).toMatch(/refused\s+.*no superblock magic/);
    // A missing file is an error, not a report.
    const missing = run('inspect', tmp.file('missing.db'));
    expect(missing.status).toBe(1);
    expect(missing.stdout).toBe('');
    expect(missing.stderr).toMatch(/ENOENT|no such file/i);
  });

  it('offline compact through a symlink compacts the real file, keeps the link, the mode and the owner', async () => {
    fs.mkdirSync(tmp.file('real'));
    const real = tmp.file('real/data.db');
    const link = tmp.file('link.db');
    const db = await open(real);
    for (let r = 0; r < 4; r++) await db.transaction((tx) => { for (let i = 0; i < 300; i++) tx.set(`k${i}`, `value ${r} ${i}`); });
    await db.close();
    fs.chmodSync(real, 0o600);
    const asRoot = process.getuid?.() === 0;
    if (asRoot) fs.chownSync(real, 4321, 4321);
    fs.symlinkSync('real/data.db', link);
    const before = fs.statSync(real).size;

    const c = run('compact', link);
    expect(c.stderr).toBe('');
    expect(c.status).toBe(0);
    expect(fs.lstatSync(link).isSymbolicLink()).toBe(true);
    expect(fs.readlinkSync(link)).toBe('real/data.db');
    const after = fs.statSync(real);
    expect(after.size).toBeLessThan(before / 2);
    expect(after.mode & 0o7777).toBe(0o600);
    if (asRoot) expect([after.uid, after.gid]).toEqual([4321, 4321]);
    expect(fs.readdirSync(tmp.file('real'))).toEqual(['data.db']); // no temporary file left
    fs.chmodSync(real, 0o640); // neither the default 0644 nor what a 077 umask gives
    expect(run('compact', link).status).toBe(0);
    expect(fs.statSync(real).mode & 0o7777).toBe(0o640);
    const again = await open(link);
    expect(again.count()).toBe(300);
    expect(again.get('k7')?.toString()).toBe('value 3 7');
    await again.close();
  });

  it('inspect piped into a reader that stops early ends quietly, with its usual status', async () => {
    const file = tmp.file('many-slabs.db');
    const db = await open(file, { durable: false });
    for (let i = 0; i < 2000; i++) await db.set(`k${i}`, `v${i}`); // a slab each: well over a pipe's 64 KiB of listing
    await db.close();
    // A real pipe, as a shell builds it; `head -1` exits after the first line. The subshell
    // reports the CLI's own status on stderr.
    const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
    const cmd = `(${[process.execPath, '--import', 'tsx', cli, 'inspect', file, '--slabs', '100000'].map(quote).join(' ')}; echo "exit $?" >&2) | head -1`;
    const out = spawnSync('sh', ['-c', cmd], { encoding: 'utf8' });
    expect(out.stdout).toMatch(/^file\s+\S+many-slabs\.db/);
    expect(out.stderr).toBe('exit 0\n');
  });
});
