// Child process for crash.test.ts's batch cases: durable transactions of keys in random key order
// (crash-keys.ts), printing "ack <n>" once keys 0..n-1 are acknowledged and "event" after each
// batch whose commit did what the case is about, until it is killed.
//   sliced    2,000-key batches, a small checkpoint interval: most of the time goes into
//             checkpoints big enough to be sliced, and kills land between their slices, while
//             zeros are written ahead of their slabs (FileLog.zeroAhead) and halfway through their
//             appends; "event" after each that finished one.
//   background  as sliced, but those checkpoints run in the background (db.ts
//             startBackgroundCheckpoint): kills land while they stage beside the batches, while
//             they append, and while later commits follow them; "event" after each that finished.
//   prepared  1,000-key batches (~120 KB commits): kills land while zeros are written and synced
//             ahead of the log (FileLog.prepareAhead) and while commits overwrite them; "event"
//             after each commit that prepared zeros.
import { open } from '../../src/index.js';
import { crashKey, crashValue } from './crash-keys.js';

const [file, startArg, mode] = process.argv.slice(2);
const sliced = mode === 'sliced' || mode === 'background';
const batchKeys = sliced ? 2_000 : 1_000;
const db = await open(file, sliced
  ? { checkpointIntervalBytes: 2 * 1024 * 1024, checkpointTreeOverLogMax: 0, checkpointIdleMs: 0, backgroundCheckpoints: mode === 'background' }
  : { checkpointIdleMs: 0 });
const events = () => (mode === 'sliced' ? db.stats.slicedCheckpoints : mode === 'background' ? db.stats.backgroundCheckpoints : db.stats.zerosPrepared);
let n = Number(startArg);
let seen = events();
for (;;) {
  const base = n;
  await db.transaction((tx) => {
    for (let i = base; i < base + batchKeys; i++) tx.set(crashKey(i), crashValue(i));
  });
  n = base + batchKeys;
  process.stdout.write(`ack ${n}\n`);
  if (events() !== seen) {
    seen = events();
    process.stdout.write('event\n');
  }
}
