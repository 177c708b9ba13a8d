//! The inline values a batch's transactions set, copied from their callers into memory the store
//! keeps batch after batch.
//!
//! Owns: a few chunks of bytes and how far the running batch has filled them.
//! Why: a copy of each value is needed (the caller may change its bytes once `tx.set` returns, and
//! the value is made in the tree and logged later), and a Buffer of its own per value came from
//! Node's 8 KiB pools: a 1M-key load took ~100 MB of new ArrayBuffers, which V8 counts as
//! external memory and answers with full collections ("external memory pressure"), 100–250 ms
//! each in a process holding a big heap (bench/RESULTS.md round 28). Views into chunks reused by
//! every batch take no new memory outside the heap.
//! Invariant: a view handed out is used only by the batch that asked for it (its actions and its
//! held-back sets: nothing else keeps inline values, which the tree and the log copy); the store
//! calls `reset()` once that batch has ended, and the next batch writes over them.
import { Buffer } from 'node:buffer';
import { AssertionError } from './errors.js';

/** Bytes in one chunk: many values a chunk, and above the largest inline value (nodeBytesMax / 4). */
const CHUNK_BYTES = 256 * 1024;
/** Chunks kept across batches (1 MiB); a bigger batch's further chunks are left to the GC at reset. */
const CHUNKS_KEPT = 4;

export class ValueArena {
  private readonly chunks: Buffer[] = [];
  /** The chunk being filled (`chunks[index]`; none before the first value), and how far. */
  private chunk: Buffer | null = null;
  private index = -1;
  private used = 0;

  /** A copy of `bytes` (at most CHUNK_BYTES), valid until reset(). */
  copy(bytes: Uint8Array): Buffer {
    const n = bytes.length;
    const c = this.room(n);
    const at = this.used;
    c.set(bytes, at);
    this.used = at + n;
    return c.subarray(at, at + n);
  }

  /** The UTF-8 bytes of `s` (`n` of them, at most CHUNK_BYTES), valid until reset(). */
  copyString(s: string, n: number): Buffer {
    const c = this.room(n);
    const at = this.used;
    c.write(s, at, n, 'utf8');
    this.used = at + n;
    return c.subarray(at, at + n);
  }

  /** The batch that used the views has ended: the next one writes over them. */
  reset(): void {
    if (this.chunks.length > CHUNKS_KEPT) this.chunks.length = CHUNKS_KEPT;
    this.chunk = null;
    this.index = -1;
    this.used = 0;
  }

  /** The chunk with room for `n` more bytes at `used`. */
  private room(n: number): Buffer {
    if (n > CHUNK_BYTES) throw new AssertionError(`an inline value of ${n} bytes is past the arena's ${CHUNK_BYTES}-byte chunks`);
    if (this.chunk !== null && this.used + n <= CHUNK_BYTES) return this.chunk;
    this.index++;
    if (this.index === this.chunks.length) this.chunks.push(Buffer.allocUnsafeSlow(CHUNK_BYTES));
    this.chunk = this.chunks[this.index];
    this.used = 0;
    return this.chunk;
  }
}
