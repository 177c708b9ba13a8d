//! The control socket: lets a command line reach a store that a running process holds open.
//!
//! A store opened with `controlSocket: true` listens on the Unix socket `<file>.sock` (mode 0600,
//! removed on close). The file lock already guarantees one owner, so a socket file left by a
//! crashed owner is stale and is replaced. Requests and replies are JSON lines:
//!
//!     → {"cmd":"compact"}          ← {"progress":{…}}* then {"result":{…}} or {"error":"…"}
//!     → {"cmd":"stats"}            ← {"result":{keys, fileBytes, allocatedBytes, …}}
//!
//! Input is bounded (one line of at most 4 KiB); anything else gets {"error"} and a close. The
//! server closes its connections itself once it has answered (a client that keeps its side open
//! must not hold the store's close() up), and close() drops connections that are still silent.
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
  const open = new Set<Connection>();
  const server = net.createServer((conn) => {
    const c: Connection = { conn, busy: false };
    open.add(c);
    conn.on('close', () => open.delete(c));
    serve(c, target);
  });
  connections.set(server, open);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(sockPath, () => resolve());
  });
  fs.chmodSync(sockPath, 0o600);
  return server;
}

/** A connection, and whether it is running a command (a compaction) that close() waits for. */
interface Connection {
  conn: net.Socket;
  busy: boolean;
}

const connections = new WeakMap<net.Server, Set<Connection>>();

export async function closeControl(file: string, server: net.Server): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  // server.close() waits for every connection: those that have not asked for anything yet go
  // now; a compaction's ends once the store cancels it (Db.close does that first).
  for (const c of connections.get(server) ?? []) if (!c.busy) c.conn.destroy();
  await closed;
  fs.rmSync(controlSocketPath(file), { force: true });
}

function serve(c: Connection, target: ControlTarget): void {
  const conn = c.conn;
  let buf = '';
  const send = (o: unknown) => conn.write(`${JSON.stringify(o)}\n`);
  // The reply is flushed, then the socket closed, whether or not the client closes its side.
  const finish = () => {
    c.busy = false;
    conn.end(() => conn.destroy());
  };
  conn.on('error', () => conn.destroy());
  // A client that never sends its request must not hold the store's close() up forever.
  conn.setTimeout(30_000, () => conn.destroy());
  conn.on('data', (d: Buffer) => {
    if (c.busy) return; // one request per connection
    buf += d.toString('utf8');
    if (buf.length > LINE_BYTES_MAX) {
      send({ error: 'request too long' });
      finish();
      return;
    }
    const nl = buf.indexOf('\n');
    if (nl < 0) return;
    const line = buf.slice(0, nl);
    buf = '';
    let req: unknown;
    try {
      req = JSON.parse(line);
    } catch {
      req = undefined;
    }
    // Valid JSON that is not an object (null, a number, an array) is as malformed as no JSON.
    if (req === null || typeof req !== 'object' || Array.isArray(req)) {
      send({ error: 'malformed request' });
      finish();
      return;
    }
    const cmd = (req as { cmd?: unknown }).cmd;
    c.busy = true;
    if (cmd === 'compact') {
      conn.setTimeout(0); // a compaction may take minutes
      target
        .compact({ onProgress: (p) => send({ progress: p }) })
        .then((r) => send({ result: r }), (err: unknown) => send({ error: String((err as Error)?.message ?? err) }))
        .finally(finish);
    } else if (cmd === 'stats') {
      try {
        send({ result: target.controlStats() });
      } catch (err) {
        send({ error: String((err as Error)?.message ?? err) }); // thrown here, it would end the process
      }
      finish();
    } else {
      send({ error: `unknown command ${JSON.stringify(cmd) ?? String(cmd)}` });
      finish();
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
