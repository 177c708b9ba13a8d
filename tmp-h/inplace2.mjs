import { open } from '../dist/index.js';
import fs from 'node:fs';
fs.rmSync('/tmp/ip2.db', { force: true });
const KEYS = Array.from({ length: 600 }, (_, i) => `k${String(i).padStart(4, '0')}`);
const db = await open('/tmp/ip2.db', { nodeBytesMax: 512, checkpointTreeOverLogMax: 0, checkpointIdleMs: 0 });
await db.transaction((tx) => { for (const k of KEYS) tx.set(k, 'v0'); });
await db.transaction((tx) => { for (const k of KEYS) tx.set(k, 'v1'); });
let ok = 0, sealed = 0;
for (let i = 0; i < KEYS.length; i += 10) { if (i % 40 !== 20) continue;
  const before = db.stats.inPlaceChanges;
  await db.transaction((tx) => { tx.set(`${KEYS[i]}a`, 'n'); });
  if (db.stats.inPlaceChanges > before) ok++; else sealed++;
}
console.log({ ok, sealed });
await db.close();
