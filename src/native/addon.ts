//! Loads the optional native addon (build/Release/zerocopy.node, built by `npm install`).
//!
//! Owns: finding and loading the addon once, and its typed surface (the zero-copy part is
//! wrapped by send-file.ts; nothing else should call send/cancel directly). `addon` is null when the
//! addon is absent (not Linux, build failed) or disabled with SOLIFUGE_NATIVE=0; every caller
//! must have a plain-fs fallback. Native calls return 0/bytes or -errno and never throw on
//! system errors (style.md §3.4); wrappers turn negative results into typed errors.
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

export interface NativeAddon {
  /** flock(2) on fd: 0 or -errno (-EWOULDBLOCK when held elsewhere and nonBlocking). */
  flock(fd: number, exclusive: boolean, nonBlocking: boolean): number;
  funlock(fd: number): number;
  /** fcntl(F_DUPFD_CLOEXEC): a new fd for the same open file, or -errno. */
  dup(fd: number): number;
  /** fallocate(PUNCH_HOLE | KEEP_SIZE): frees the blocks of [offset, offset + length); 0 or -errno. */
  punchHole(fd: number, offset: number, length: number): number;
  /**
   * madvise(MADV_HUGEPAGE) over the whole 2 MiB pages inside [offset, offset + length) of an
   * ArrayBuffer's memory; 0 or -errno. Absent from addons built before it existed.
   */
  adviseHugePages?(buffer: ArrayBuffer, offset: number, length: number): number;
  /**
   * madvise(MADV_POPULATE_WRITE) over the whole 4 KiB pages inside [offset, offset + length) of an
   * ArrayBuffer's memory, on a libuv pool thread: the pages get mapped as by a first write, and
   * their contents stay as they were. Resolves with 0 or -errno (-EINVAL before Linux 5.14);
   * never rejects. Absent from addons built before it existed.
   */
  prefault?(buffer: ArrayBuffer, offset: number, length: number): Promise<number>;
  /**
   * madvise(MADV_DONTNEED) over the whole 4 KiB pages inside [offset, offset + length) of an
   * ArrayBuffer's memory, synchronously: they read as zeros afterwards and take no resident memory
   * until touched. 0 or -errno. Absent from addons built before it existed.
   */
  discardPages?(buffer: ArrayBuffer, offset: number, length: number): number;
  /**
   * fdatasync(fd) on the addon's sync thread while the calling thread polls for its completion
   * for up to `spinUs` µs (then sleeps until it completes); the sync thread then polls for the
   * next request for `spinUs` µs. Returns once the fdatasync did: 0 or -errno. `spinUs` 0, or
   * another JS thread's request in flight: a plain fdatasync on the calling thread. `cpu` >= 0:
   * the sync thread serves the request pinned to that CPU, with a SCHED_IDLE keeper spinning
   * there while it waits for the I/O (a CPU the process may not use: unpinned); -1 or absent:
   * anywhere, no keeper. Throws a TypeError unless `fd` is an integer >= -1, `spinUs` within
   * 0 .. 1e6 and `cpu` an integer in -1 .. 1023. native/polled-sync.cc says why. Absent from
   * addons built before it existed.
   */
  fdatasyncPolled?(fd: number, spinUs: number, cpu?: number): number;
  /**
   * fdatasyncPolled in two steps, so that the caller works while the fdatasync runs: start
   * returns at once (or after a plain fdatasync, kept for finish); finish waits as
   * fdatasyncPolled does and returns 0 or -errno. A thread must finish what it started before it
   * starts again; start throws a TypeError on bad arguments and an Error when one is already
   * started, finish an Error when none is. Absent from addons built before they existed.
   */
  fdatasyncStart?(fd: number, spinUs: number, cpu?: number): void;
  fdatasyncFinish?(): number;
  /**
   * Like fdatasyncStart, but a pwrite of `bytes` (1 B .. 1 MiB, copied before the call returns)
   * padded with zeros to a multiple of 4 KiB, at `pos` (a multiple of 4 KiB), through `fd`, which
   * the caller opened O_DIRECT | O_DSYNC; fdatasyncFinish waits for it (-EINVAL: the file does not
   * take direct I/O and nothing was written). Absent from addons built before it existed.
   */
  directWriteStart?(fd: number, bytes: Uint8Array, pos: number, spinUs: number, cpu?: number): void;
  /**
   * The sync thread's requests so far (process-wide): those it served, those it saw while
   * polling after the one before rather than being woken for (it polls only while requests come
   * close together; native/polled-sync.cc PollAfterNs), and those the keeper, watching between
   * requests, woke it for. Absent from addons built before it existed.
   */
  syncThreadCounters?(): { requestsServed: number; requestsSeenPolling: number; requestsHandedOff: number };

  /**
   * Zero-copy transfer of file bytes [offset, offset+length) to a connected, non-blocking
   * socket fd (mode 0 = sendfile, 1 = splice through a pipe). Tries on the JS thread first; the
   * remainder goes to the addon's sender thread with duplicated fds (send-file.ts owns the
   * contract: socket drained before, untouched until settled). Throws only on bad arguments.
   *  - number: all `length` bytes were sent synchronously;
   *  - {sentBytes, errno > 0}: failed synchronously after sentBytes;
   *  - {sentBytes, errno: 0, id, promise}: pending; resolves with the total bytes sent, rejects
   *    with an Error carrying `errno` (positive) and `bytesSent`.
   */
  send(mode: 0 | 1, socketFd: number, fileFd: number, offset: number, length: number): number | NativeSendOutcome;
  /** Ends a pending transfer with ECANCELED; no-op once it settled. */
  cancel(id: number): void;
  /** Transfers handed to the sender thread whose Promise has not settled yet. */
  pendingTransfers(): number;
  /**
   * Benchmark reference only: the bare sendfile loop with poll() on the calling thread.
   * Blocks the event loop. Returns bytes sent or -errno.
   */
  sendfileBlocking(socketFd: number, fileFd: number, offset: number, length: number): number;
}

export interface NativeSendOutcome {
  sentBytes: number;
  /** 0 when pending, else the errno that ended the transfer on the JS thread. */
  errno: number;
  id?: number;
  promise?: Promise<number>;
}

/** The shape of the Error a pending transfer's promise rejects with. */
export interface NativeTransferError extends Error {
  errno: number;
  bytesSent: number;
}

function loadAddon(): NativeAddon | null {
  if (process.env.SOLIFUGE_NATIVE === '0') return null;
  if (process.platform !== 'linux') return null;
  const require = createRequire(import.meta.url);
  // src/native/addon.ts and dist/native/addon.js both sit two levels below the package root.
  const file = fileURLToPath(new URL('../../build/Release/zerocopy.node', import.meta.url));
  try {
    return require(file) as NativeAddon;
  } catch {
    return null;
  }
}

export const addon: NativeAddon | null = loadAddon();
