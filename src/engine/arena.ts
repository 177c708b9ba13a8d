//! Value copies out: the store copies every value it returns (callers may keep them), as cheaply
//! as Node allows. (Values it is given are copied into binary strings: keys.ts InlineValue.)
import { Buffer } from 'node:buffer';

export function copyOf(src: Buffer): Buffer {
  const out = Buffer.allocUnsafe(src.length);
  out.set(src, 0);
  return out;
}
