// The changed nodes' region (asm/dirty.ts), through the node allocation that uses it
// (wleafEmpty, wleafFree): a buddy allocator, so the space freed in one size class serves every
// other, blocks never overlap, and once all are freed the region holds its biggest blocks again.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { instance, type Instance } from './support/wasm-nodes.js';

/** asm/wleaf.ts: a node's pre-header. */
const PRE = 32;
/** asm/dirty.ts: the region's free-list heads before the blocks; the smallest and biggest class. */
const HEADS_BYTES = 256;
const MAX_BLOCK = 1 << 18;

/** A node whose block is exactly 2^k bytes (wleafEmpty asks for its bytes + header + PRE). */
function alloc(t: Instance, k: number): number {
  return t.ex.wleafEmpty((1 << k) - 32 - PRE);
}

/** The block a node lies in: [start, end). */
function blockOf(t: Instance, n: number): [number, number] {
  const m = t.mem();
  const color = m.readUInt32LE(n - PRE + 20);
  const start = n - PRE - color;
  return [start, n + m.readUInt32LE(n)]; // capacity: from the node to its block's end
}

/** Nodes of block class k taken until the region refuses one. */
function fill(t: Instance, k: number): number[] {
  const out: number[] = [];
  for (;;) {
    const n = alloc(t, k);
    if (n === 0) return out;
    out.push(n);
  }
}

