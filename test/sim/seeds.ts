// The fixed CI seed list. Odd seeds run 3 voters, even seeds 5 (optionsForSeed); each run has
// 1,500 ticks of faults and 900 of liveness. A failing seed replays with `npm run sim -- --seed N`.
import { expect } from 'vitest';
import { optionsForSeed, runSimulation, type SimReport } from '../../src/sim/cluster.js';

export const CI_SEEDS_PER_SIZE = 200;

export function ciSeeds(voters: 3 | 5): number[] {
  return Array.from({ length: CI_SEEDS_PER_SIZE }, (_, i) => 2 * i + (voters === 3 ? 1 : 2));
}

export function runSeeds(seeds: readonly number[]): SimReport[] {
  const reports: SimReport[] = [];
  const failures: string[] = [];
  for (const seed of seeds) {
    const r = runSimulation(optionsForSeed(seed));
    reports.push(r);
    if (!r.ok) failures.push(`seed ${seed} tick ${r.failure!.tick}: ${r.failure!.message}\n  replay: npm run sim -- --seed ${seed}\n${r.failure!.trace.slice(-15).join('\n')}`);
  }
  expect(failures).toEqual([]);
  return reports;
}

export function totals(reports: readonly SimReport[]): Record<string, number> {
  const t: Record<string, number> = {};
  for (const r of reports) for (const [k, v] of Object.entries(r.stats)) if (Number.isFinite(v)) t[k] = (t[k] ?? 0) + v;
  return t;
}

/** Runs the CI seeds of one cluster size and checks that the faults really happened. */
export function checkCiSeeds(voters: 3 | 5, expect: (v: number) => { toBeGreaterThan(n: number): void }): void {
  const reports = runSeeds(ciSeeds(voters));
  const t = totals(reports);
  // A suite that injects nothing proves nothing.
  expect(t.crashes).toBeGreaterThan(200);
  expect(t.partitions).toBeGreaterThan(200);
  expect(t.messagesDropped).toBeGreaterThan(100);
  expect(t.elections).toBeGreaterThan(400);
  // Preferred-master seeds do hand over to the preferred node (the rest of the checks still hold).
  expect(t.handovers).toBeGreaterThan(10);
  expect(t.clientOpsOk).toBeGreaterThan(10_000);
  console.log(`${voters} voters: ${reports.length} seeds`, JSON.stringify(t));
}
