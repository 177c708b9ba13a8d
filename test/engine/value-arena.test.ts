// The inline values transactions set are copied into chunks the store reuses batch after batch
// (value-arena.ts). A copy must be the caller's bytes as they were at the set, and no later batch
// may write over a value before the batch that set it has made it in the tree and logged it.
import { Buffer } from 'node:buffer';
import { afterAll, describe, expect, it } from 'vitest';
import { ValueArena } from '../../src/engine/value-arena.js';
import { open } from '../../src/index.js';
import { tempDir } from '../support/tmp.js';

const tmp = tempDir('arena');
afterAll(() => tmp.cleanup());

describe('ValueArena', () => {
  it('hands out copies, across chunks, and writes over them only after a reset', () => {
    const a = new ValueArena();
    const got: Array<[Buffer, Buffer]> = [];
    // ~2.5 MiB: past the chunks kept (1 MiB), so reset drops some and keeps others.
    for (let i = 0; i < 2500; i++) {
      const src = Buffer.alloc(1000 + (i % 24), i & 0xff);
      const copy = a.copy(src);
      src.fill(0xee); // the caller's bytes change after the set: the copy must not
      got.push([copy, Buffer.alloc(copy.length, i & 0xff)]);
    }
    got.push([a.copyString('héllo', Buffer.byteLength('héllo')), Buffer.from('héllo')]);
    got.push([a.copy(new Uint8Array(0)), Buffer.alloc(0)]);
    for (const [copy, want] of got) expect(copy.equals(want)).toBe(true);
    a.reset();
    const again = a.copy(Buffer.alloc(16, 0x42));
    expect(again.equals(Buffer.alloc(16, 0x42))).toBe(true);
    // The first chunk is reused: the first value handed out before the reset is written over.
    expect(again.buffer).toBe(got[0][0].buffer);
    expect(got[0][0].subarray(0, 16).equals(again)).toBe(true);
  });

  it('refuses a value bigger than a chunk (inline values are at most nodeBytesMax / 4)', () => {
    expect(() => new ValueArena().copy(Buffer.alloc(256 * 1024 + 1))).toThrow(/assertion failed/);
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
    await db.close();
    db = await open(file);
    expect(db.count()).toBe(want.size);
    for (const [k, v] of want) expect(db.get(k)?.toString(), k).toBe(v);
    expect(db.check().problems).toEqual([]);
    await db.close();
  });
});
