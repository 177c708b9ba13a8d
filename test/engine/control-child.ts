// Child for cli.test.ts: holds a store open with its control socket and keeps writing until it
// receives SIGTERM, then closes the store cleanly and prints how many keys it wrote.
import { open } from '../../src/index.js';

const file = process.argv[2];
const db = await open(file, { controlSocket: true, checkpointIntervalBytes: 32 * 1024 });
let n = 0;
let stopping = false;
process.on('SIGTERM', () => (stopping = true));
process.stdout.write('ready\n');
while (!stopping) {
  await db.transaction((tx) => {
    for (let i = 0; i < 50; i++) tx.set(`k${(n + i) % 2000}`, `value ${n + i}`.repeat(8));
  });
  n += 50;
  await new Promise((r) => setTimeout(r, 2));
}
await db.close();
process.stdout.write(`wrote ${n}\n`);
