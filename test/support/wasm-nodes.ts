// Shared by the tests of the writer's nodes in linear memory (test/wasm-leaf.test.ts,
// test/wasm-tree.test.ts): an instance of the module with a node cache and a dirty region, and
// how a test spells a leaf value.
import { Buffer } from 'node:buffer';
import { expect } from 'vitest';
import { instantiateCore, type CacheExports } from '../../src/wasm/module.js';

/** A leaf value: inline bytes, or a Value entry by position and length. */
export type Val = { ref: false; bytes: Buffer } | { ref: true; pos: number; len: number };

/** asm/cache.ts: the flag on a leaf record's key length for a value by reference. */
export const REF_FLAG = 0x8000_0000;

export interface Instance {
  ex: CacheExports;
  probe: number;
  input: number;
  result: number;
  mem(): Buffer;
}

/** A fresh instance: a node cache of `arenaBytes` (8 MiB) and a dirty region of `dirtyBytes`. */
export function instance(dirtyBytes: number, arenaBytes = 8 << 20): Instance {
  const ex = instantiateCore();
  expect(ex.cacheInit(arenaBytes, 1 << 20, dirtyBytes)).toBeGreaterThan(0);
  return { ex, probe: ex.probeAddress(), input: ex.inputAddress(), result: ex.resultAddress(), mem: () => Buffer.from(ex.memory.buffer) };
}