describe('the changed nodes\' region', () => {
  it('space freed in one size class serves every other, and merges back into the biggest blocks', () => {
    const tops = 16;
    const t = instance(HEADS_BYTES + tops * MAX_BLOCK);
    for (const k of [12, 13, 10, 18, 12]) {
      const nodes = fill(t, k);
      // All of it, each time: with a free list per class and no merging, the 8 KiB nodes after
      // the 4 KiB ones found nothing (every byte carved, none free in their class).
      expect(nodes.length).toBe((tops * MAX_BLOCK) >> k);
      expect(t.ex.dirtyBytesInUse()).toBe(tops * MAX_BLOCK);
      for (const n of nodes) expect(t.ex.wleafFree(n)).toBe(1);
      expect(t.ex.dirtyBytesInUse()).toBe(0);
    }
  });

  it('random takes and frees of mixed sizes: blocks inside the region, never overlapping, counted exactly; all freed, it is whole again', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ take: fc.boolean(), k: fc.integer({ min: 10, max: 18 }), pick: fc.nat() }), { minLength: 1, maxLength: 400 }),
        // A region that is no whole number of the biggest blocks: its tail is carved smaller.
        fc.integer({ min: 0, max: MAX_BLOCK - 1 }),
        (ops, tail) => {
          const tops = 3;
          const bytes = HEADS_BYTES + tops * MAX_BLOCK + tail;
          const t = instance(bytes);
          const live = new Map<number, [number, number]>();
          const seen: Array<[number, number]> = [];
          for (const op of ops) {
            if (op.take || live.size === 0) {
              const n = alloc(t, op.k);
              if (n === 0) continue;
              const [s, e] = blockOf(t, n);
              seen.push([s, e]);
              expect(e - s).toBe(1 << op.k);
              expect(s % 256).toBe(0);
              for (const [s2, e2] of live.values()) expect(e <= s2 || s >= e2).toBe(true);
              live.set(n, [s, e]);
            } else {
              const n = [...live.keys()][op.pick % live.size];
              expect(t.ex.wleafFree(n)).toBe(1);
              expect(t.ex.wleafFree(n)).toBe(0); // a second free is refused
              live.delete(n);
            }
            let sum = 0;
            for (const [s, e] of live.values()) sum += e - s;
            expect(t.ex.dirtyBytesInUse()).toBe(sum);
          }
          for (const n of live.keys()) expect(t.ex.wleafFree(n)).toBe(1);
          expect(t.ex.dirtyBytesInUse()).toBe(0);
          // Whole again: every biggest block, then the tail in its powers of two.
          const biggest = fill(t, 18).map((n) => blockOf(t, n)[0]);
          expect(biggest.length).toBe(tops);
          let small = 0;
          for (let k = 17; k >= 10; k--) small += fill(t, k).length * (1 << k);
          expect(small).toBe(tail - (tail % 1024));
          // And every block taken lay inside the region's blocks.
          const first = Math.min(...biggest);
          for (const [s, e] of seen) expect(s >= first && e <= first + bytes - HEADS_BYTES).toBe(true);
        },
      ),
      { numRuns: 150 },
    );
  });

  it('blocks of mixed classes asked for at once: when the check says there is room, they can be taken in any order', () => {
    let yes = 0;
    let no = 0;
    fc.assert(
      fc.property(
        // A region left in a random state of takes and frees, then blocks of several classes
        // asked for, and taken in a random order.
        fc.array(fc.record({ take: fc.boolean(), k: fc.integer({ min: 8, max: 18 }), pick: fc.nat() }), { maxLength: 200 }),
        fc.array(fc.record({ k: fc.integer({ min: 8, max: 18 }), order: fc.nat() }), { minLength: 1, maxLength: 60 }),
        fc.integer({ min: 0, max: MAX_BLOCK - 1 }),
        (ops, needs, tail) => {
          const t = instance(HEADS_BYTES + 2 * MAX_BLOCK + tail);
          const live: number[] = [];
          for (const op of ops) {
            if (op.take || live.length === 0) {
              const n = alloc(t, op.k);
              if (n !== 0) live.push(n);
            } else expect(t.ex.wleafFree(live.splice(op.pick % live.length, 1)[0])).toBe(1);
          }
          t.ex.dirtyNeedsReset();
          for (const { k } of needs) expect(t.ex.dirtyNeedsAdd(1 << k)).toBe(1);
          if (t.ex.dirtyCanAllocNeeds() !== 1) {
            no++;
            return;
          }
          yes++;
          for (const { k } of [...needs].sort((a, b) => a.order - b.order)) expect(alloc(t, k)).not.toBe(0);
        },
      ),
      { numRuns: 400 },
    );
    // Both answers came up (the sizes are chosen so that they do).
    expect(yes).toBeGreaterThan(40);
    expect(no).toBeGreaterThan(40);
  });

  it('the check counts what fits: a region of free blocks of every class, asked for exactly those', () => {
    const t = instance(HEADS_BYTES + 2 * MAX_BLOCK);
    // Carve everything into blocks of each class, free them all: the whole region is free blocks.
    const ks = [18, 17, 16, 12, 8, 8];
    const nodes = ks.map((k) => alloc(t, k));
    expect(nodes.every((n) => n !== 0)).toBe(true);
    for (const n of nodes) expect(t.ex.wleafFree(n)).toBe(1);
    t.ex.dirtyNeedsReset();
    for (const k of ks) t.ex.dirtyNeedsAdd(1 << k);
    expect(t.ex.dirtyCanAllocNeeds()).toBe(1);
    // One block of the biggest class more than the region holds besides: refused.
    t.ex.dirtyNeedsAdd(1 << 18);
    expect(t.ex.dirtyCanAllocNeeds()).toBe(0);
  });

  it('a trim starts the allocator over only when no block is in use, and blocks come from the start again', () => {
    const tops = 4;
    const t = instance(HEADS_BYTES + tops * MAX_BLOCK);
    const start = t.ex.dirtyCarvedStart() >>> 0;
    const nodes = [alloc(t, 12), alloc(t, 13), alloc(t, 10)];
    const firstBlock = blockOf(t, nodes[0])[0];
    expect(firstBlock).toBe(start);
    // One block in use: nothing changes.
    for (const n of nodes.slice(1)) expect(t.ex.wleafFree(n)).toBe(1);
    expect(t.ex.dirtyTrim()).toBe(0);
    const again = alloc(t, 13); // still served from the freed blocks, as before
    expect(again).toBe(nodes[1]);
    expect(t.ex.wleafFree(again)).toBe(1);
    expect(t.ex.wleafFree(nodes[0])).toBe(1);
    // None in use: everything carved is handed back, and the region is whole again.
    const carved = t.ex.dirtyTrim();
    expect(carved).toBeGreaterThanOrEqual((1 << 12) + (1 << 13) + (1 << 10));
    expect(carved).toBeLessThanOrEqual(tops * MAX_BLOCK);
    expect(t.ex.dirtyTrim()).toBe(0); // (nothing carved since)
    // Over zeroed memory, as the discarded pages read: the lists and the blocks work from scratch.
    t.mem().fill(0, start, start + carved);
    const whole = fill(t, 18);
    expect(whole.length).toBe(tops);
    expect(blockOf(t, whole[0])[0]).toBe(start);
    for (const n of whole) expect(t.ex.wleafFree(n)).toBe(1);
    expect(t.ex.dirtyBytesInUse()).toBe(0);
  });
});
