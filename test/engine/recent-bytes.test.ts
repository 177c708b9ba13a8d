// RecentBytes (src/engine/recent-bytes.ts): what it holds must equal the file it mirrors. A model
// file (a Buffer) gets block-aligned writes as FileLog.appendSynced makes them, each also put into
// the window; every range the window claims to hold must read back as the model has it, and the
// newest write is always held in full.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { RecentBytes } from '../../src/engine/recent-bytes.js';

const BLOCK = 64;
const CAPACITY = 1024;

describe('RecentBytes', () => {
  it('holds exactly the bytes last put, slides by whole blocks, forgets on request', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.oneof(
            // Up to half the capacity with the block's start included (larger puts forget the
            // window); mostly appends, so that the window slides.
            { arbitrary: fc.record({ k: fc.constant('append' as const), len: fc.integer({ min: 1, max: CAPACITY / 2 - BLOCK }) }), weight: 12 },
            { arbitrary: fc.record({ k: fc.constant('jump' as const), blocks: fc.integer({ min: 1, max: 40 }) }), weight: 1 },
            { arbitrary: fc.record({ k: fc.constant('forget' as const) }), weight: 1 },
          ),
          { maxLength: 60 },
        ),
        // Probes: [bytes back from the end, length]; most land inside the window, some before it.
        fc.array(fc.tuple(fc.integer({ min: 1, max: 1500 }), fc.integer({ min: 0, max: 300 })), { minLength: 20, maxLength: 20 }),
        (ops, probes) => {
          const file = Buffer.alloc(64000);
          const w = new RecentBytes(CAPACITY, BLOCK);
          let end = 0;
          let fill = 1;
          let newest: [number, number] | null = null;
          for (const op of ops) {
            if (op.k === 'forget') {
              w.forget();
              newest = null;
              continue;
            }
            if (op.k === 'jump') {
              // Bytes written around the window (buffered): the next put starts it anew.
              if (end + op.blocks * BLOCK > file.length) break;
              for (let i = end; i < end + op.blocks * BLOCK; i++) file[i] = (fill = (Math.imul(fill, 1103515245) + 12345) >>> 0) >>> 24;
              end += op.blocks * BLOCK;
              continue;
            }
            if (end + op.len > file.length) break;
            const start = end - (end % BLOCK);
            for (let i = end; i < end + op.len; i++) file[i] = (fill = (Math.imul(fill, 1103515245) + 12345) >>> 0) >>> 24;
            w.put(start, file.subarray(start, end + op.len), end + op.len - start);
            newest = [start, end + op.len];
            end += op.len;
          }
          if (newest !== null) {
            const out = Buffer.alloc(newest[1] - newest[0]);
            expect(w.copyTo(out, 0, out.length, newest[0])).toBe(true);
            expect(out.equals(file.subarray(newest[0], newest[1]))).toBe(true);
          }
          for (const [back, wanted] of probes) {
            const pos = Math.max(0, end - back);
            const len = Math.min(wanted, end - pos);
            const out = Buffer.alloc(len);
            if (w.copyTo(out, 0, len, pos)) expect(out.equals(file.subarray(pos, pos + len))).toBe(true);
          }
        },
      ),
      { numRuns: 300, seed: 17 },
    );
  });

  it('tells which ranges overlap it', () => {
    const w = new RecentBytes(CAPACITY, BLOCK);
    expect(w.overlaps(0, 100)).toBe(false);
    w.put(128, Buffer.alloc(100, 1), 100);
    expect([w.overlaps(0, 128), w.overlaps(0, 129), w.overlaps(227, 10), w.overlaps(228, 10)]).toEqual([false, true, true, false]);
    expect(w.holds(128, 100)).toBe(true);
    expect(w.holds(127, 2)).toBe(false);
    w.put(192, Buffer.alloc(500, 2), 500); // starts inside it: extends it
    expect(w.holds(128, 564)).toBe(true);
    w.put(4096, Buffer.alloc(10, 3), 10); // after a gap: starts anew
    expect(w.holds(128, 1)).toBe(false);
    expect(w.holds(4096, 10)).toBe(true);
    w.forget();
    expect(w.holds(4096, 1)).toBe(false);
  });
});
