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
