// The simulator's checkers must be able to fail: these runs break an assumption on purpose and
// expect a violation. (Mutations of the core itself are recorded in the issue report.)
import { describe, expect, it } from 'vitest';
import { optionsForSeed, runSimulation } from '../../src/sim/cluster.js';

describe('the simulator catches broken assumptions', () => {
  it('clocks drifting far beyond the declared bound make two leases overlap', () => {
    // Declared drift bound 0.1, real rate spread 2 (clocks up to 3× apart): some early seed must show the overlap.
    let found: ReturnType<typeof runSimulation> | null = null;
    for (let seed = 1; seed <= 400 && found === null; seed++) {
      const r = runSimulation(optionsForSeed(seed, { clockDrift: 2 }));
      if (!r.ok && /two nodes hold a master lease/.test(r.failure!.message)) found = r;
    }
    expect(found).not.toBeNull();
    expect(found!.failure!.trace.length).toBeGreaterThan(0);
  });

  it('the same seed replays to the same run, trace and figures included', () => {
    const a = runSimulation(optionsForSeed(90, { clockDrift: 0.9 }));
    const b = runSimulation(optionsForSeed(90, { clockDrift: 0.9 }));
    expect(b).toEqual(a);
    const c = runSimulation(optionsForSeed(7));
    expect(runSimulation(optionsForSeed(7))).toEqual(c);
    expect(c.ok).toBe(true);
  });
});
