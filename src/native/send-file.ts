//! Streams a region of an open file to a net.Socket: zero-copy through the native addon
//! (sendfile(2) or splice(2), see native/zerocopy.cc) when it can, else pread + socket.write.
//!
//! Owns: the socket-side contract of a transfer, and choosing the path.
//!  - Before the region: the optional prefix is written with socket.write and, on native paths,
//!    we wait for its write callback (socket.writableLength === 0 afterwards), so bytes the
//!    socket already queued and the prefix reach the kernel before any zero-copy byte.
//!  - During the transfer, nobody else may write to, end or pause-write the socket. We enforce
//!    "one transfer per socket at a time" with an assertion, for regions and for inline values
//!    (sendBytes) alike; writes from elsewhere are the caller's bug. Bytes sent natively bypass
//!    Node's stream, so socket.bytesWritten does not count them and socket.setTimeout may see
//!    the socket as idle.
//!  - The socket fd is read from `socket._handle.fd` right before use (toolchain.md §4.1):
//!    after a reset Node nulls `_handle`, and TLS sockets have no fd usable for plaintext.
//!  - Destroying the socket mid-transfer cancels the native transfer (the addon holds a
//!    duplicate of the socket fd, which would otherwise keep the connection open for as long as
//!    the peer stalls); the promise rejects. Every mode rejects the same way (ECANCELED, or the
//!    socket's own error): Node calls back a write still pending at the destroy with no error,
//!    so the copy paths count a chunk only when its callback finds the socket alive.
//!  - The file fd must stay open until the promise settles in fallback mode (getWith guarantees
//!    it); native mode duplicates it, so closing it early there is harmless.
//!
//! Result contract, identical in every mode: resolves with `bytes` = length (the prefix is not
//! counted) once every byte was handed to the kernel (or, on TLS, to the TLS layer); rejects
//! with ZeroCopyError carrying the errno, its name, and the region bytes already handed over.
//! That count never includes a chunk whose write did not complete on a live socket, so it may
//! fall short of what the peer got, never exceed what it could have got. A file shorter than
//! offset + length rejects with ENODATA after sending what exists.
//!
//! Never: toggles O_NONBLOCK, writes to an fd number it did not just read from a live handle,
//! or uses a libuv pool thread to wait for a slow reader (fallback reads do use the pool, but
//! only for the pread itself).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import type net from 'node:net';
import os from 'node:os';
import tls from 'node:tls';
import { addon as loadedAddon, type NativeAddon, type NativeTransferError } from './addon.js';

export type SendMode = 'sendfile' | 'splice' | 'fallback';

export interface SendFileRegionOptions {
  /** Preferred path; 'sendfile' by default. Native modes fall back when they cannot apply. */
  mode?: SendMode;
  /** Small header (e.g. a 4-byte length) written before the region, in order. */
  prefix?: Uint8Array;
}

export interface SendFileRegionResult {
  /** Region bytes sent (always the requested length; the prefix is not counted). */
  bytes: number;
  /** The path actually taken. */
  mode: SendMode;
}

const errnoNames: ReadonlyMap<number, string> = new Map(
  Object.entries(os.constants.errno).map(([name, value]) => [value, name] as const),
);
const { ECANCELED, ENODATA, EPIPE } = os.constants.errno;

/** A transfer that failed at the system level (bad fd, peer reset, short file, cancelled). */
export class ZeroCopyError extends Error {
  override readonly name = 'ZeroCopyError';
  /** Positive errno (Linux numbering), e.g. 32 for EPIPE. */
  readonly errno: number;
  /** errno's symbolic name, e.g. 'EPIPE'; 'UNKNOWN' when the number has no name here. */
  readonly code: string;
  /** Region bytes handed to the kernel before the failure (the prefix is not counted). */
  readonly bytesSent: number;
  readonly mode: SendMode;

