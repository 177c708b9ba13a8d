//! Keys and values at the API boundary.
//!
//! Inside the engine a key is a *binary string*: one UTF-16 code unit per byte (latin1). JS string
//! comparison then orders keys exactly as unsigned bytes, memcmp first and shorter-prefix first
//! (Arakoon's order), so in-node search is plain `<` on strings, with no call into C++ or WASM and
//! no allocation. API keys are `Uint8Array | string`; strings are UTF-8 encoded first, and an
//! ASCII string is already its own binary string.
import { Buffer } from 'node:buffer';
import { BadArgumentError } from './errors.js';

function describe(x: unknown): string {
  return x === null ? 'null' : Array.isArray(x) ? 'an array' : typeof x;
}

export type KeyInput = Uint8Array | string;
export type ValueInput = Uint8Array | string;

/** A key as a binary string (one char per byte). Branded so raw JS strings can't slip in. */
export type BinKey = string & { readonly __binKey: unique symbol };

const NON_ASCII = /[^\x00-\x7f]/;

/**
 * An inline value's bytes held as a binary string, one char per byte, like BinKey. Why not a
 * Buffer view: every view is an object that survives with its leaf, and the 64 KiB chunks the
 * views pointed into were ArrayBuffers, which V8 counts as external memory: ~100 MB of them per
 * 1M-key load started a full incremental mark of the caller's whole heap ("external memory
 * pressure"), and with 2M of the caller's keys live that made a sorted load 30-40% slower
 * (bench/RESULTS.md, round 14). A string lives on the V8 heap and is one object.
 */
export type InlineValue = string & { readonly __inlineValue: unique symbol };

/** The bytes `b[o, o + n)` as an InlineValue (a copy: `b` may change afterwards). */
export function inlineValueAt(b: Buffer, o: number, n: number): InlineValue {
  return latin1At(b, o, n) as InlineValue;
}

/** A fresh Buffer with an inline value's bytes (returned data: the caller may keep or change it). */
export function inlineValueBytes(v: InlineValue): Buffer {
  return Buffer.from(v, 'latin1');
}

/** A fresh copy of `src` (allocUnsafe + set: pooled for small values, cheaper than Buffer.from(buffer)). */
export function copyOf(src: Buffer): Buffer {
  const out = Buffer.allocUnsafe(src.length);
  out.set(src, 0);
  return out;
}

export function toBinKey(key: KeyInput): BinKey {
  if (typeof key !== 'string' && !(key instanceof Uint8Array)) {
    throw new BadArgumentError(`a key must be a string or a Uint8Array, not ${describe(key)}`);
  }
  if (typeof key === 'string') {
    if (!NON_ASCII.test(key)) return key as BinKey;
    return Buffer.from(key, 'utf8').toString('latin1') as BinKey;
  }
  if (key.length <= 16) return shortBytesToString(key) as BinKey;
  if (Buffer.isBuffer(key)) return key.toString('latin1') as BinKey;
  return Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString('latin1') as BinKey;
}

const fcc = String.fromCharCode;

/**
 * Short keys (the common case) through String.fromCharCode with a fixed argument count: V8 builds
 * the flat one-byte string in a builtin, 2.5× faster than Buffer#toString('latin1'), which crosses
 * into C++ (0.07 µs against 0.17 µs for 16 bytes, measured here). Bytes above 0x7f stay one char each.
 */
function shortBytesToString(b: Uint8Array): string {
  switch (b.length) {
    case 0:
      return '';
    case 1:
      return fcc(b[0]);
    case 2:
      return fcc(b[0], b[1]);
    case 3:
      return fcc(b[0], b[1], b[2]);
    case 4:
      return fcc(b[0], b[1], b[2], b[3]);
    case 5:
      return fcc(b[0], b[1], b[2], b[3], b[4]);
    case 6:
      return fcc(b[0], b[1], b[2], b[3], b[4], b[5]);
    case 7:
      return fcc(b[0], b[1], b[2], b[3], b[4], b[5], b[6]);
    case 8:
      return fcc(b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]);
    case 9:
      return fcc(b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8]);
    case 10:
      return fcc(b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9]);
    case 11:
      return fcc(b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10]);
    case 12:
      return fcc(b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11]);
    case 13:
      return fcc(b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12]);
    case 14:
      return fcc(b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13]);
    case 15:
      return fcc(b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14]);
    case 16:
      return fcc(b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
    default:
      throw new Error('shortBytesToString: longer than 16 bytes');
  }
}

