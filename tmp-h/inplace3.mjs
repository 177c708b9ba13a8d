import { open } from '../dist/index.js';
import fs from 'node:fs';
const KEYS = Array.from({ length: 600 }, (_, i) => `k${String(i).padStart(4, '0')}`);
const tryKeys = async (ks) => {
  fs.rmSync('/tmp/ip3.db', { force: true });
  const db = await open('/tmp/ip3.db', { nodeBytesMax: 512, checkpointTreeOverLogMax: 0, checkpointIdleMs: 0 });
  await db.transaction((tx) => { for (const k of KEYS) tx.set(k, 'v0'); });
  await db.transaction((tx) => { for (const k of KEYS) tx.set(k, 'v1'); });
  const before = db.stats.inPlaceChanges;
  await db.transaction((tx) => { for (const k of ks) tx.set(k, 'n'); });
  const r = db.stats.inPlaceChanges - before;
  await db.close();
  return r;
};
const good = [];
for (let i = 0; i < 600; i += 10) if ((await tryKeys([`${KEYS[i]}a`])) > 0) good.push(i);
console.log(good.join(','));
console.log(await tryKeys(good.slice(0, 8).map((i) => `${KEYS[i]}a`)));
