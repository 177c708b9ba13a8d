// The core's own deterministic jitter generator (xorshift32), carried in State.
//
// Owns: election jitter draws. The core takes no randomness from outside except this seed in
// Config, so a recorded event sequence replays to identical effects (style.md §3.5).

import type { State } from './types.js';

export function seedJitter(seed: number, self: number): number {
  // Mix seed and node id so nodes with the same seed draw different sequences; never zero.
  const x = (Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(self + 1, 0xc2b2ae35)) >>> 0;
  return x === 0 ? 0x6d2b79f5 : x;
}

/** A draw in [0, bound]. */
export function drawJitter(state: State, bound: number): number {
  let x = state.rng;
  x ^= x << 13;
  x >>>= 0;
  x ^= x >>> 17;
  x ^= x << 5;
  x >>>= 0;
  state.rng = x;
  return x % (bound + 1);
}
