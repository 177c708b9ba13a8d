// `npm run sim -- --seed N [--voters 3|5] [--ticks T] [--json]` replays one simulation exactly;
// `npm run sim:soak -- [--seconds S] [--from SEED]` runs consecutive seeds for a time budget.
//
// Owns: argument parsing and printing. Exit code 1 on any violation, with seed, tick and trace.

import { optionsForSeed, runSimulation, type SimOptions, type SimReport } from './cluster.js';

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

function overrides(): Partial<SimOptions> {
  const o: { -readonly [K in keyof SimOptions]?: SimOptions[K] } = {};
  const voters = arg('voters');
  if (voters !== undefined) o.voters = Number(voters);
  const ticks = arg('ticks');
  if (ticks !== undefined) o.faultTicks = Number(ticks);
  const drift = arg('clock-drift');
  if (drift !== undefined) o.clockDrift = Number(drift);
  return o;
}

function printFailure(r: SimReport): void {
  const f = r.failure!;
  console.log(`FAIL seed=${r.seed} tick=${f.tick.toFixed(3)}: ${f.message}`);
  console.log(`replay: npm run sim -- --seed ${r.seed}`);
  console.log('last events:');
  for (const line of f.trace) console.log(line);
}

function summary(r: SimReport): string {
  const s = r.stats;
  const o = r.options;
  return (
    `seed=${r.seed} voters=${o.voters} learners=${o.learners} witnesses=${o.witnesses} mode=${o.masterMode} window=${o.pipelineWindow} batch=${o.batchMaxUpdates} ` +
    `ticks=${s.ticksSimulated} steps=${s.steps} decided=${s.decidedInstances} ops=${s.clientOpsOk} gaveUp=${s.clientOpsGaveUp} ` +
    `crashes=${s.crashes} partitions=${s.partitions} dropped=${s.messagesDropped} dup=${s.messagesDuplicated} ` +
    `lostRecords=${s.unsyncedRecordsLost} elections=${s.elections} fetches=${s.fetches} snapshots=${s.snapshotsInstalled} ` +
    `commitRtt=${s.commitLatencyRttMedian.toFixed(2)}`
  );
}

function main(): void {
  if (process.argv.includes('--soak')) {
    const seconds = Number(arg('seconds') ?? '60');
    let seed = Number(arg('from') ?? String(Math.floor(Date.now() % 1_000_000_000)));
    const until = Date.now() + seconds * 1000;
    let runs = 0;
    while (Date.now() < until) {
      const r = runSimulation(optionsForSeed(seed, overrides()));
      runs++;
      if (!r.ok) {
        printFailure(r);
        process.exitCode = 1;
        return;
      }
      seed++;
    }
    console.log(`soak: ${runs} seeds passed (last ${seed - 1})`);
    return;
  }
  const seed = Number(arg('seed') ?? '1');
  const r = runSimulation(optionsForSeed(seed, overrides()));
  if (process.argv.includes('--json')) console.log(JSON.stringify({ ok: r.ok, seed: r.seed, stats: r.stats, failure: r.failure }, null, 2));
  else console.log(summary(r));
  if (!r.ok) {
    printFailure(r);
    process.exitCode = 1;
  }
}

main();
