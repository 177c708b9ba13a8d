// CRC32C (Castagnoli, reflected polynomial 0x82F63B78), slicing-by-16.
//
// Owns: the checksum every on-disk record of Solifuge carries (slabs, entries, superblocks).
// Must never: allocate, or read outside [ptr, ptr + len).
// Interface: raw (ptr, len) over this module's linear memory; the caller copies bytes in
// (or encodes them in place) first. The result is the standard CRC32C (init ~0, final xor ~0),
// so crc32c("123456789") = 0xE3069283.

const POLY: u32 = 0x82f63b78;
// 16 tables of 256 u32, laid out back to back: table k at TABLES + k * 1024 (16 KiB, within L1).
// Why 16: each step's table lookups are independent of each other, and only the running CRC
// chains one step to the next, so 16 bytes a step halve the chain: 2.36 against 1.83 GB/s here
// over 4 MiB and over 3.5 KB entries (bench/RESULTS.md round 24). A 119 MB checkpoint spent
// ~65 ms in this loop at 1.83, with writes held back.
const TABLE_COUNT: usize = 16;
const TABLES: usize = memory.data(<i32>(TABLE_COUNT * 256 * 4), 16);

function initTables(): void {
  for (let n: u32 = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
    store<u32>(TABLES + (<usize>n << 2), c);
  }
  for (let n: u32 = 0; n < 256; n++) {
    let c = load<u32>(TABLES + (<usize>n << 2));
    for (let t: usize = 1; t < TABLE_COUNT; t++) {
      c = load<u32>(TABLES + (<usize>(c & 0xff) << 2)) ^ (c >>> 8);
      store<u32>(TABLES + (t << 10) + (<usize>n << 2), c);
    }
  }
}
initTables();

// @ts-ignore: decorator
@inline function tab(t: usize, i: u32): u32 {
  return load<u32>(TABLES + (t << 10) + (<usize>(i & 0xff) << 2));
}

/** Continues a CRC32C: pass 0 to start; the result can be passed back to extend it. */
export function crc32cUpdate(crc: u32, ptr: usize, len: usize): u32 {
  let c = ~crc;
  let p = ptr;
  let n = len;
  // Align is not required on wasm, so go straight to 16 bytes per step, then 8.
  while (n >= 16) {
    const a = load<u32>(p) ^ c;
    const b = load<u32>(p, 4);
    const d = load<u32>(p, 8);
    const e = load<u32>(p, 12);
    c =
      tab(15, a) ^ tab(14, a >>> 8) ^ tab(13, a >>> 16) ^ tab(12, a >>> 24) ^
      tab(11, b) ^ tab(10, b >>> 8) ^ tab(9, b >>> 16) ^ tab(8, b >>> 24) ^
      tab(7, d) ^ tab(6, d >>> 8) ^ tab(5, d >>> 16) ^ tab(4, d >>> 24) ^
      tab(3, e) ^ tab(2, e >>> 8) ^ tab(1, e >>> 16) ^ tab(0, e >>> 24);
    p += 16;
    n -= 16;
  }
  while (n >= 8) {
    const lo = load<u32>(p) ^ c;
    const hi = load<u32>(p, 4);
    c =
      tab(7, lo) ^ tab(6, lo >>> 8) ^ tab(5, lo >>> 16) ^ tab(4, lo >>> 24) ^
      tab(3, hi) ^ tab(2, hi >>> 8) ^ tab(1, hi >>> 16) ^ tab(0, hi >>> 24);
    p += 8;
    n -= 8;
  }
  while (n > 0) {
    c = tab(0, c ^ load<u8>(p)) ^ (c >>> 8);
    p++;
    n--;
  }
  return ~c;
}

export function crc32c(ptr: usize, len: usize): u32 {
  return crc32cUpdate(0, ptr, len);
}
