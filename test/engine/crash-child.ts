// Child process for crash.test.ts: durable writes in a loop, printing "ack <n>" after each
// acknowledged write, until it is killed. Writes mix single sets issued in one turn (group
// commit), transactions, large values and deletes.
import { open } from '../../src/index.js';

const [file, startArg, directArg] = process.argv.slice(2);
let n = Number(startArg);
// Small checkpoint interval: kills land before, during and after checkpoints. "direct": small
// durable commits written O_DIRECT | O_DSYNC (OpenOptions.syncDirect, off by default).
const db = await open(file, { nodeBytesMax: 1024, checkpointIntervalBytes: 256 * 1024, syncDirect: directArg === 'direct' });
const value = (i: number) => Buffer.alloc(i % 3 === 0 ? 700 : 20 + (i % 50), i & 0xff);

let directSyncs = 0;
for (;;) {
  const base = n;
  const ps: Promise<unknown>[] = [];
  for (let j = 0; j < 20; j++) ps.push(db.set(`w${base + j}`, value(base + j)));
  ps.push(db.transaction((tx) => {
    for (let j = 20; j < 40; j++) tx.set(`w${base + j}`, value(base + j));
    tx.delete(`w${base - 1000}`); // keys older than 1000 are deleted again
  }));
  await Promise.all(ps);
  n = base + 40;
  process.stdout.write(`ack ${n}\n`);
  // Tells the test that acknowledged writes were direct ones too (db.ts syncDirect).
  if (db.stats.directSyncs > directSyncs) {
    directSyncs = db.stats.directSyncs;
    process.stdout.write('direct\n');
  }
}
