import { open } from '../dist/index.js';
import fs from 'node:fs';
const mode = process.argv[2] ?? 'background';
fs.rmSync('/tmp/bg.db', { force: true });
const db = await open('/tmp/bg.db', { checkpointIntervalBytes: 2 * 1024 * 1024, checkpointTreeOverLogMax: 0, checkpointIdleMs: 0, backgroundCheckpoints: mode === 'background' });
const tree = db.tree;
let n = 0;
for (let b = 0; b < 60; b++) {
  await db.transaction((tx) => { for (let i = 0; i < 2000; i++) { const k = ((n++) * 2654435761) % 1e9; tx.set('key' + k, Buffer.alloc(40, 1)); } });
  if (b % 5 === 0) console.log(b, 'region MiB', (tree.dirtyRegionBytesInUse / 2 ** 20).toFixed(1), 'est MiB', (tree.dirtyEstimateBytes / 2 ** 20).toFixed(1), 'since', (db.dirtyBytesSinceCheckpoint() / 2 ** 20).toFixed(1), 'cp', db.stats.checkpoints, 'bg', db.stats.backgroundCheckpoints, 'bgc', db.stats.backgroundCommits, 'sliced', db.stats.slicedCheckpoints);
}
await db.close();
