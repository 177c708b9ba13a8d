//! Value copies: the store copies every value it is given (callers may reuse their buffers) and
//! every value it returns (callers may keep them), as cheaply as Node allows.
import { Buffer } from 'node:buffer';

export function copyOf(src: Buffer): Buffer {
  const out = Buffer.allocUnsafe(src.length);
  out.set(src, 0);
  return out;
}

/**
 * Copies small values into shared 64 KiB chunks: one allocation per chunk instead of one per
 * value (a separate ArrayBuffer per 100-byte value made allocation and GC a quarter of the load
 * profile). A chunk lives as long as any value in it; the cache and the tree hold values anyway.
 */
export class ValueArena {
  private chunk: Buffer = Buffer.allocUnsafeSlow(0);
  private off = 0;
  copy(src: Buffer): Buffer {
    const n = src.length;
    if (this.off + n > this.chunk.length) {
      this.chunk = Buffer.allocUnsafeSlow(Math.max(64 * 1024, n));
      this.off = 0;
    }
    const out = this.chunk.subarray(this.off, this.off + n);
    this.chunk.set(src, this.off); // TypedArray#set: a builtin, cheaper than Buffer#copy for small values
    this.off += n;
    return out;
  }
}
