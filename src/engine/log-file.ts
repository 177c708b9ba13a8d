//! The data file: positioned reads and appends, fdatasync, truncation and the file lock.
//!
//! Owns: the file descriptor and the single-writer guarantee. Opening takes flock(LOCK_EX|LOCK_NB)
//! through the native addon (released by the kernel if the process dies, so a SIGKILLed writer
//! never leaves a stale lock); without the addon, a `<file>.lock` file holding the owner's pid.
//! flock is per open file description, so a second open in the same process is refused too.
//! Reads are synchronous (like lmdb's gets); appends are synchronous pwrites into the page cache
//! and durability comes from `sync()` (fdatasync on the libuv pool) or, for small commits,
//! `syncNow()` (on this thread, or on the addon's sync thread while this one polls); fdatasync
//! also persists the file size, so one makes an appended slab durable. A small durable commit
//! may instead be one write through a second descriptor opened O_DIRECT | O_DSYNC
//! (appendSynced), once everything buffered before it is synced; the last bytes so written are
//! kept in memory (RecentBytes), since such writes leave no copy in the page cache.
import fs from 'node:fs';
import os from 'node:os';
import util from 'node:util';
import { Buffer } from 'node:buffer';
import { addon } from '../native/addon.js';
import { ClosedError, CorruptionError, LockedError, assert } from './errors.js';
import { RecentBytes } from './recent-bytes.js';

const { EWOULDBLOCK, EINVAL, ENOSYS } = os.constants.errno;

/** O_DIRECT writes cover whole blocks of this size, at offsets that are multiples of it. */
const DIRECT_ALIGN = 4096;
/** The longest direct write (native/polled-sync.cc takes up to 1 MiB; small commits are less). */
const DIRECT_WRITE_BYTES_MAX = 64 * 1024;
/** The recent window's size: reads of the last ~1 MiB written directly come from memory. */
const RECENT_BYTES_MAX = 1 << 20;
const roundUp = (n: number): number => Math.ceil(n / DIRECT_ALIGN) * DIRECT_ALIGN;

type Started =
  | { k: 'none' }
  | { k: 'fdatasync'; writes: number; end: number }
  | { k: 'direct'; start: number; head: number; len: number };

/** An Error shaped like the ones fs throws (code, negative errno, syscall, path); `errno` > 0. */
function errnoError(errno: number, syscall: string, path: string): NodeJS.ErrnoException {
  // libuv names only the errnos it uses itself (not ENOLCK, say); the OS's table has the rest.
  const known = util.getSystemErrorMap().get(-errno)?.[0];
  const code = known ?? Object.entries(os.constants.errno).find(([, n]) => n === errno)?.[0] ?? `errno ${errno}`;
  return Object.assign(new Error(`${code}: ${syscall} failed, ${path}`), { code, errno: -errno, syscall, path });
}

/** Commits smaller than this land in a zero-filled region written ahead (see append). */
const SMALL_APPEND_BYTES = 64 * 1024;
const ZERO_FILL_BYTES = 1 << 20;
/**
 * prepareAhead, for appends of SMALL_APPEND_BYTES up to PREPARE_APPEND_BYTES_MAX (a sorted load's
 * ~122 KB commits; bigger ones, checkpoints of MiBs, would pay more for their zeros than they
 * save): once fewer than PREPARE_LOW_APPENDS appends of the last one's size fit in the zeros
 * ahead, it writes zeros up to PREPARE_HIGH_APPENDS of them, and never to more than
 * ZERO_FILL_BYTES ahead of the end (append's own fill keeps to that too).
 */
const PREPARE_APPEND_BYTES_MAX = 512 * 1024;
const PREPARE_LOW_APPENDS = 2;
const PREPARE_HIGH_APPENDS = 6;
let zeros: Buffer | null = null;
const noop = (): void => {};

export class FileLog {
  private closed = false;
  get isClosed(): boolean {
    return this.closed;
  }
  /** Physical size: bytes in [end, allocatedEnd) are zeros written ahead of the log. */
  private allocatedEnd: number;

