import { open } from '../dist/index.js';
import fs from 'node:fs';
fs.rmSync('/tmp/ip.db', { force: true });
const KEYS = Array.from({ length: 600 }, (_, i) => `k${String(i).padStart(4, '0')}`);
const db = await open('/tmp/ip.db', { nodeBytesMax: 512, checkpointTreeOverLogMax: 0, checkpointIdleMs: 0 });
await db.transaction((tx) => { for (const k of KEYS) tx.set(k, 'v0'); });
console.log(db.stats, db.published.root);
await db.transaction((tx) => { for (const k of KEYS) tx.set(k, 'v1'); });
console.log(db.stats.inPlaceChanges, db.stats.inPlaceSeals, db.published.root);
await db.transaction((tx) => { for (let i = 0; i < KEYS.length; i += 10) tx.set(`${KEYS[i]}a`, 'n'); });
console.log(db.stats.inPlaceChanges, db.stats.inPlaceSeals, db.published.root);
await db.close();
const db2 = await open('/tmp/ip.db', { nodeBytesMax: 512, checkpointTreeOverLogMax: 0, checkpointIdleMs: 0 });
await db2.transaction((tx) => { for (const k of KEYS) tx.set(k, 'v2'); });
const ex = db2.tree.ex;
const w = () => db2.inPlaceWriter;
await db2.transaction((tx) => {
  const bw = w();
  console.log('in tx: inPlace', bw?.inPlace);
  bw.set(`k0000a`, 'n'); // directly
  console.log('after one insert: inPlace', bw.inPlace, 'journaled', ex.wtreeJournaled());
  bw.set(`k0010`, 'zz');
  console.log('after one overwrite: inPlace', bw.inPlace, 'journaled', ex.wtreeJournaled());
});
await db2.close();