  constructor(errno: number, bytesSent: number, mode: SendMode, cause?: unknown) {
    const code = errnoNames.get(errno) ?? 'UNKNOWN';
    super(`${mode} transfer failed with ${code} after ${bytesSent} bytes`, { cause });
    assert(Number.isInteger(errno) && errno > 0, 'errno is a positive integer');
    assert(Number.isSafeInteger(bytesSent) && bytesSent >= 0, 'bytesSent is a count');
    this.errno = errno;
    this.code = code;
    this.bytesSent = bytesSent;
    this.mode = mode;
  }
}

/**
 * Fallback read size, two in flight per transfer. 256 KiB keeps per-chunk overhead small while
 * bounding the copy work one event-loop turn does per transfer (many concurrent fallback
 * transfers otherwise delay timers by hundreds of ms).
 */
const fallbackChunkBytes = 256 << 10;
const emptyPrefix = new Uint8Array(0);

// One transfer per socket at a time (see header). A WeakSet so sockets are never kept alive.
const busySockets = new WeakSet<net.Socket>();
const busyMessage = 'one send per socket at a time';

/** The addon, if it was built with the zero-copy calls (an older build only has flock). */
function zeroCopyAddon(): NativeAddon | null {
  return loadedAddon !== null && typeof loadedAddon.send === 'function' ? loadedAddon : null;
}

/** True when sendFileRegion can take a native path on this process at all. */
export const nativeZeroCopyAvailable: boolean = zeroCopyAddon() !== null;

/**
 * Sends file bytes [offset, offset + length) of `fd` to `socket`, after `opts.prefix`.
 * See the module header for the ordering, ownership and error contract.
 */
export async function sendFileRegion(
  socket: net.Socket,
  fd: number,
  offset: number,
  length: number,
  opts: SendFileRegionOptions = {},
): Promise<SendFileRegionResult> {
  assert(Number.isInteger(fd) && fd >= 0, 'fd is a non-negative integer');
  assert(Number.isSafeInteger(offset) && offset >= 0, 'offset is a non-negative safe integer');
  assert(Number.isSafeInteger(length) && length >= 0, 'length is a non-negative safe integer');
  assert(Number.isSafeInteger(offset + length), 'offset + length is a safe integer');
  assert(!busySockets.has(socket), busyMessage);

  const requested = opts.mode ?? 'sendfile';
  const native = requested === 'fallback' ? null : zeroCopyAddon();
  busySockets.add(socket);
  try {
    if (socket.destroyed || !socket.writable) throw new ZeroCopyError(EPIPE, 0, requested);
    const prefix = opts.prefix ?? emptyPrefix;
    if (native === null || socket instanceof tls.TLSSocket) {
      // Node's write queue keeps the order; no need to wait for the prefix.
      if (prefix.byteLength > 0) socket.write(prefix);
      return { bytes: await sendByCopy(socket, fd, offset, length), mode: 'fallback' };
    }
    // Queued bytes (the prefix included) must reach the kernel before the first zero-copy byte.
    await writeAndFlush(socket, prefix, requested);
    const socketFd = readSocketFd(socket);
    if (socketFd === null) {
      return { bytes: await sendByCopy(socket, fd, offset, length), mode: 'fallback' };
    }
    assert(requested === 'sendfile' || requested === 'splice');
    return { bytes: await sendNative(native, socket, socketFd, fd, offset, length, requested), mode: requested };
  } finally {
    busySockets.delete(socket);
  }
}

/**
 * Writes `bytes` (an inline value, prefix included) as one socket.write and resolves once the
 * socket took them, under sendFileRegion's contract: refused while a transfer streams on the
 * socket, else it would land inside that transfer's region; ZeroCopyError (mode 'fallback',
 * bytesSent 0) when the socket is gone or is destroyed before the write completed.
 */
