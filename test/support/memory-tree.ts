// Helpers for tests that build trees in memory or compare a store with a model Map.
import type { Db } from '../../src/index.js';
import type { NodeSource } from './js-tree.js';

/** A NodeSource for trees that live wholly in memory: loading an on-disk node is a test bug. */
export const memoryOnly: NodeSource = {
  load: () => {
    throw new Error('an in-memory tree has no on-disk nodes');
  },
};

/** Keys whose stored value differs from the model (Buffer#equals: expect's deep equality over 60k Buffers took 30 s). */
export function mismatches(db: Pick<Db, 'get'>, model: Map<string, Buffer>): string[] {
  const bad: string[] = [];
  for (const [k, v] of model) if (db.get(k)?.equals(v) !== true) bad.push(k);
  return bad;
}
