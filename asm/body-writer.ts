// A bounded writer of entry bodies, shared by the slab encoder (slab.ts) and the writer's leaves
// (wleaf.ts), which write the same layouts (src/engine/codec.ts; LEB128 varints as Baardskeerder's
// Flog0, spec part A §A.4).
//
// Owns: the write cursor `wr` within [wr, wrEnd), and `full`, set (and the write skipped) when a
// write would pass wrEnd. Callers set all three before a body and read `wr` and `full` after.
// Must never: write at or past wrEnd.

export let wr: usize = 0;
export let wrEnd: usize = 0;
export let full = false;

export function wU8(v: u32): void {
  if (wr >= wrEnd) {
    full = true;
    return;
  }
  store<u8>(wr++, <u8>v);
}

export function wVarint(v: u64): void {
  if (wr + 10 > wrEnd) {
    full = true;
    return;
  }
  while (v >= 0x80) {
    store<u8>(wr++, <u8>(v & 0x7f) | 0x80);
    v >>= 7;
  }
  store<u8>(wr++, <u8>v);
}

export function wBytes(src: usize, n: usize): void {
  if (n > wrEnd - wr) {
    full = true;
    return;
  }
  memory.copy(wr, src, n);
  wr += n;
}