  /** Bytes of zeros written ahead of the log's end (dropped on close). */
  get zerosAheadBytes(): number {
    return Math.max(0, this.allocatedEnd - this.end);
  }
  /**
   * The CPU the addon's sync thread serves this file's polled syncs on, with its keeper
   * (native/polled-sync.cc, "Placement"; OpenOptions.syncCpu); -1: anywhere.
   */
  syncCpu = -1;
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
        if (rc < 0) throw errnoError(-rc, 'flock', path);
      }
      // A writer takes the pid file with or without the addon's flock: a process without the
      // addon (SOLIFUGE_NATIVE=0, a failed build) can only see this one, and the two schemes
      // apart let one writer of each kind in, the later one's acknowledged writes then lost.
      if (!opts.readOnly) lockFile = takePidLock(path, fd);
      else refuseIfPidLocked(path, fd); // a writer without the addon holds no flock to see
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

  /** The bytes [pos, pos + len) if the recent window holds them (see RecentBytes), else undefined. */
  readRecent(pos: number, len: number): Buffer | undefined {
    if (!this.recent.holds(pos, len)) return undefined;
    const buf = Buffer.allocUnsafe(len);
    this.recent.copyTo(buf, 0, len, pos);
    return buf;
  }

  readInto(buf: Buffer, off: number, len: number, pos: number): void {
    if (this.recent.copyTo(buf, off, len, pos)) return;
    let done = 0;
    while (done < len) {
      const n = fs.readSync(this.fd, buf, off + done, len - done, pos + done);
      if (n === 0) throw new CorruptionError(pos, `read of ${len} bytes runs past the end of the file (${this.end})`);
      done += n;
    }
  }

  /**
   * Appends `buf[0, len)` at the end. Small appends go into a region of zeros written ahead of
   * the end: an fdatasync after overwriting blocks that are already written and allocated need
   * not make new blocks and a new size durable (a journal commit on a journalling ext4, the
   * inode's block on one without a journal), which halves its cost on ext4 (anchors/embedded.md:
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
    this.writeFromEnd(buf, len);
    this.end = pos + len;
    if (this.end > this.allocatedEnd) this.allocatedEnd = this.end;
    return pos;
  }

  /**
   * Writes `buf[0, len)` at the end. After a direct write, the page cache holds no copy of the
   * block the end lies in, and a buffered write into part of it would first read it from the
   * disk: that block is written whole instead (its start as it is, from the recent window; zeros
   * after the new bytes, where the file has zeros or nothing).
   */
  private writeFromEnd(buf: Buffer, len: number): void {
    const pos = this.end;
    const head = pos % DIRECT_ALIGN;
    const start = pos - head;
    const uncached = this.tailUncached;
    this.tailUncached = false;
    if (!uncached || head === 0 || len === 0) {
      this.writeAt(buf, len, pos);
      return;
    }
    const page = Buffer.alloc(DIRECT_ALIGN);
    const first = Math.min(len, DIRECT_ALIGN - head);
    if (!this.recent.copyTo(page, 0, head, start)) {
      this.writeAt(buf, len, pos);
      return;
    }
    buf.copy(page, head, 0, first);
    this.writeRaw(page, DIRECT_ALIGN, start);
    if (start + DIRECT_ALIGN > this.allocatedEnd) this.allocatedEnd = start + DIRECT_ALIGN;
    if (len > first) this.writeAt(buf.subarray(first), len - first, pos + first);
  }

  /**
   * Writes part of a big append, `buf[0, len)` at `end + offset`, leaving the end where it is:
   * the parts of one slab go in between turns of the event loop, then `advance` moves the end
   * past all of them. A crash in between leaves a torn tail, which recovery cuts.
   */
  writeAhead(buf: Buffer, len: number, offset: number): void {
    if (offset === 0) this.writeFromEnd(buf, len);
    else this.writeAt(buf, len, this.end + offset);
  }

  /** Moves the end past `len` bytes written with writeAhead. */
  advance(len: number): void {
    this.end += len;
    if (this.end > this.allocatedEnd) this.allocatedEnd = this.end;
  }

  /** The descriptor prepareAhead syncs its zeros through: undefined until first wanted, null if unusable. */
  private prepareFd: number | null | undefined = undefined;
  /** prepareAhead's fdatasync while it runs on libuv's pool. */
  private preparing: Promise<void> | null = null;
  /** Set when writing zeros ahead failed (out of space, say): no more tries. */
  private prepareOff = false;

  /**
   * Called after a big append (`len` bytes) was made durable: writes zeros ahead of the end for
   * the next ones and starts their fdatasync in the background. Those appends then overwrite
   * blocks already allocated, written and inside the file's size, and their fdatasync writes no
   * metadata (a 122 KB pwrite + fdatasync p50 ~213 µs against ~375 µs appended;
   * bench/RESULTS.md round 21). Returns whether it wrote zeros; never throws (the commit before
   * it is durable, and must not fail for this).
   *
   * The zeros are written here, on the caller's thread, so no append can race them; only their
   * sync runs on the pool, and it only has to be done before the next append's sync to save that
   * one the metadata write (the JS work of a 1000-key batch, ~1 ms, is time enough). They count
   * as buffered writes: a direct write (appendSynced) waits for an fdatasync of the log's own to
   * cover them. The background fdatasync goes through a descriptor of its own, and its outcome
   * is not looked at: since Linux 4.13 (errseq_t) a writeback error is reported once to *each*
   * open file description, so an error it meets, on the zeros or on a later commit's pages it
   * wrote back, is still reported to the next fdatasync of the log's descriptor. That commit then
   * fails and the store stops writing, as after any failed sync; no error is swallowed here.
   * (Node 20 needs Linux 4.18 or later.)
   */
  prepareAhead(len: number): boolean {
    if (this.closed || this.readOnly || this.prepareOff || this.preparing !== null) return false;
    if (len < SMALL_APPEND_BYTES || len > PREPARE_APPEND_BYTES_MAX) return false;
    if (this.allocatedEnd - this.end >= PREPARE_LOW_APPENDS * len) return false;
    const from = Math.max(this.allocatedEnd, this.end);
    const to = Math.floor((this.end + Math.min(ZERO_FILL_BYTES, PREPARE_HIGH_APPENDS * len)) / DIRECT_ALIGN) * DIRECT_ALIGN;
    const bytes = to - from;
    if (bytes <= 0) return false;
    const fd = this.openPrepare();
    if (fd === null) return false;
    zeros ??= Buffer.alloc(ZERO_FILL_BYTES);
    try {
      this.writeAt(zeros, bytes, from); // a buffered write like any other (see above)
    } catch {
      // Out of space, say: the appends go on as without zeros ahead, and the file keeps none of
      // these if it can (bytes past the end are a torn tail to recovery either way). Should the
      // truncate fail too, trimAhead drops whatever was written.
      this.prepareOff = true;
      this.allocatedEnd = from + bytes;
      try {
        fs.ftruncateSync(this.fd, from);
        this.allocatedEnd = from;
      } catch {
        // Left for close() (trimAhead) or recovery to cut.
      }
      return false;
    }
    this.allocatedEnd = from + bytes;
    this.preparing = new Promise((resolve) =>
      fs.fdatasync(fd, () => {
        this.preparing = null;
        if (this.closed) fs.close(fd, noop);
        resolve();
      }),
    );
    return true;
  }

  /** zeroAhead's writes while they run on libuv's pool. */
  private zeroing: Promise<number> | null = null;

  /**
   * Starts writing zeros over the next `bytes` past the end (from the first whole block on), on
   * libuv's pool, for a big append about to be built (a checkpoint's slab, while it is encoded).
   * Appending into pages new to the page cache ran at 400-770 MB/s here, overwriting pages
   * already written at ~10 GB/s (bench/RESULTS.md round 30): the append, made once these are
   * done, is then a copy. The caller holds the log: nothing may be appended, and the log may not
   * close, before the promise settles; it never rejects (a failed write leaves the rest to the
   * append, which reports its own error). It resolves to the bytes of zeros written. Recovery
   * reads the zeros as a torn tail, as prepareAhead's.
   */
  zeroAhead(bytes: number): Promise<number> {
    if (this.closed || this.readOnly || this.prepareOff || this.zeroing !== null) return Promise.resolve(0);
    const from = Math.ceil(Math.max(this.allocatedEnd, this.end) / DIRECT_ALIGN) * DIRECT_ALIGN;
    const to = Math.ceil((this.end + bytes) / DIRECT_ALIGN) * DIRECT_ALIGN;
    if (to <= from) return Promise.resolve(0);
    const z = (zeros ??= Buffer.alloc(ZERO_FILL_BYTES));
    const p = new Promise<number>((resolve) => {
      const step = (at: number): void => {
        // (Closed: the descriptor's number may belong to another file by now. Db.close waits for
        // these writes, so this is a guard, not a path.)
        if (at >= to || this.closed) return resolve(at - from);
        fs.write(this.fd, z, 0, Math.min(ZERO_FILL_BYTES, to - at), at, (err, n) => {
          if (err !== null || n <= 0) {
            this.prepareOff = true; // out of space, say: no more zeros ahead
            return resolve(at - from);
          }
          // [allocatedEnd, at) is a hole if `from` skipped part of a block: zeros too.
          this.allocatedEnd = Math.max(this.allocatedEnd, at + n);
          step(at + n);
        });
      };
      step(from);
    }).finally(() => {
      this.bufferedWrites++;
      this.zeroing = null;
    });
    this.zeroing = p;
    return p;
  }

  /** Waits for prepareAhead's sync and zeroAhead's writes: the descriptors must outlive them (close() does). */
  async settlePrepare(): Promise<void> {
    while (this.preparing !== null || this.zeroing !== null) await (this.preparing ?? this.zeroing);
  }

  /** prepareAhead's descriptor, opened on first use (see reopen); null where it cannot be. */
  private openPrepare(): number | null {
    if (this.prepareFd !== undefined) return this.prepareFd;
    const fd = this.reopen(fs.constants.O_RDONLY);
    if (fd !== 'later') this.prepareFd = fd;
    return fd === 'later' ? null : fd;
  }

  /** Drops zeros written ahead of the end (on close, so files do not keep them). */
  trimAhead(): void {
    if (this.allocatedEnd > this.end) {
      this.bufferedWrites++;
      fs.ftruncateSync(this.fd, this.end);
      this.allocatedEnd = this.end;
    }
  }

  writeAt(buf: Buffer, len: number, pos: number): void {
    if (this.recent.overlaps(pos, len)) this.recent.forget();
    this.writeRaw(buf, len, pos);
  }

  /** writeAt without a look at the recent window: for bytes written as it holds them. */
  private writeRaw(buf: Buffer, len: number, pos: number): void {
    // After close the fd number may already belong to another file: never write through it.
    if (this.closed) throw new ClosedError('log file');
    this.bufferedWrites++;
    let done = 0;
    while (done < len) done += fs.writeSync(this.fd, buf, done, len - done, pos + done);
  }

  sync(): Promise<void> {
    const writes = this.bufferedWrites;
    const end = this.end;
    return new Promise((resolve, reject) =>
      fs.fdatasync(this.fd, (err) => {
        if (err) return reject(err);
        this.syncedWrites = Math.max(this.syncedWrites, writes);
        this.durableEnd = Math.max(this.durableEnd, end);
        resolve();
      }),
    );
  }

  /**
   * fdatasync, returning once it is done. With `spinUs` > 0 and the addon, it runs on the addon's
   * sync thread while this one polls for it (OpenOptions.syncSpinUs says why); errors are thrown
   * shaped as fs.fdatasyncSync throws them.
   */
  syncNow(spinUs = 0): void {
    const end = this.end;
    if (spinUs > 0 && addon?.fdatasyncPolled !== undefined) {
      const rc = addon.fdatasyncPolled(this.fd, spinUs, this.syncCpu);
      if (rc < 0) throw errnoError(-rc, 'fdatasync', this.path);
    } else {
      fs.fdatasyncSync(this.fd);
    }
    this.durableEnd = Math.max(this.durableEnd, end);
  }

  /**
   * How far the log is known durable: every byte before it was covered by an fdatasync (or was a
   * direct write after one) that has returned. A slab appended at or before it follows only
   * durable bytes, which its commit records (CommitRecord.afterDurable) for recovery's sake. It
   * starts at 0: what a process that died left in the page cache may not be on the disk yet
   * (Db.open syncs once before its first commit).
   */
  private durableEnd = 0;

  /** Whether every byte before the end is durable: what a slab appended now records (CommitRecord.afterDurable). */
  get endDurable(): boolean {
    return this.durableEnd >= this.end;
  }

  /**
   * Buffered writes to the file so far (appends, zeros, superblocks, truncations), and how many
   * of them the last completed fdatasync covered: a direct write makes only its own bytes
   * durable, so it may only follow a file with nothing buffered left unsynced (see appendSynced).
   * It starts at one: what a process that died left in the page cache (a commit recovery keeps,
   * zeros) may not be on the disk yet.
   */
  private bufferedWrites = 1;
  private syncedWrites = 0;

  /** Whether a buffered write may not be on the disk yet (no fdatasync has covered it). */
  get hasUnsyncedWrites(): boolean {
    return this.bufferedWrites !== this.syncedWrites;
  }
  /** The O_DIRECT | O_DSYNC descriptor: undefined until first wanted, null if unusable. */
  private directFd: number | null | undefined = undefined;
  /** Whether a direct write through directFd has succeeded (an EINVAL before means unsupported). */
  private directProven = false;
  /** A direct write's bytes: the start of its first block, then the appended ones. */
  private directBytes = Buffer.alloc(0);
  /** The last direct writes' bytes (their blocks are not in the page cache: RecentBytes). */
  private readonly recent = new RecentBytes(RECENT_BYTES_MAX, DIRECT_ALIGN);
  /** Whether the block holding the end was last written directly (see writeFromEnd). */
  private tailUncached = false;
  /** What syncStart or appendSynced began and syncFinish has not yet waited for. */
  private started: Started = { k: 'none' };

  /**
   * syncNow in two steps: the fdatasync starts here (on the addon's sync thread, or if it cannot,
   * right here, as syncNow would) and syncFinish waits for it, so the caller's work in between
   * overlaps it. Every syncStart must be followed by a syncFinish, also when that work throws.
   */
  syncStart(spinUs = 0): void {
    assert(this.started.k === 'none', 'syncStart before the last syncFinish');
    const writes = this.bufferedWrites;
    if (spinUs > 0 && addon?.fdatasyncStart !== undefined && addon.fdatasyncFinish !== undefined) {
      addon.fdatasyncStart(this.fd, spinUs, this.syncCpu);
      this.started = { k: 'fdatasync', writes, end: this.end };
    } else {
      this.syncNow(spinUs);
      this.syncedWrites = writes;
    }
  }

  /**
   * append followed by syncStart, for a small commit: the same effect, but when it can, one
   * write through a second descriptor opened O_DIRECT | O_DSYNC, durable once done, instead of a
   * buffered write and an fdatasync (bench/RESULTS.md round 17: p50 135–138 µs against 156–160
   * on this machine's disk). The write covers whole 4 KiB blocks: the start of the end's block
   * as it is, the slab, zeros up to the block's end, all inside the zeros written ahead. Only
   * when no buffered write is left unsynced: the direct one makes durable its own blocks only,
   * and a commit must never be durable while a slab before it is not.
   */
  appendSynced(buf: Buffer, len: number, spinUs: number, direct = true): void {
    assert(this.started.k === 'none', 'appendSynced before the last syncFinish');
    const pos = this.end;
    const directWrite = addon?.directWriteStart;
    const eligible = direct && spinUs > 0 && len <= DIRECT_WRITE_BYTES_MAX && this.bufferedWrites === this.syncedWrites &&
      roundUp(pos + len) <= this.allocatedEnd;
    if (!eligible || directWrite === undefined || this.openDirect() === null) {
      this.append(buf, len);
      this.syncStart(spinUs);
      return;
    }
    const head = pos % DIRECT_ALIGN;
    const start = pos - head;
    if (this.directBytes.length < head + len) this.directBytes = Buffer.allocUnsafe(roundUp(head + len));
    const bytes = this.directBytes;
    this.readInto(bytes, 0, head, start); // from the recent window after a direct write
    buf.copy(bytes, head, 0, len);
    // Everything that can throw comes before the start: once started, syncFinish must follow.
    this.recent.put(start, bytes, head + len);
    directWrite(this.directFd as number, bytes.subarray(0, head + len), start, spinUs, this.syncCpu);
    this.started = { k: 'direct', start, head, len };
    this.end = pos + len;
    this.tailUncached = true;
  }

  /**
   * Waits for what syncStart or appendSynced began; throws as syncNow does. Returns whether it
   * was a direct write (the bytes durable without an fdatasync).
   */
  syncFinish(): boolean {
    const started = this.started;
    if (started.k === 'none') return false; // synced on the spot
    this.started = { k: 'none' };
    const finish = addon?.fdatasyncFinish;
    assert(finish !== undefined, 'a sync started without the addon');
    const rc = finish();
    if (started.k === 'fdatasync') {
      if (rc < 0) throw errnoError(-rc, 'fdatasync', this.path);
      this.syncedWrites = started.writes;
      this.durableEnd = Math.max(this.durableEnd, started.end);
      return false;
    }
    if (rc === 0) {
      // (Direct only after everything buffered before it was synced: see appendSynced.)
      this.directProven = true;
      this.durableEnd = Math.max(this.durableEnd, started.start + started.head + started.len);
      return true;
    }
    if (rc === -EINVAL && !this.directProven) {
      // The file system does not take direct I/O, and nothing was written: buffered from now on.
      fs.closeSync(this.directFd as number);
      this.directFd = null;
      this.tailUncached = false;
      this.writeRaw(this.directBytes.subarray(started.head), started.len, started.start + started.head);
      this.syncNow();
      this.syncedWrites = this.bufferedWrites;
      return false;
    }
    // The store fails on this (read-only until reopened); the log no longer claims the bytes.
    this.recent.forget();
    this.end = started.start + started.head;
    throw errnoError(-rc, 'write', this.path);
  }

  /**
   * Erases what was appended from `start` on (a commit that failed before its publish; its sync,
   * if any, has finished): zeros over those bytes, an fdatasync, and the end back at `start`.
   * Recovery reads zeros as a torn tail, so no reopen replays the erased record; the zeros stay
   * as zeros ahead of the end (appends overwrite them). Throws if the write or the sync fails.
   */
  eraseFrom(start: number): void {
    assert(start >= 0 && start <= this.end, 'erasing outside the log');
    const len = this.end - start;
    zeros ??= Buffer.alloc(ZERO_FILL_BYTES);
    // writeAt drops the recent window where it overlaps (a direct write's bytes); the block the
    // new end lies in is then read back into the page cache by the partial write.
    for (let done = 0; done < len; done += ZERO_FILL_BYTES) this.writeAt(zeros, Math.min(ZERO_FILL_BYTES, len - done), start + done);
    this.tailUncached = false;
    this.syncNow();
    this.syncedWrites = this.bufferedWrites;
    this.end = start;
  }

  /** The O_DIRECT | O_DSYNC descriptor, opened on first use (see reopen); null where it cannot be. */
  private openDirect(): number | null {
    if (this.directFd !== undefined) return this.directFd;
    const fd = this.reopen(fs.constants.O_WRONLY | fs.constants.O_DIRECT | fs.constants.O_DSYNC);
    if (fd !== 'later') this.directFd = fd;
    return fd === 'later' ? null : fd;
  }

  /**
   * A second descriptor of this log's file, opened with `flags` through /proc/self/fd, never by
   * path: the path may name another file by now (a chdir after a relative open, a rename), and
   * what goes through it must reach the file this log has locked. The inode is checked all the
   * same. null: never here (no /proc, another file, flags the file system refuses); 'later': out
   * of descriptors for now. Never throws.
   */
  private reopen(flags: number): number | null | 'later' {
    let fd: number;
    try {
      fd = fs.openSync(`/proc/self/fd/${this.fd}`, flags);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      return code === 'EMFILE' || code === 'ENFILE' ? 'later' : null;
    }
    try {
      const a = fs.fstatSync(fd);
      const b = fs.fstatSync(this.fd);
      if (a.dev === b.dev && a.ino === b.ino) return fd;
    } catch {
      // Treated as another file.
    }
    fs.closeSync(fd);
    return null;
  }

  /**
   * fallocate(PUNCH_HOLE) over [offset, offset + len) through the addon: 0 or -errno (-ENOSYS
   * without it). The recent window forgets what it held there: those bytes are zeros now.
   */
  punchHole(offset: number, len: number): number {
    if (addon === null) return -ENOSYS;
    if (this.recent.overlaps(offset, len)) this.recent.forget();
    return addon.punchHole(this.fd, offset, len);
  }

  truncate(len: number): void {
    this.bufferedWrites++;
    this.recent.forget();
    this.tailUncached = false;
    fs.ftruncateSync(this.fd, len);
    this.end = len;
    this.allocatedEnd = len;
  }

  close(): void {
    if (this.closed) return;
    if (this.started.k !== 'none') {
      try {
        this.syncFinish(); // the sync thread must be done with the fds before they close
      } catch {
        // A commit that was not acknowledged; closing goes on.
      }
    }
    this.closed = true;
    if (typeof this.directFd === 'number') fs.closeSync(this.directFd);
    // A prepareAhead sync still running (Db.close waits for it; a caller that did not) closes its
    // descriptor when done: closed now, it might sync whichever file got the number next.
    if (typeof this.prepareFd === 'number' && this.preparing === null) fs.closeSync(this.prepareFd);
    if (addon !== null) addon.funlock(this.fd);
    fs.closeSync(this.fd);
    if (this.lockFile !== null) {
      fs.rmSync(this.lockFile, { force: true });
      pidLocksHeld.delete(this.lockFile);
    }
  }
}

