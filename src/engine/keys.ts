//! Keys and values at the API boundary.
//!
//! Inside the engine a key is a *binary string*: one UTF-16 code unit per byte (latin1). JS string
//! comparison then orders keys exactly as unsigned bytes, memcmp first and shorter-prefix first
//! (Arakoon's order), so in-node search is plain `<` on strings, with no call into C++ or WASM and
//! no allocation. API keys are `Uint8Array | string`; strings are UTF-8 encoded first, and an
//! ASCII string is already its own binary string.
import { Buffer } from 'node:buffer';

export type KeyInput = Uint8Array | string;
export type ValueInput = Uint8Array | string;

/** A key as a binary string (one char per byte). Branded so raw JS strings can't slip in. */
export type BinKey = string & { readonly __binKey: unique symbol };

const NON_ASCII = /[^\x00-\x7f]/;

export function toBinKey(key: KeyInput): BinKey {
  if (typeof key === 'string') {
    if (!NON_ASCII.test(key)) return key as BinKey;
    return Buffer.from(key, 'utf8').toString('latin1') as BinKey;
  }
  if (Buffer.isBuffer(key)) return key.toString('latin1') as BinKey;
  return Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString('latin1') as BinKey;
}

export function binKeyToBuffer(key: BinKey): Buffer {
  return Buffer.from(key, 'latin1');
}

/** Byte length of a key as stored. */
export function binKeyBytes(key: BinKey): number {
  return key.length;
}

export function toValueBuffer(value: ValueInput): Buffer {
  if (typeof value === 'string') return Buffer.from(value, 'utf8');
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
