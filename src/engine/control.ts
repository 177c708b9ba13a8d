//! The control socket: lets a command line reach a store that a running process holds open.
//!
//! A store opened with `controlSocket: true` listens on the Unix socket `<file>.sock` (mode 0600,
//! removed on close). The file lock already guarantees one owner, so a socket file left by a
//! crashed owner is stale and is replaced. Requests and replies are JSON lines:
//!
//!     → {"cmd":"compact"}          ← {"progress":{…}}* then {"result":{…}} or {"error":"…"}
//!     → {"cmd":"stats"}            ← {"result":{keys, fileBytes, allocatedBytes, …}}
//!
//! Input is bounded (one line of at most 4 KiB); anything else gets {"error"} and a close.
import fs from 'node:fs';
import net from 'node:net';
import type { CompactProgress, CompactResult } from './compaction.js';

export interface ControlTarget {
  compact(opts: { onProgress: (p: CompactProgress) => void }): Promise<CompactResult>;
  controlStats(): Record<string, number>;
}

const LINE_BYTES_MAX = 4096;
/** sun_path is 108 bytes on Linux, NUL included. */
const SOCKET_PATH_BYTES_MAX = 107;

export function controlSocketPath(file: string): string {
  return `${file}.sock`;
}

export async function listenControl(file: string, target: ControlTarget): Promise<net.Server> {
  const sockPath = controlSocketPath(file);
  if (Buffer.byteLength(sockPath) > SOCKET_PATH_BYTES_MAX) {
    throw new Error(`control socket path ${sockPath} is longer than ${SOCKET_PATH_BYTES_MAX} bytes`);
  }
  fs.rmSync(sockPath, { force: true }); // stale: we hold the file lock, so no live owner has it
  const server = net.createServer((conn) => serve(conn, target));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(sockPath, () => resolve());
  });
  fs.chmodSync(sockPath, 0o600);
  return server;
}

export async function closeControl(file: string, server: net.Server): Promise<void> {
  await new Promise<void>((resolve) => server.close(() => resolve()));
  fs.rmSync(controlSocketPath(file), { force: true });
}

function serve(conn: net.Socket, target: ControlTarget): void {
  let buf = '';
  const send = (o: unknown) => conn.write(`${JSON.stringify(o)}\n`);
  conn.on('error', () => conn.destroy());
  // A client that never sends its request must not hold the store's close() up forever.
  conn.setTimeout(30_000, () => conn.destroy());
  conn.on('data', (d: Buffer) => {
    buf += d.toString('utf8');
    if (buf.length > LINE_BYTES_MAX) {
      send({ error: 'request too long' });
      conn.end();
      return;
    }
    const nl = buf.indexOf('\n');
    if (nl < 0) return;
    const line = buf.slice(0, nl);
    buf = buf.slice(nl + 1);
    let req: { cmd?: unknown };
    try {
      req = JSON.parse(line) as { cmd?: unknown };
    } catch {
      send({ error: 'malformed request' });
      conn.end();
      return;
    }
    conn.setTimeout(0); // a compaction may take minutes
    if (req.cmd === 'compact') {
      target
        .compact({ onProgress: (p) => send({ progress: p }) })
        .then((r) => send({ result: r }), (err: unknown) => send({ error: String((err as Error)?.message ?? err) }))
        .finally(() => conn.end());
    } else if (req.cmd === 'stats') {
      send({ result: target.controlStats() });
      conn.end();
    } else {
      send({ error: `unknown command ${JSON.stringify(req.cmd)}` });
      conn.end();
    }
  });
}

/** Client side: sends one command and calls `onLine` for each reply line until the server closes. */
export function requestControl(file: string, cmd: string, onLine: (o: Record<string, unknown>) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const conn = net.connect(controlSocketPath(file));
    let buf = '';
    conn.on('connect', () => conn.write(`${JSON.stringify({ cmd })}\n`));
    conn.on('data', (d: Buffer) => {
      buf += d.toString('utf8');
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        onLine(JSON.parse(line) as Record<string, unknown>);
      }
    });
    conn.on('error', reject);
    conn.on('close', () => resolve());
  });
}