export async function sendBytes(socket: net.Socket, bytes: Uint8Array): Promise<void> {
  // Only checked, not claimed: one socket.write cannot interleave with other writes in Node's
  // queue, and a region sent after it waits for it (writeAndFlush), so back-to-back sends of
  // small values need not wait for each other.
  assert(!busySockets.has(socket), busyMessage);
  if (socket.destroyed || !socket.writable) throw new ZeroCopyError(EPIPE, 0, 'fallback');
  await new Promise<void>((resolve, reject) => {
    socket.write(bytes, (error?: Error | null) => {
      // A destroy calls back the pending write with no error (see sendByCopy).
      if (error) reject(new ZeroCopyError(errnoOf(error), 0, 'fallback', error));
      else if (socket.destroyed) reject(new ZeroCopyError(lostErrno(socket), 0, 'fallback', socket.errored ?? undefined));
      else resolve();
    });
  });
}

/** The OS fd behind a connected plain TCP/IPC socket, or null (TLS, destroyed, no handle). */
function readSocketFd(socket: net.Socket): number | null {
  if (socket instanceof tls.TLSSocket) return null;
  const handle = (socket as unknown as { _handle?: { fd?: unknown } | null })._handle;
  const fd = handle?.fd;
  return typeof fd === 'number' && Number.isInteger(fd) && fd >= 0 ? fd : null;
}

/**
 * Writes `prefix` (possibly empty) and resolves from its write callback. Writable runs write
 * callbacks in order, so by then every byte queued before it (and the connect, if the socket
 * was still connecting) reached the kernel. A callback, not 'drain': 'drain' fires only after
 * a write returned false, so a small queued write would never produce one.
 */
async function writeAndFlush(socket: net.Socket, prefix: Uint8Array, mode: SendMode): Promise<void> {
  if (prefix.byteLength > 0 || socket.connecting || socket.writableLength > 0) {
    await new Promise<void>((resolve, reject) => {
      socket.write(prefix, (error?: Error | null) =>
        error ? reject(new ZeroCopyError(errnoOf(error), 0, mode, error)) : resolve(),
      );
    });
  }
  // The prefix's callback runs without an error when a destroy cancelled it (see sendByCopy).
  if (socket.destroyed) throw new ZeroCopyError(lostErrno(socket), 0, mode, socket.errored ?? undefined);
  if (!socket.writable) throw new ZeroCopyError(EPIPE, 0, mode);
  assert(socket.writableLength === 0, 'nothing else writes to the socket during sendFileRegion');
}

async function sendNative(
  native: NativeAddon,
  socket: net.Socket,
  socketFd: number,
  fd: number,
  offset: number,
  length: number,
  mode: 'sendfile' | 'splice',
): Promise<number> {
  const outcome = native.send(mode === 'splice' ? 1 : 0, socketFd, fd, offset, length);
  if (typeof outcome === 'number') {
    assert(outcome === length, 'a synchronous native result is the whole region');
    return length;
  }
  if (outcome.errno !== 0) throw new ZeroCopyError(outcome.errno, outcome.sentBytes, mode);
  const { id, promise } = outcome;
  assert(id !== undefined && promise !== undefined, 'a pending native transfer has id and promise');
  // The addon's duplicate would keep the connection open after a local destroy: cancel, so the
  // peer sees the close and our promise settles.
  const onClose = (): void => native.cancel(id);
  socket.once('close', onClose);
  try {
    const totalBytes = await promise;
    assert(totalBytes === length, 'a resolved native transfer sent the whole region');
    return length;
  } catch (error) {
    const e = error as Partial<NativeTransferError>;
    assert(typeof e.errno === 'number' && typeof e.bytesSent === 'number', 'native rejection shape');
    throw new ZeroCopyError(e.errno, e.bytesSent, mode, error);
  } finally {
    socket.off('close', onClose);
  }
}

/**
 * The portable path: pread into two alternating 1 MiB buffers and socket.write them. A buffer
 * is reused only after its write callback ran (the bytes reached the kernel), so memory stays at
 * two chunks per transfer whatever the reader's speed: that is the backpressure.
 */
