import { describe, expect, it } from 'vitest';
import { checkCiSeeds } from './seeds.js';

// One file per cluster size, so vitest runs the two seed suites in parallel.
describe('simulation, 5 voters, fixed seeds', () => {
  it('every seed keeps safety, linearizability and liveness', () => checkCiSeeds(5, expect));
});
