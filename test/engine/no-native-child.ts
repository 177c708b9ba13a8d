// Child for get-with.test.ts: the engine with the native addon disabled (SOLIFUGE_NATIVE=0):
// file lock by pid file, fd duplication by re-opening the same inode, sendValue by pread + write.
import crypto from 'node:crypto';
import fs from 'node:fs';
import { open } from '../../src/index.js';
import { addon } from '../../src/native/addon.js';
import { connectReceiver, sha256 } from '../native/loopback.js';

const file = process.argv[2];
const db = await open(file);
const v = crypto.randomBytes(300_000);
await db.set('k', v);
let lockedOut = false;
try {
  await open(file);
} catch (err) {
  lockedOut = (err as { code?: string }).code === 'LOCKED';
}
const viaFd = await db.getWith('k', (s) => {
  if (s.kind !== 'location') return 'no location';
  const b = Buffer.alloc(s.length);
  fs.readSync(s.fd, b, 0, s.length, s.offset);
  return b.equals(v) ? 'ok' : 'mismatch';
});
const conn = await connectReceiver();
const sent = await db.sendValue('k', conn.client);
conn.client.end();
const got = await conn.received;
await conn.close();
const prefix = Buffer.alloc(4);
prefix.writeUInt32LE(v.length, 0);
await db.close();
process.stdout.write(JSON.stringify({ addon: addon !== null, lockedOut, viaFd, sent: sent.bytes, hashOk: got.sha256 === sha256(prefix, v) }));