async function sendByCopy(socket: net.Socket, fd: number, offset: number, length: number): Promise<number> {
  const chunkBytes = Math.min(fallbackChunkBytes, length);
  // Allocated on first use: a short read can need the second one even when length <= chunk.
  const buffers: Array<Buffer | undefined> = [undefined, undefined];
  // Write outcomes never reject (null or the error), so a failure found while we wait on a read
  // cannot become an unhandled rejection.
  const writes: Array<Promise<Error | null>> = [Promise.resolve(null), Promise.resolve(null)];
  let sentBytes = 0;
  let readBytes = 0;
  let failure: ZeroCopyError | null = null;

  const fail = (errno: number, cause?: unknown): ZeroCopyError => {
    if (failure === null) failure = new ZeroCopyError(errno, sentBytes, 'fallback', cause);
    return failure;
  };
  const write = (chunk: Buffer): Promise<Error | null> =>
    new Promise((resolve) => {
      socket.write(chunk, (error?: Error | null) => {
        if (error) {
          resolve(fail(errnoOf(error), error));
          return;
        }
        // No error yet a destroyed socket: Node calls back the write it had in flight when the
        // socket was destroyed with no error (stream_base_commons onWriteComplete), whether or
        // not libuv wrote it. Counting it would overstate bytesSent and resolve a cut transfer.
        if (socket.destroyed) {
          resolve(fail(lostErrno(socket), socket.errored ?? undefined));
          return;
        }
        sentBytes += chunk.byteLength;
        resolve(null);
      });
    });

  for (let i = 0; readBytes < length; i++) {
    const slot = i % 2;
    if ((await writes[slot]) !== null || failure !== null) break;
    if (socket.destroyed) {
      fail(lostErrno(socket), socket.errored ?? undefined);
      break;
    }
    const buffer = (buffers[slot] ??= Buffer.allocUnsafeSlow(chunkBytes));
    const wantBytes = Math.min(chunkBytes, length - readBytes);
    let gotBytes: number;
    try {
      gotBytes = await pread(fd, buffer, wantBytes, offset + readBytes);
    } catch (error) {
      if (systemErrno(error) === null) throw error; // not a system error: a bug, let it surface
      fail(errnoOf(error), error);
      break;
    }
    if (gotBytes === 0) {
      await Promise.all(writes); // what was read before end of file still counts as sent
      fail(ENODATA);
      break;
    }
    readBytes += gotBytes;
    writes[slot] = write(buffer.subarray(0, gotBytes));
  }
  await Promise.all(writes);
  if (failure !== null) throw failure;
  assert(sentBytes === length, 'fallback sent the whole region');
  return length;
}

function pread(fd: number, buffer: Buffer, lengthBytes: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => {
    fs.read(fd, buffer, 0, lengthBytes, position, (error, bytesRead) => (error ? reject(error) : resolve(bytesRead)));
  });
}

/** Positive errno of a Node system error (libuv reports it negated), else null. */
function systemErrno(error: unknown): number | null {
  if (error instanceof ZeroCopyError) return error.errno;
  const e = error as { errno?: unknown; code?: unknown } | null;
  if (typeof e?.errno === 'number' && Number.isInteger(e.errno) && e.errno !== 0) return Math.abs(e.errno);
  if (typeof e?.code === 'string') return (os.constants.errno as Record<string, number | undefined>)[e.code] ?? null;
  return null;
}

/**
 * errno for a socket destroyed under a transfer: its own error's (a reset seen on the read side,
 * say), else ECANCELED, as the native path reports a transfer cancelled by a local destroy.
 */
function lostErrno(socket: net.Socket): number {
  return socket.errored === null ? ECANCELED : errnoOf(socket.errored);
}

/**
 * errno for a failed socket write. A write on a socket that Node already destroyed fails with a
 * stream error, not a system one: report it as ECANCELED, as the native path does when the
 * socket is destroyed under it.
 */
function errnoOf(error: unknown): number {
  const errno = systemErrno(error);
  if (errno !== null) return errno;
  const code = (error as { code?: unknown } | null)?.code;
  return code === 'ERR_STREAM_DESTROYED' ? ECANCELED : EPIPE;
}