/** Paths whose pid file this process holds (its own pid in one is no stale file then). */
const pidLocksHeld = new Set<string>();

function takePidLock(path: string, fd: number): string {
  const lockFile = `${path}.lock`;
  const { dev, ino } = fs.fstatSync(fd);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      fs.writeFileSync(lockFile, String(process.pid), { flag: 'wx' });
      pidLocksHeld.add(lockFile);
      return lockFile;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const text = fs.readFileSync(lockFile, 'utf8');
      const owner = Number(text);
      if (Number.isInteger(owner) && owner > 0 && ownerHolds(owner, lockFile, dev, ino)) {
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

/** A reader's check: a live writer named in the pid file (one without the addon) refuses it. */
function refuseIfPidLocked(path: string, fd: number): void {
  const lockFile = `${path}.lock`;
  let text: string;
  try {
    text = fs.readFileSync(lockFile, 'utf8');
  } catch {
    return; // none (or unreadable: nothing to learn from it)
  }
  const owner = Number(text);
  const { dev, ino } = fs.fstatSync(fd);
  if (Number.isInteger(owner) && owner > 0 && ownerHolds(owner, lockFile, dev, ino)) {
    throw new LockedError(path, `by process ${owner} (${lockFile})`);
  }
}

/**
 * Whether process `pid`, named in a pid file, still holds the store: alive, and (where /proc
 * tells) with the file open. A file left by a crash may name a pid the system gave to another
 * process since, or to this one (a container restarted): that is no holder.
 */
function ownerHolds(pid: number, lockFile: string, dev: number, ino: number): boolean {
  if (pid === process.pid) return pidLocksHeld.has(lockFile);
  if (!processAlive(pid)) return false;
  let fds: string[];
  try {
    fds = fs.readdirSync(`/proc/${pid}/fd`);
  } catch {
    return true; // no /proc, or not ours to read: alive is all we can know
  }
  for (const f of fds) {
    try {
      const st = fs.statSync(`/proc/${pid}/fd/${f}`);
      if (st.dev === dev && st.ino === ino) return true;
    } catch {
      // closed meanwhile, or not a file
    }
  }
  return false;
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
