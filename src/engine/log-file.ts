//! The data file: positioned reads and appends, fdatasync, truncation and the file lock.
//!
//! Owns: the file descriptor and the single-writer guarantee. Opening takes flock(LOCK_EX|LOCK_NB)
//! through the native addon (released by the kernel if the process dies, so a SIGKILLed writer
//! never leaves a stale lock); without the addon, a `<file>.lock` file holding the owner's pid.
//! flock is per open file description, so a second open in the same process is refused too.
//! Reads are synchronous (like lmdb's gets); appends are synchronous pwrites into the page cache
//! and durability comes from `sync()` (fdatasync on the libuv pool) or, for small commits,
//! `syncNow()` (on this thread, or on the addon's sync thread while this one polls); fdatasync
//! also persists the file size, so one makes an appended slab durable.
import fs from 'node:fs';
import util from 'node:util';
import { Buffer } from 'node:buffer';
import { addon } from '../native/addon.js';
import { ClosedError, CorruptionError, LockedError } from './errors.js';

const EWOULDBLOCK = 11;

/** An Error shaped like the ones fs throws (code, negative errno, syscall, path); `errno` > 0. */
function errnoError(errno: number, syscall: string, path: string): NodeJS.ErrnoException {
  const code = util.getSystemErrorName(-errno);
  return Object.assign(new Error(`${code}: ${syscall} failed, ${path}`), { code, errno: -errno, syscall, path });
}

/** Commits smaller than this land in a zero-filled region written ahead (see append). */
const SMALL_APPEND_BYTES = 64 * 1024;
const ZERO_FILL_BYTES = 1 << 20;
let zeros: Buffer | null = null;

export class FileLog {
  private closed = false;
  get isClosed(): boolean {
    return this.closed;
  }
  /** Physical size: bytes in [end, allocatedEnd) are zeros written ahead of the log. */
  private allocatedEnd: number;
  private constructor(
    readonly path: string,
    readonly fd: number,
    /** Append position: the logical end of the file. */
    public end: number,
    readonly readOnly: boolean,
    private readonly lockFile: string | null,
  ) {
    this.allocatedEnd = end;
  }

  static open(path: string, opts: { readOnly: boolean }): FileLog {
    const fd = fs.openSync(path, opts.readOnly ? 'r' : 'r+');
    let lockFile: string | null = null;
    try {
      if (addon !== null) {
        const rc = addon.flock(fd, !opts.readOnly, true);
        if (rc === -EWOULDBLOCK) throw new LockedError(path, 'by another handle (flock held)');
        if (rc < 0) throw new Error(`flock(${path}) failed: errno ${-rc}`);
      } else if (!opts.readOnly) {
        lockFile = takePidLock(path);
      }
      return new FileLog(path, fd, fs.fstatSync(fd).size, opts.readOnly, lockFile);
    } catch (err) {
      fs.closeSync(fd);
      throw err;
    }
  }

  /** Reads exactly `len` bytes at `pos`; bytes past the end are corruption of whoever pointed there. */
  read(pos: number, len: number): Buffer {
    const buf = Buffer.allocUnsafe(len);
    this.readInto(buf, 0, len, pos);
    return buf;
  }

  readInto(buf: Buffer, off: number, len: number, pos: number): void {
    let done = 0;
    while (done < len) {
      const n = fs.readSync(this.fd, buf, off + done, len - done, pos + done);
      if (n === 0) throw new CorruptionError(pos, `read of ${len} bytes runs past the end of the file (${this.end})`);
      done += n;
    }
  }

