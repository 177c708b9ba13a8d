// Child process for crash.test.ts's sliced-checkpoint case: durable 2,000-key batches in random
// key order, printing "ack <n>" once keys 0..n-1 are acknowledged and "sliced" after each batch
// that finished a sliced checkpoint (db.ts SLICED_CHECKPOINT_BYTES_MIN), until it is killed. The
// checkpoint interval is small, so most of the time goes into checkpoints big enough to be sliced
// and kills land inside them: between their slices, and halfway through their appends.
import { open } from '../../src/index.js';
import { crashKey, crashValue } from './crash-keys.js';

const [file, startArg] = process.argv.slice(2);
let n = Number(startArg);
const db = await open(file, { checkpointIntervalBytes: 2 * 1024 * 1024, checkpointTreeOverLogMax: 0, checkpointIdleMs: 0 });
let sliced = db.stats.slicedCheckpoints;
for (;;) {
  const base = n;
  await db.transaction((tx) => {
    for (let i = base; i < base + 2_000; i++) tx.set(crashKey(i), crashValue(i));
  });
  n = base + 2_000;
  process.stdout.write(`ack ${n}\n`);
  if (db.stats.slicedCheckpoints !== sliced) {
    sliced = db.stats.slicedCheckpoints;
    process.stdout.write('sliced\n');
  }
}
