// The writer's search accelerator (node.ts `pfx`): on every node reachable from the writer's root
// or from any root frozen earlier, it is null or exactly keyPrefixes(keys), through inserts,
// overwrites, deletes, splits, merges, freezes (copies share it) and lookups (which build it).
// A stale one would send a search to the wrong slot. Pure: an in-memory tree, no file.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { BinKey, InlineValue } from '../../src/engine/keys.js';
import { keyPrefixes, T, type Child, type TreeNode } from '../../src/engine/node.js';
import { lookup, TreeWriter } from '../support/js-tree.js';
import { memoryOnly } from '../support/memory-tree.js';


function checkPfx(root: Child | null, seen: Set<TreeNode>): void {
  if (root === null || root.t === T.Disk || seen.has(root)) return;
  seen.add(root);
  if (root.pfx !== null) {
    const want = keyPrefixes(root.keys);
    const ok = want.length === root.pfx.length && want.every((x, i) => x === (root.pfx as Float64Array)[i]);
    if (!ok) expect(Array.from(root.pfx)).toEqual(Array.from(want)); // only to report it
  }
  if (root.t === T.Index) for (const k of root.kids) checkPfx(k, seen);
}

// Keys that share long prefixes (ties on the 6-byte prefix number), short ones and empty.
const keyArb = fc.oneof(
  fc.integer({ min: 0, max: 300 }).map((i) => `key:${String(i).padStart(4, '0')}`),
  fc.integer({ min: 0, max: 300 }).map((i) => `kez${i}`),
  fc.constantFrom('', 'k', 'key:', 'key:0', '\u00ff', '\u0000'),
) as fc.Arbitrary<BinKey>;
const opArb = fc.oneof(
  { weight: 4, arbitrary: fc.record({ op: fc.constant('set' as const), key: keyArb, size: fc.integer({ min: 0, max: 40 }) }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('del' as const), key: keyArb }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('get' as const), key: keyArb }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('freeze' as const) }) },
);

describe('search accelerator invariant', () => {
  it('stays null or exactly the keys’ prefixes on every reachable node', () => {
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 1, maxLength: 500, size: 'max' }), (ops) => {
        const w = new TreeWriter(memoryOnly, { root: null, count: 0 }, 1, 256);
        const frozen: Array<Child | null> = [];
        const model = new Map<string, number>();
        for (const o of ops) {
          if (o.op === 'set') {
            w.set(o.key, 'v'.repeat(o.size) as InlineValue);
            model.set(o.key, o.size);
          } else if (o.op === 'del') {
            expect(w.delete(o.key)).toBe(model.delete(o.key));
          } else if (o.op === 'get') {
            // Builds pfx along the path, on the writer's own nodes too.
            expect((lookup(memoryOnly, w.root, o.key) as InlineValue | undefined)?.length).toBe(model.get(o.key));
          } else {
            frozen.push(w.freeze().root);
          }
          const seen = new Set<TreeNode>();
          checkPfx(w.root, seen);
          for (const r of frozen) checkPfx(r, seen);
        }
        for (const [k, size] of model) expect((lookup(memoryOnly, w.root, k as BinKey) as InlineValue).length).toBe(size);
      }),
      { seed: 1201, numRuns: 60 },
    );
  });
});
