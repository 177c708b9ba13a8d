import { open } from '../dist/index.js';
import fs from 'node:fs';
fs.rmSync('/tmp/seal.db', { force: true });
const db = await open('/tmp/seal.db', { checkpointIntervalBytes: 2 * 1024 * 1024, checkpointTreeOverLogMax: 0, checkpointIdleMs: 0 });
const tree = db.tree;
const ex = tree.ex;
let n = 0;
for (let b = 0; b < 3; b++) {
  try {
  await db.transaction((tx) => { for (let i = 0; i < 2000; i++) { const k = ((n++) * 2654435761) % 1e9; tx.set('key' + k, Buffer.alloc(40, 1)); if (i % 200 === 0) console.log(b, i, 'journaled', ex.wtreeJournaled(), 'region', tree.dirtyRegionBytesInUse); } });
  } catch (e) { console.log('fail', e.message, 'journaled', ex.wtreeJournaled(), 'region', tree.dirtyRegionBytesInUse); break; }
}
await db.close();
