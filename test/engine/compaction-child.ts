// Child for compaction.test.ts: durable writes and online compactions in a loop until killed.
// Prints "ack <n>" after each acknowledged batch of keys w<n-40>..w<n-1>.
import { open } from '../../src/index.js';

const [file, startArg] = process.argv.slice(2);
let n = Number(startArg);
const db = await open(file, { nodeBytesMax: 1024, checkpointIntervalBytes: 128 * 1024 });
const value = (i: number) => Buffer.alloc(i % 3 === 0 ? 700 : 20 + (i % 50), i & 0xff);

let compactions = 0;
void (async () => {
  for (;;) {
    await db.compact({ chunkBytes: 16 * 1024 });
    compactions++;
    process.stdout.write(`compacted ${compactions}\n`);
  }
})();
for (;;) {
  const base = n;
  const ps: Promise<unknown>[] = [];
  for (let j = 0; j < 40; j++) ps.push(db.set(`w${base + j}`, value(base + j)));
  await Promise.all(ps);
  n = base + 40;
  process.stdout.write(`ack ${n}\n`);
}