export function binKeyToBuffer(key: BinKey): Buffer {
  const n = key.length;
  if (n > 32) return Buffer.from(key, 'latin1');
  // Short keys (range scans make one per entry) by a JS loop: 0.15 µs against 0.18 µs for
  // Buffer.from(latin1), which crosses into C++ (measured here, 16-byte keys).
  const out = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) out[i] = key.charCodeAt(i);
  return out;
}

/**
 * `b[o, o + n)` as a latin1 string (a binary key, or a suffix of one): up to 16 bytes through
 * String.fromCharCode like shortBytesToString (and no subarray), longer through
 * Buffer#toString. Decoding a node makes one per key.
 */
export function latin1At(b: Buffer, o: number, n: number): string {
  switch (n) {
    case 0:
      return '';
    case 1:
      return fcc(b[o]);
    case 2:
      return fcc(b[o], b[o + 1]);
    case 3:
      return fcc(b[o], b[o + 1], b[o + 2]);
    case 4:
      return fcc(b[o], b[o + 1], b[o + 2], b[o + 3]);
    case 5:
      return fcc(b[o], b[o + 1], b[o + 2], b[o + 3], b[o + 4]);
    case 6:
      return fcc(b[o], b[o + 1], b[o + 2], b[o + 3], b[o + 4], b[o + 5]);
    case 7:
      return fcc(b[o], b[o + 1], b[o + 2], b[o + 3], b[o + 4], b[o + 5], b[o + 6]);
    case 8:
      return fcc(b[o], b[o + 1], b[o + 2], b[o + 3], b[o + 4], b[o + 5], b[o + 6], b[o + 7]);
    case 9:
      return fcc(b[o], b[o + 1], b[o + 2], b[o + 3], b[o + 4], b[o + 5], b[o + 6], b[o + 7], b[o + 8]);
    case 10:
      return fcc(b[o], b[o + 1], b[o + 2], b[o + 3], b[o + 4], b[o + 5], b[o + 6], b[o + 7], b[o + 8], b[o + 9]);
    case 11:
      return fcc(b[o], b[o + 1], b[o + 2], b[o + 3], b[o + 4], b[o + 5], b[o + 6], b[o + 7], b[o + 8], b[o + 9], b[o + 10]);
    case 12:
      return fcc(b[o], b[o + 1], b[o + 2], b[o + 3], b[o + 4], b[o + 5], b[o + 6], b[o + 7], b[o + 8], b[o + 9], b[o + 10], b[o + 11]);
    case 13:
      return fcc(b[o], b[o + 1], b[o + 2], b[o + 3], b[o + 4], b[o + 5], b[o + 6], b[o + 7], b[o + 8], b[o + 9], b[o + 10], b[o + 11], b[o + 12]);
    case 14:
      return fcc(b[o], b[o + 1], b[o + 2], b[o + 3], b[o + 4], b[o + 5], b[o + 6], b[o + 7], b[o + 8], b[o + 9], b[o + 10], b[o + 11], b[o + 12], b[o + 13]);
    case 15:
      return fcc(b[o], b[o + 1], b[o + 2], b[o + 3], b[o + 4], b[o + 5], b[o + 6], b[o + 7], b[o + 8], b[o + 9], b[o + 10], b[o + 11], b[o + 12], b[o + 13], b[o + 14]);
    case 16:
      return fcc(b[o], b[o + 1], b[o + 2], b[o + 3], b[o + 4], b[o + 5], b[o + 6], b[o + 7], b[o + 8], b[o + 9], b[o + 10], b[o + 11], b[o + 12], b[o + 13], b[o + 14], b[o + 15]);
    default:
      return b.toString('latin1', o, o + n);
  }
}

/** Byte length of a key as stored. */
export function binKeyBytes(key: BinKey): number {
  return key.length;
}

export function toValueBuffer(value: ValueInput): Buffer {
  if (typeof value === 'string') return Buffer.from(value, 'utf8');
  if (!(value instanceof Uint8Array)) {
    throw new BadArgumentError(`a value must be a string or a Uint8Array, not ${describe(value)}`);
  }
  if (Buffer.isBuffer(value)) return value;
  return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
}

/** The smallest binary string greater than every key with this prefix, or null if none exists. */
export function prefixSuccessor(prefix: BinKey): BinKey | null {
  let end = prefix.length;
  while (end > 0 && prefix.charCodeAt(end - 1) === 0xff) end--;
  if (end === 0) return null;
  return (prefix.slice(0, end - 1) + String.fromCharCode(prefix.charCodeAt(end - 1) + 1)) as BinKey;
}
