// Child process for crash.test.ts's big-commit case: durable 1,000-key batches (~120 KB commits),
// printing "ack <n>" once keys 0..n-1 are acknowledged and "prepared" after each batch whose
// commit wrote zeros ahead of the log for the next ones (FileLog.prepareAhead), until it is
// killed. Kills land while those zeros are written or synced, and while commits overwrite them.
import { open } from '../../src/index.js';
import { crashKey, crashValue } from './crash-keys.js';

const [file, startArg] = process.argv.slice(2);
let n = Number(startArg);
const db = await open(file, { checkpointIdleMs: 0 });
let prepared = db.stats.zerosPrepared;
for (;;) {
  const base = n;
  await db.transaction((tx) => {
    for (let i = base; i < base + 1_000; i++) tx.set(crashKey(i), crashValue(i));
  });
  n = base + 1_000;
  process.stdout.write(`ack ${n}\n`);
  if (db.stats.zerosPrepared !== prepared) {
    prepared = db.stats.zerosPrepared;
    process.stdout.write('prepared\n');
  }
}
