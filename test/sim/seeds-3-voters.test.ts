import { describe, expect, it } from 'vitest';
import { ciSeeds, runSeeds, totals } from './seeds.js';

describe('simulation, 3 voters, fixed seeds', () => {
  it('every seed keeps safety, linearizability and liveness', () => {
    const reports = runSeeds(ciSeeds(3));
    const t = totals(reports);
    // The faults really happened (a suite that injects nothing proves nothing).
    expect(t.crashes).toBeGreaterThan(200);
    expect(t.partitions).toBeGreaterThan(200);
    expect(t.messagesDropped).toBeGreaterThan(100);
    expect(t.elections).toBeGreaterThan(400);
    // Preferred-master seeds do hand over to the preferred node (the rest of the checks still hold).
    expect(t.handovers).toBeGreaterThan(10);
    expect(t.clientOpsOk).toBeGreaterThan(10_000);
    console.log(`3 voters: ${reports.length} seeds`, JSON.stringify(t));
  });
});
