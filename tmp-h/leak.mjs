import { open } from '../dist/index.js';
import fs from 'node:fs';
fs.rmSync('/tmp/leak.db', { force: true });
const db = await open('/tmp/leak.db', { checkpointIdleMs: 0 });
const tree = db.tree;
const report = (l) => console.log(l, 'region', tree.dirtyRegionBytesInUse, 'est', tree.dirtyEstimateBytes, 'pending', tree.pending.count, 'cp', db.stats.checkpoints, 'bg', db.stats.backgroundCheckpoints);
for (let r = 0; r < 5; r++) {
  await db.transaction((tx) => { for (let i = 0; i < 2000; i++) tx.set('k' + ((i * 7919 + r) % 5000), Buffer.alloc(100, r)); });
  report('tx' + r);
}
for (let i = 0; i < 200; i++) await db.set('s' + i, 'x');
report('sets');
await db.checkpoint();
report('after checkpoint');
const s = db.snapshot();
await db.set('a', 'b');
await db.checkpoint();
report('snapshot held, checkpoint');
s.release();
report('released');
await db.set('a', 'c');
await db.checkpoint();
report('checkpoint again');
await db.close();
