//! The bytes of the data file's last direct writes, kept in memory.
//!
//! Owns: one contiguous copy of the file's bytes [start, start + length), block-aligned at its
//! start. Why: a write through the O_DIRECT descriptor (FileLog.appendSynced) drops the page
//! cache's copy of the blocks it covers, so reading a value just written (a get after a set, a
//! Location's checksum) would wait for the disk: 116 µs against 17 µs for a 1 KB value on this
//! machine (bench/RESULTS.md round 17). Reads inside this window are served from it instead;
//! older bytes cost one read from the disk per block, after which the page cache has them again
//! (no later write touches a block behind the end).
//!
//! Invariant: the copy equals the file wherever it covers it. The file's bytes there only change
//! by the writes that put them here; FileLog forgets the window on truncation and on any other
//! write that overlaps it.
import { Buffer } from 'node:buffer';

export class RecentBytes {
  private buf: Buffer | null = null;
  private start = 0;
  private length = 0;

  /** `capacityBytes` and `blockBytes`: the most kept, and the alignment of the start. */
  constructor(
    private readonly capacityBytes: number,
    private readonly blockBytes: number,
  ) {}

  /**
   * Records that the file's bytes at [pos, pos + n) are now `src[0, n)` (`pos` a multiple of
   * blockBytes). Extends the window when it starts inside it or right after it, else starts it
   * anew; slides it forward by whole blocks when it would outgrow its capacity.
   */
  put(pos: number, src: Buffer, n: number): void {
    if (n > this.capacityBytes / 2) {
      this.forget();
      return;
    }
    this.buf ??= Buffer.allocUnsafe(this.capacityBytes);
    if (!(this.length > 0 && pos >= this.start && pos <= this.start + this.length)) {
      this.start = pos;
      this.length = 0;
    }
    let off = pos - this.start;
    if (off + n > this.capacityBytes) {
      // Keep the newest half: whole blocks from the front go (off is block-aligned, so is drop).
      const drop = Math.ceil((off + n - this.capacityBytes / 2) / this.blockBytes) * this.blockBytes;
      this.buf.copyWithin(0, drop, off);
      this.start += drop;
      off -= drop;
    }
    src.copy(this.buf, off, 0, n);
    this.length = off + n;
  }

  /** Whether the window holds all of the file's bytes [pos, pos + len). */
  holds(pos: number, len: number): boolean {
    return this.buf !== null && pos >= this.start && pos + len <= this.start + this.length;
  }

  /** Copies the file's bytes [pos, pos + len) into dst at dstOff if the window holds all of them. */
  copyTo(dst: Buffer, dstOff: number, len: number, pos: number): boolean {
    if (this.buf === null || !this.holds(pos, len)) return false;
    this.buf.copy(dst, dstOff, pos - this.start, pos - this.start + len);
    return true;
  }

  /** Whether [pos, pos + len) overlaps the window. */
  overlaps(pos: number, len: number): boolean {
    return this.length > 0 && pos < this.start + this.length && pos + len > this.start;
  }

  forget(): void {
    this.length = 0;
  }
}
