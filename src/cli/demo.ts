//! The embedded demo (`npm run demo`): opens a store, loads keys, reads, ranges, a transaction,
//! a reopen, the checker and offline compaction, printing what happens and how fast.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { open } from '../engine/db.js';

export async function runDemo(dirArg?: string): Promise<void> {
  const dir = dirArg ?? fs.mkdtempSync(path.join(os.tmpdir(), 'solifuge-demo-'));
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, 'demo.db');
  fs.rmSync(file, { force: true });
  const say = (s: string) => process.stdout.write(`${s}\n`);
  say(`Solifuge embedded demo in ${dir}`);

  const db = await open(file);
  const n = 100_000;
  let t = performance.now();
  for (let base = 0; base < n; base += 1000) {
    await db.transaction((tx) => {
      for (let i = base; i < base + 1000; i++) tx.set(`user:${String(i).padStart(7, '0')}`, `{"id":${i},"name":"user ${i}"}`);
    });
  }
  say(`loaded ${n} keys in 100 durable transactions: ${Math.round(n / ((performance.now() - t) / 1000))} keys/s`);

  t = performance.now();
  let found = 0;
  for (let i = 0; i < n; i++) if (db.get(`user:${String((i * 7919) % n).padStart(7, '0')}`) !== undefined) found++;
  say(`${found} random gets: ${Math.round(n / ((performance.now() - t) / 1000))} gets/s`);

  const page = [...db.range({ gte: 'user:0042000', limit: 3 })].map(([k, v]) => `${k} = ${v}`);
  say(`range from user:0042000, 3 keys:\n  ${page.join('\n  ')}`);

  await db.transaction((tx) => {
    const v = JSON.parse(tx.get('user:0000001')?.toString() ?? '{}') as { visits?: number };
    tx.set('user:0000001', JSON.stringify({ ...v, visits: (v.visits ?? 0) + 1 }));
    tx.set('counter', String(tx.count()));
  }, { tag: 1 });
  say(`transaction with tag 1: user:0000001 = ${db.get('user:0000001')}`);
  say(`deleted ${await db.deletePrefix('user:00999')} keys with prefix user:00999`);
  await db.close();

  const again = await open(file);
  const report = again.check();
  say(`reopened: ${again.count()} keys, last tag ${again.lastTag}, check ${report.ok ? 'ok' : report.problems.join('; ')}, depth ${report.depth}`);
  const online = await again.compact();
  say(`online compaction: ${online.keysCopied} keys copied while serving, allocated ${online.allocatedBytesBefore} -> ${online.allocatedBytesAfter} bytes${online.punchSkipped ? ` (${online.punchSkipped})` : ''}`);
  const compacted = path.join(dir, 'demo.compacted.db');
  fs.rmSync(compacted, { force: true });
  const r = await again.compactTo(compacted);
  say(`compactTo: ${fs.statSync(file).size} bytes -> ${r.bytes} bytes for ${r.keys} keys`);
  await again.close();
}

const invokedDirectly = process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href;
if (invokedDirectly) {
  runDemo(process.argv[2]).catch((err: unknown) => {
    process.stderr.write(`demo failed: ${String(err)}\n`);
    process.exitCode = 1;
  });
}
