// A batch's sets are staged in the store's instance (staged-sets.ts): each value copied once, from
// the caller, where the tree and the slab's Actions entry both read it, by the record's offset.
// A copy must be the caller's bytes as they were at the set, survive the block's growth, and go
// only with its batch (or with the transaction undone that set it).
import { Buffer } from 'node:buffer';
import { afterAll, describe, expect, it } from 'vitest';
import { StagedSets, type StagedValue } from '../../src/engine/staged-sets.js';
import { instance } from '../support/wasm-nodes.js';
import { open } from '../../src/index.js';
import { tempDir } from '../support/tmp.js';
import { crashCopy } from '../support/crash-copy.js';

const tmp = tempDir('staged');
afterAll(() => tmp.cleanup());

describe('StagedSets', () => {
  it('keeps copies by offset through growth, cuts back to a point, and forgets at the end', () => {
    const t = instance(1 << 20);
    const staged = new StagedSets(t.ex, () => t.mem(), () => {});
    const made: Array<[StagedValue, Buffer]> = [];
    // ~3 MiB of records: the block grows (doubling from 256 KiB) with earlier records copied along.
    for (let i = 0; i < 3000; i++) {
      const src = Buffer.alloc(1000 + (i % 24), i & 0xff);
      const off = staged.add(`key${i}`, src);
      src.fill(0xee); // the caller's bytes change after the set: the copy must not
      made.push([off, Buffer.alloc(1000 + (i % 24), i & 0xff)]);
    }
    const valueOf = (off: StagedValue): Buffer => {
      const { at, len } = staged.valueAt(off);
      return Buffer.from(t.mem().subarray(at, at + len));
    };
    for (const [off, want] of made) {
      expect(staged.valueLength(off)).toBe(want.length);
      expect(valueOf(off).equals(want)).toBe(true);
    }
    expect(staged.count).toBe(3000);
    staged.allMade();
    expect(staged.count).toBe(0);
    const point = staged.bytes;
    const later = staged.add('after', Buffer.from('undone'));
    expect(valueOf(later).toString()).toBe('undone');
    staged.truncate(point);
    expect(staged.bytes).toBe(point);
    expect(valueOf(made[2999][0]).equals(made[2999][1])).toBe(true);
    expect(() => staged.valueAt(later)).toThrow(/assertion failed/);
    staged.clear();
    expect(staged.bytes).toBe(0);
    // A key longer than the probe area it is copied into is refused, nothing staged.
    expect(() => staged.add(Buffer.alloc(65_537), Buffer.from('v'))).toThrow(/assertion failed/);
    expect(staged.bytes).toBe(0);
  });
});

describe("a store's transaction values", () => {
  it('survive batch after batch, held back or made at once, through reopen', async () => {
    const file = tmp.file('a.db');
    const want = new Map<string, string>();
    const valueOf = (b: number, i: number) => `v${b}.${i}.`.padEnd(20 + ((b * 7 + i) % 100), String.fromCharCode(97 + ((b + i) % 26)));
    let db = await open(file, { checkpointIdleMs: 0 });
    for (let b = 0; b < 40; b++) {
      // Alternately under and over the held-back limit (SET_LATER_MAX), with values given as
      // reused Buffers (changed after each set) and as strings; every other batch two at once.
      const n = b % 2 === 0 ? 50 : 3000;
      const reused = Buffer.alloc(128);
      const run = (part: number) =>
        db.transaction((tx) => {
          for (let i = part; i < n; i += 2) {
            const k = `k${(b * 131 + i) % 5000}`;
            const v = valueOf(b, i);
            if (i % 3 === 0) tx.set(k, v);
            else {
              const len = reused.write(v);
              tx.set(k, reused.subarray(0, len));
              reused.fill(0x21);
            }
            want.set(k, v);
          }
        });
      await Promise.all(b % 4 === 1 ? [run(0), run(1)] : [run(0).then(() => run(1))]);
      if (b % 10 === 9) {
        for (const [k, v] of want) expect(db.get(k)?.toString(), k).toBe(v);
      }
    }
    // As a crash leaves it: the logged commits replayed, their values read from the log.
    const copy = await crashCopy(db, tmp.file);
    expect(copy.replayedSlabs).toBeGreaterThan(10);
    expect(copy.count()).toBe(want.size);
    for (const [k, v] of want) expect(copy.get(k)?.toString(), k).toBe(v);
    await copy.close();
    await db.close();
    db = await open(file);
    expect(db.count()).toBe(want.size);
    for (const [k, v] of want) expect(db.get(k)?.toString(), k).toBe(v);
    expect(db.check().problems).toEqual([]);
    await db.close();
  });
});
