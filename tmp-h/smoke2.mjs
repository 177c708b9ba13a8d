import { open } from '../dist/index.js';
let db = await open('/tmp/smoke.db');
const r = db.check();
console.log(r.problems.slice(0, 5), r.keys, db.count(), db.fileInfo().lastCommit);
await db.close();
