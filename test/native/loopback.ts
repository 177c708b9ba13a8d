//! Test support for the zero-copy layer: a loopback receiver that hashes what it gets, with
//! optional stalls, pacing and resets, and an fd counter. Real sockets only.
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';

export interface ReceiverOptions {
  /** Pause reading for this long once the first byte arrived (a stalled reader). */
  stallAfterFirstByteMs?: number;
  /** After each chunk, pause reading for this long (a slow reader). */
  pauseEveryChunkMs?: number;
  /** Reset the connection (RST) once this many bytes arrived. */
  resetAfterBytes?: number;
  /** Return the client while it is still connecting (default: wait for 'connect'). */
  returnWhileConnecting?: boolean;
  /** Serve and connect over TLS with this key and certificate (the client trusts it as localhost). */
  tls?: { key: Buffer; cert: Buffer };
}

export interface Received {
  bytes: number;
  sha256: string;
  /** True when the connection ended with a reset or error rather than a clean end. */
  aborted: boolean;
}

export interface Connection {
  client: net.Socket;
  /** Settles when the server side of the connection closes. */
  received: Promise<Received>;
  /** Ends a stall now (the receiver reads on). */
  resumeNow(): void;
  close(): Promise<void>;
}

/** Opens a loopback server with one connection; the server side hashes every byte it reads. */
export async function connectReceiver(options: ReceiverOptions = {}): Promise<Connection> {
  let resolveReceived!: (r: Received) => void;
  let serverSocket: net.Socket | null = null;
  const received = new Promise<Received>((resolve) => (resolveReceived = resolve));
  const serve = (socket: net.Socket) => {
    serverSocket = socket;
    const hash = crypto.createHash('sha256');
    let bytes = 0;
    let aborted = false;
    let stalled = false;
    socket.on('error', () => (aborted = true));
    socket.on('data', (chunk: Buffer) => {
      bytes += chunk.byteLength;
      hash.update(chunk);
      if (options.resetAfterBytes !== undefined && bytes >= options.resetAfterBytes) {
        aborted = true;
        socket.resetAndDestroy();
        return;
      }
      if (options.stallAfterFirstByteMs !== undefined && !stalled) {
        stalled = true;
        socket.pause();
        const timer = setTimeout(() => socket.resume(), options.stallAfterFirstByteMs);
        socket.once('close', () => clearTimeout(timer));
      } else if (options.pauseEveryChunkMs !== undefined) {
        socket.pause();
        setTimeout(() => socket.resume(), options.pauseEveryChunkMs);
      }
    });
    socket.on('close', (hadError) => resolveReceived({ bytes, sha256: hash.digest('hex'), aborted: aborted || hadError }));
  };
  const secure = options.tls;
  const server = secure === undefined ? net.createServer(serve) : tls.createServer({ key: secure.key, cert: secure.cert }, serve);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  const client = secure === undefined
    ? net.connect(port, '127.0.0.1')
    : tls.connect({ port, host: '127.0.0.1', ca: secure.cert, servername: 'localhost' });
  client.setNoDelay(true);
  client.on('error', () => {}); // tests observe errors through sendFileRegion's promise
  if (options.returnWhileConnecting !== true) {
    await new Promise<void>((resolve, reject) => {
      client.once(secure === undefined ? 'connect' : 'secureConnect', resolve);
      client.once('error', reject);
    });
  }
  return {
    client,
    received,
    resumeNow: () => serverSocket?.resume(),
    close: async () => {
      client.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

export function sha256(...parts: Uint8Array[]): string {
  const hash = crypto.createHash('sha256');
  for (const part of parts) hash.update(part);
  return hash.digest('hex');
}

export function openFdCount(): number {
  return fs.readdirSync('/proc/self/fd').length;
}

/** Polls until the open fd count equals `expected` (sockets close asynchronously) or times out. */
export async function settleFdCount(expected: number, timeoutMs = 2000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let count = openFdCount();
  while (count !== expected && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 20));
    count = openFdCount();
  }
  return count;
}

/** Measures how late a 10 ms interval timer fires while `work` runs: the event loop's health. */
export async function measureTimerLagMs<T>(work: () => Promise<T>): Promise<{ result: T; maxLagMs: number }> {
  const periodMs = 10;
  let maxLagMs = 0;
  let last = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    maxLagMs = Math.max(maxLagMs, now - last - periodMs);
    last = now;
  }, periodMs);
  try {
    const result = await work();
    return { result, maxLagMs };
  } finally {
    clearInterval(timer);
  }
}
