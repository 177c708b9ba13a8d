// Data-driven consensus scenarios: each scenarios/*.txt script runs on a hand-driven cluster and
// its readable trace is compared with scenarios/*.trace (update with `vitest -u` after reading
// the diff). Each script also states its point as assertions below, so a golden rewritten
// carelessly still cannot hide a broken trap.

import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ScenarioCluster } from './harness.js';

const dir = join(import.meta.dirname, 'scenarios');
const scripts = readdirSync(dir).filter((f) => f.endsWith('.txt')).sort();

describe('consensus scenarios', () => {
  it('has scenarios', () => {
    expect(scripts.length).toBeGreaterThanOrEqual(4);
  });
  for (const file of scripts) {
    it(file, async () => {
      const cluster = new ScenarioCluster();
      const trace = cluster.run(readFileSync(join(dir, file), 'utf8'));
      await expect(trace).toMatchFileSnapshot(join(dir, file.replace(/\.txt$/, '.trace')));
      checkPoint(file, cluster);
    });
  }
});

function checkPoint(file: string, c: ScenarioCluster): void {
  switch (file) {
    case 'ahead-master-loses-role.txt':
      // The old master's leftover `y=2` was never decided: nobody may apply it.
      for (const n of [0, 1, 2]) expect(c.appliedTexts(n).join(' ')).not.toContain('y=2');
      expect(c.appliedTexts(0)).toEqual(c.appliedTexts(1));
      expect(c.appliedTexts(2).join(' ')).toContain('z=3');
      break;
    case 'highest-ballot-wins.txt':
      // The value decided in the higher ballot survives; the older minority leftover does not.
      for (const n of [0, 1, 2]) expect(c.appliedTexts(n).join(' ')).toContain('b=2');
      for (const n of [0, 1, 2]) expect(c.appliedTexts(n).join(' ')).not.toContain('a=1');
      break;
    case 'dueling-candidates.txt':
      expect([0, 1, 2].filter((n) => c.stateOf(n)?.role === 'master')).toHaveLength(1);
      break;
    case 'partitioned-master-lease.txt':
      expect(c.stateOf(0)?.role).not.toBe('master');
      expect(c.stateOf(1)?.role === 'master' || c.stateOf(2)?.role === 'master').toBe(true);
      break;
    case 'restart-after-promise.txt':
      for (const n of [0, 1, 2]) expect(c.appliedTexts(n).join(' ')).not.toContain('late=1');
      break;
    case 'pipeline-and-batching.txt':
      expect(c.appliedTexts(1)).toEqual(['1:[c1#1:a=1]', '2:[c2#1:b=2]', '3:[c3#1:c=3 c4#1:d=4]', '4:[c5#1:e=5]']);
      expect(c.stateOf(0)?.decidedUpTo).toBe(4); // idle renewals used no instance
      break;
    case 'forced-master.txt':
      expect(c.stateOf(2)?.role).toBe('master');
      expect(c.appliedTexts(0)).toEqual(c.appliedTexts(2));
      break;
    case 'learner.txt':
      expect(c.stateOf(3)?.role).toBe('learner');
      expect(c.appliedTexts(3)).toEqual(c.appliedTexts(0));
      break;
    case 'read-only.txt':
      expect(c.appliedTexts(0)).toEqual([]);
      break;
    case 'witness-and-behind-candidate.txt':
      expect(c.stateOf(2)?.role).toBe('follower');
      expect(c.appliedTexts(1)).toEqual(c.appliedTexts(2));
      break;
    case 'quorum-override-two-realities.txt':
      expect(c.appliedTexts(0)[1]).toContain('left=2');
      expect(c.appliedTexts(1)[1]).toContain('right=2');
      break;
    case 'preferred-master-handover.txt':
      // The non-preferred master made way: the preferred node took over and no write was lost.
      expect(c.stateOf(0)?.role).toBe('master');
      expect(c.stateOf(1)?.role).toBe('follower');
      for (const n of [0, 1, 2]) expect(c.appliedTexts(n)).toEqual(['1:[c1#1:a=1]', '2:[c2#2:b=2]']);
      break;
    default:
      throw new Error(`scenario ${file} states no point`);
  }
}
