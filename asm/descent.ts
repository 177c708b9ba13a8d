// Whole-tree descent over nodes laid out in linear memory: one call per lookup.
//
// Used by bench/descent.bench.ts to measure whether a node cache in WASM memory beats decoded
// JS nodes (the engine issue asks for that measurement before the tree moves here).
//
// Node layout at `node` (little-endian u32s):
//   0 kind (0 leaf, 1 index)   4 count (keys)   8 keyBase (ptr to key bytes)
//   12 .. directory: count × (keyOffset u32, keyLen u32) relative to keyBase
//   then, for an index: (count + 1) × child ptr u32
// Index separator rule as the engine's: child i + 1 holds keys >= separator i.
import { compareKeys } from './node';

// @ts-ignore: decorator
@inline function dirAt(node: usize, i: u32): usize {
  return node + 12 + (<usize>i << 3);
}

/** Returns the matching slot's global id (leafId << 16 | slot) or -1 when absent. */
export function find(root: usize, probe: usize, probeLen: u32): i32 {
  let node = root;
  for (;;) {
    const kind = load<u32>(node);
    const count = load<u32>(node, 4);
    const base = <usize>load<u32>(node, 8);
    // upper bound: first key > probe
    let lo: u32 = 0;
    let hi: u32 = count;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const e = dirAt(node, mid);
      if (compareKeys(base + load<u32>(e), load<u32>(e, 4), probe, probeLen) <= 0) lo = mid + 1;
      else hi = mid;
    }
    if (kind == 1) {
      node = <usize>load<u32>(dirAt(node, count) + (<usize>lo << 2));
      continue;
    }
    if (lo == 0) return -1;
    const e = dirAt(node, lo - 1);
    if (compareKeys(base + load<u32>(e), load<u32>(e, 4), probe, probeLen) != 0) return -1;
    return <i32>(lo - 1);
  }
}
