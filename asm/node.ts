// In-node search over an encoded key directory held in linear memory.
//
// Owns: the comparison rule for keys (unsigned bytes, memcmp then length, as Arakoon) and a
// binary search over a node's key directory. Used by the engine for the measurement the design
// asks for (descend over bytes in WASM memory versus decoded JS objects); see bench/descent.bench.ts.
//
// Directory layout at `dir` (little-endian): count u32, then count × (keyOffset u32, keyLen u32),
// offsets relative to `base`. Keys are sorted ascending.

/** memcmp-then-length: <0, 0, >0. */
export function compareKeys(a: usize, aLen: u32, b: usize, bLen: u32): i32 {
  const n = aLen < bLen ? aLen : bLen;
  let i: u32 = 0;
  // Eight bytes at a time while equal; byte order matters, so fall back to bytes on difference.
  while (i + 8 <= n && load<u64>(a + i) == load<u64>(b + i)) i += 8;
  while (i < n) {
    const x = load<u8>(a + i);
    const y = load<u8>(b + i);
    if (x != y) return <i32>x - <i32>y;
    i++;
  }
  return <i32>aLen - <i32>bLen;
}

/** The length of the longest common prefix of two keys. */
export function commonPrefix(a: usize, aLen: u32, b: usize, bLen: u32): u32 {
  const n = aLen < bLen ? aLen : bLen;
  let i: u32 = 0;
  while (i + 8 <= n && load<u64>(a + i) == load<u64>(b + i)) i += 8;
  while (i < n && load<u8>(a + i) == load<u8>(b + i)) i++;
  return i;
}

/**
 * Index of the first key > probe (upper bound) in the directory: the child slot an index node
 * descends into, or one past the match in a leaf (the caller checks slot - 1 for equality).
 */
export function upperBound(base: usize, dir: usize, probe: usize, probeLen: u32): u32 {
  const count = load<u32>(dir);
  let lo: u32 = 0;
  let hi: u32 = count;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const e = dir + 4 + (<usize>mid << 3);
    const c = compareKeys(base + load<u32>(e), load<u32>(e, 4), probe, probeLen);
    if (c <= 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
