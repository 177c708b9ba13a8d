import { describe, expect, it } from 'vitest';
import { isLinearizable, type HistoryOp } from '../../src/sim/checkers/linearizability.js';

const op = (clientId: number, kind: 'set' | 'delete' | 'get', invokeUs: number, returnUs: number, result: number | null | undefined, value = 0): HistoryOp => ({
  clientId,
  key: 0,
  op: kind === 'set' ? { kind, value } : { kind },
  invokeUs,
  returnUs,
  result,
});

describe('linearizability checker', () => {
  it('accepts a sequential history', () => {
    expect(isLinearizable([op(1, 'set', 0, 1, null, 5), op(1, 'get', 2, 3, 5), op(1, 'delete', 4, 5, 5), op(1, 'get', 6, 7, null)])).toBe(true);
  });

  it('rejects a stale read after a completed write', () => {
    expect(isLinearizable([op(1, 'set', 0, 1, null, 5), op(2, 'get', 2, 3, null)])).toBe(false);
  });

  it('accepts either order for overlapping ops', () => {
    expect(isLinearizable([op(1, 'set', 0, 10, null, 5), op(2, 'get', 1, 2, null), op(3, 'get', 3, 4, 5)])).toBe(true);
  });

  it('rejects a read that goes back in time', () => {
    expect(isLinearizable([op(1, 'set', 0, 10, null, 5), op(2, 'get', 1, 2, 5), op(3, 'get', 3, 4, null)])).toBe(false);
  });

  it('lets an unknown-outcome write take effect late or never', () => {
    expect(isLinearizable([op(1, 'set', 0, Infinity, undefined, 7), op(2, 'get', 5, 6, null), op(2, 'get', 7, 8, 7)])).toBe(true);
    expect(isLinearizable([op(1, 'set', 0, Infinity, undefined, 7), op(2, 'get', 5, 6, null)])).toBe(true);
    expect(isLinearizable([op(1, 'set', 0, Infinity, undefined, 7), op(2, 'get', 5, 6, 7), op(2, 'get', 7, 8, null)])).toBe(false);
  });

  it('checks what writes observed (set returns the previous value)', () => {
    expect(isLinearizable([op(1, 'set', 0, 1, null, 1), op(2, 'set', 2, 3, null, 2)])).toBe(false);
    expect(isLinearizable([op(1, 'set', 0, 1, null, 1), op(2, 'set', 2, 3, 1, 2)])).toBe(true);
  });
});