  /**
   * Appends `buf[0, len)` at the end. Small appends go into a region of zeros written ahead of
   * the end: an fdatasync after overwriting blocks that are already written and allocated needs
   * no journal commit for a new file size, which halves its cost on ext4 (anchors/embedded.md:
   * overwrite+fdatasync 111 µs against append+fdatasync 218 µs). Recovery sees the zeros as a
   * torn tail (no valid entry) and cuts them; close() truncates them.
   */
  append(buf: Buffer, len: number): number {
    const pos = this.end;
    if (len < SMALL_APPEND_BYTES && pos + len > this.allocatedEnd) {
      zeros ??= Buffer.alloc(ZERO_FILL_BYTES);
      const from = Math.max(this.allocatedEnd, pos);
      this.writeAt(zeros, ZERO_FILL_BYTES, from);
      this.allocatedEnd = from + ZERO_FILL_BYTES;
    }
    this.writeAt(buf, len, pos);
    this.end = pos + len;
    if (this.end > this.allocatedEnd) this.allocatedEnd = this.end;
    return pos;
  }

  /**
   * Writes part of a big append, `buf[0, len)` at `end + offset`, leaving the end where it is:
   * the parts of one slab go in between turns of the event loop, then `advance` moves the end
   * past all of them. A crash in between leaves a torn tail, which recovery cuts.
   */
  writeAhead(buf: Buffer, len: number, offset: number): void {
    this.writeAt(buf, len, this.end + offset);
  }

  /** Moves the end past `len` bytes written with writeAhead. */
  advance(len: number): void {
    this.end += len;
    if (this.end > this.allocatedEnd) this.allocatedEnd = this.end;
  }

  /** Drops zeros written ahead of the end (on close, so files do not keep them). */
  trimAhead(): void {
    if (this.allocatedEnd > this.end) {
      fs.ftruncateSync(this.fd, this.end);
      this.allocatedEnd = this.end;
    }
  }

  writeAt(buf: Buffer, len: number, pos: number): void {
    // After close the fd number may already belong to another file: never write through it.
    if (this.closed) throw new ClosedError('log file');
    let done = 0;
    while (done < len) done += fs.writeSync(this.fd, buf, done, len - done, pos + done);
  }

  sync(): Promise<void> {
    return new Promise((resolve, reject) => fs.fdatasync(this.fd, (err) => (err ? reject(err) : resolve())));
  }

  /**
   * fdatasync, returning once it is done. With `spinUs` > 0 and the addon, it runs on the addon's
   * sync thread while this one polls for it (OpenOptions.syncSpinUs says why); errors are thrown
   * shaped as fs.fdatasyncSync throws them.
   */
  syncNow(spinUs = 0): void {
    if (spinUs > 0 && addon?.fdatasyncPolled !== undefined) {
      const rc = addon.fdatasyncPolled(this.fd, spinUs);
      if (rc < 0) throw errnoError(-rc, 'fdatasync', this.path);
    } else {
      fs.fdatasyncSync(this.fd);
    }
  }

  truncate(len: number): void {
    fs.ftruncateSync(this.fd, len);
    this.end = len;
    this.allocatedEnd = len;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (addon !== null) addon.funlock(this.fd);
    fs.closeSync(this.fd);
    if (this.lockFile !== null) fs.rmSync(this.lockFile, { force: true });
  }
}

function takePidLock(path: string): string {
  const lockFile = `${path}.lock`;
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      fs.writeFileSync(lockFile, String(process.pid), { flag: 'wx' });
      return lockFile;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const text = fs.readFileSync(lockFile, 'utf8');
      const owner = Number(text);
      if (Number.isInteger(owner) && owner > 0 && processAlive(owner)) {
        throw new LockedError(path, `by process ${owner} (${lockFile})`);
      }
      // An empty lock file may be one another process is writing right now; only an old one is stale.
      if (text === '' && Date.now() - fs.statSync(lockFile).mtimeMs < 5000) {
        throw new LockedError(path, `(${lockFile} is being created)`);
      }
      fs.rmSync(lockFile, { force: true }); // stale: its owner is gone
    }
  }
  throw new LockedError(path, `(could not take ${lockFile})`);
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** fsync a directory so a create or rename in it is durable. */
export function syncDirectory(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}
