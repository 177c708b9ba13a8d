import { describe, expect, it } from 'vitest';
import { crc32c, crc32cUpdate } from '../src/wasm/crc32c.js';

// A bytewise-table oracle, independent of the WebAssembly code under test.
const TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();
function oracle(b: Uint8Array): number {
  let c = ~0 >>> 0;
  for (const x of b) c = (TABLE[(c ^ x) & 0xff] ^ (c >>> 8)) >>> 0;
  return ~c >>> 0;
}

describe('crc32c (WebAssembly)', () => {
  it('matches the published check value', () => {
    expect(crc32c(Buffer.from('123456789'))).toBe(0xe3069283);
    expect(crc32c(new Uint8Array(0))).toBe(0);
  });
  it('matches a table oracle on random lengths (every mix of 16-byte, 8-byte and single-byte steps), including sizes that grow memory', () => {
    let seed = 7;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 8) & 0xff;
    for (const len of [1, 3, 7, 8, 9, 15, 16, 17, 24, 31, 33, 100, 4095, 65_537, 3 << 20]) {
      const b = new Uint8Array(len);
      for (let i = 0; i < len; i++) b[i] = rnd();
      expect(crc32c(b)).toBe(oracle(b));
      const cut = len >> 1;
      expect(crc32cUpdate(crc32cUpdate(0, b, 0, cut), b, cut, len)).toBe(oracle(b));
    }
  });
});
