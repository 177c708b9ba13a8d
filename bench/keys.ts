// The benchmark key set, shared by every bench script so they measure the same keys:
// 16 bytes; a 4-byte multiplicative hash first spreads keys over the key space, the index
// makes them unique (anchors/embedded.md uses 16-byte keys and 100-byte values).
export function makeKey(i: number): Buffer {
  const k = Buffer.alloc(16);
  k.writeUInt32BE(Math.imul(i, 2654435761) >>> 0, 0);
  k.writeUInt32BE(i, 4);
  k.writeUInt32BE(0x2d2d2d2d, 8);
  k.writeUInt32BE(i ^ 0x5a5a5a5a, 12);
  return k;
}

/**
 * Compares a binary-string key (one char per byte, as the engine holds keys) with a key given as
 * bytes, without converting either: <0, 0, >0 in memcmp-then-length order.
 */
export function cmpStrBuf(k: string, p: Buffer): number {
  const n = k.length < p.length ? k.length : p.length;
  for (let i = 0; i < n; i++) {
    const d = k.charCodeAt(i) - p[i];
    if (d !== 0) return d;
  }
  return k.length - p.length;
}
