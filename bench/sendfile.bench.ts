// Streaming a file region to a loopback TCP socket: sendFileRegion (sendfile, splice, fallback)
// against a raw sendfile loop, pread + socket.write, and fs.createReadStream().pipe(socket).
//
// Run: npx tsx bench/sendfile.bench.ts [--rounds N]
//
// Method:
//  - One page-cached 64 MiB random file; regions of 1 MiB (offset rotating through the file)
//    and 64 MiB.
//  - The receiver is a separate process reading into one 4 MiB buffer and discarding: a small C
//    program (bench/sink.c, compiled with cc at start) by default, so the receiver does not cap
//    the fast methods, or a Node process with `--node-sink`. Each method has its own connection.
//  - An iteration ends when every byte was handed to the kernel (the same point at which
//    sendFileRegion resolves): for pipe(), the read stream ended and a write callback queued
//    behind its last chunk ran. The socket buffer (a few MiB) therefore flatters the 1 MiB
//    figures of every method alike; the 64 MiB ones are throughput-bound.
//  - "raw sendfile" is addon.sendfileBlocking: the bare sendfile loop with poll() on this thread,
//    no Promise, no thread hop. It is the ceiling, not something a server may call.
//  - Several rounds with the task order rotated; the table shows medians of the per-round means,
//    and ratios as medians of per-round ratios (paired, so slow drifts in background load on a
//    shared machine cancel out).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Bench } from 'tinybench';
import { addon } from '../dist/native/addon.js';
import { nativeZeroCopyAvailable, sendFileRegion } from '../dist/native/send-file.js';
import { open as openStore } from '../dist/index.js';
import { createRequire } from 'node:module';

const MiB = 1 << 20;
const fileSizeBytes = 64 * MiB;
const sizesBytes = [MiB, 64 * MiB];
const roundsArg = process.argv.indexOf('--rounds');
const rounds = roundsArg > 0 ? Number(process.argv[roundsArg + 1]) : 7;

/** Compiles bench/sink.c with the system C compiler; null (use the Node sink) if that fails. */
function nativeSink(dir: string): string | null {
  if (process.argv.includes('--node-sink')) return null;
  const out = path.join(dir, 'sink');
  const src = new URL('./sink.c', import.meta.url).pathname;
  const r = spawnSync('cc', ['-O2', '-o', out, src], { stdio: 'ignore' });
  return r.status === 0 ? out : null;
}
let sinkKind = 'Node';

const sinkScript = `
const net = require('node:net');
const [port, count] = process.argv.slice(1).map(Number);
const buffer = Buffer.allocUnsafe(4 << 20);
for (let i = 0; i < count; i++) {
  const s = net.connect({ port, host: '127.0.0.1', onread: { buffer, callback: () => true } });
  s.on('error', () => {});
}
process.on('disconnect', () => process.exit(0));
`;

interface Method {
  name: string;
  /** Sends [offset, offset + length) of fd to the socket and settles when handed to the kernel. */
  send(socket: net.Socket, fd: number, offset: number, length: number): Promise<unknown> | unknown;
}

function socketFd(socket: net.Socket): number {
  const fd = (socket as unknown as { _handle: { fd: number } })._handle.fd;
  if (!Number.isInteger(fd) || fd < 0) throw new Error('socket has no fd');
  return fd;
}

function flushed(socket: net.Socket): Promise<void> {
  return new Promise((resolve, reject) => socket.write(Buffer.alloc(0), (e) => (e ? reject(e) : resolve())));
}

// The engine end to end: db.sendValue of a stored value of the same size (getWith: lookup, pinned
// snapshot, dup'ed fd, then the same transfer), and lmdb's get + socket.write as the anchor.
const storeDir = fs.mkdtempSync(path.join(os.tmpdir(), 'solifuge-sendvalue-bench-'));
const store = await openStore(path.join(storeDir, 'values.db'), { durable: false });
const valueKey = (n: number) => `value-${n}`;
for (const n of sizesBytes) await store.set(valueKey(n), crypto.randomBytes(n));
let lmdbStore: { getBinary(k: string): Buffer | undefined; put(k: string, v: Buffer): Promise<boolean>; close(): Promise<void> } | null = null;
try {
  const requireBench = createRequire(new URL('./package.json', import.meta.url));
  const { open } = requireBench('lmdb') as { open(o: object): NonNullable<typeof lmdbStore> };
  lmdbStore = open({ path: path.join(storeDir, 'lmdb'), encoding: 'binary', compression: false });
  for (const n of sizesBytes) await lmdbStore.put(valueKey(n), crypto.randomBytes(n));
} catch {
  lmdbStore = null; // anchors not installed (npm run bench:setup)
}
const writeDone = (socket: net.Socket, b: Uint8Array) => new Promise<void>((resolve, reject) => socket.write(b, (e) => (e ? reject(e) : resolve())));

const methods: Method[] = [
  ...(nativeZeroCopyAvailable && addon !== null
    ? [
        {
          name: 'raw sendfile (blocking loop)',
          send: (socket: net.Socket, fd: number, offset: number, length: number) => {
            const sent = addon!.sendfileBlocking(socketFd(socket), fd, offset, length);
            if (sent !== length) throw new Error(`sendfileBlocking: ${sent}`);
          },
        },
        { name: 'sendFileRegion sendfile', send: (s: net.Socket, fd: number, o: number, l: number) => sendFileRegion(s, fd, o, l, { mode: 'sendfile' }) },
        { name: 'sendFileRegion splice', send: (s: net.Socket, fd: number, o: number, l: number) => sendFileRegion(s, fd, o, l, { mode: 'splice' }) },
      ]
    : []),
  { name: 'sendFileRegion fallback (pread + socket.write)', send: (s, fd, o, l) => sendFileRegion(s, fd, o, l, { mode: 'fallback' }) },
  { name: 'db.sendValue (Solifuge, whole path)', send: (s, _fd, _o, l) => store.sendValue(valueKey(l), s, { lengthPrefix: 'none' }) },
  { name: 'db.sendValue, fallback mode', send: (s, _fd, _o, l) => store.sendValue(valueKey(l), s, { lengthPrefix: 'none', mode: 'fallback' }) },
  ...(lmdbStore !== null
    ? [{ name: 'lmdb getBinary + socket.write', send: (s: net.Socket, _fd: number, _o: number, l: number) => writeDone(s, lmdbStore!.getBinary(valueKey(l)) as Buffer) }]
    : []),
  {
    name: 'createReadStream().pipe(socket), 64 KiB chunks',
    send: async (socket, fd, offset, length) => {
      const stream = fs.createReadStream('', { fd, start: offset, end: offset + length - 1, autoClose: false });
      stream.pipe(socket, { end: false });
      await new Promise<void>((resolve, reject) => stream.once('end', resolve).once('error', reject));
      await flushed(socket);
    },
  },
];
const rawName = methods[0]?.name.startsWith('raw') ? methods[0].name : null;
const pipeName = methods[methods.length - 1].name;

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'solifuge-sendfile-bench-'));
  const filePath = path.join(dir, 'region.bin');
  fs.writeFileSync(filePath, crypto.randomFillSync(Buffer.allocUnsafeSlow(fileSizeBytes)));
  const fd = fs.openSync(filePath, 'r');

  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const sockets: net.Socket[] = [];
  const accepted = new Promise<void>((resolve) =>
    server.on('connection', (socket) => {
      socket.setNoDelay(true);
      sockets.push(socket);
      if (sockets.length === methods.length) resolve();
    }),
  );
  const port = String((server.address() as net.AddressInfo).port);
  const native = nativeSink(dir);
  const sink: ChildProcess = native !== null
    ? spawn(native, [port, String(methods.length)], { stdio: ['pipe', 'inherit', 'inherit'] })
    : spawn(process.execPath, ['-e', sinkScript, port, String(methods.length)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  await accepted;
  sinkKind = native !== null ? 'native (bench/sink.c)' : 'Node';

  // results[size][method] = per-round MB/s
  const results = new Map<number, Map<string, number[]>>();
  for (const sizeBytes of sizesBytes) {
    results.set(sizeBytes, new Map(methods.map((m) => [m.name, [] as number[]])));
  }
  for (let round = 0; round < rounds; round++) {
    for (const sizeBytes of sizesBytes) {
      const large = sizeBytes > 8 * MiB;
      const bench = new Bench({
        time: large ? 400 : 200,
        iterations: large ? 4 : 32,
        warmupTime: 50,
        warmupIterations: large ? 1 : 8,
      });
      const order = methods.map((m, i) => ({ m, socket: sockets[i] }));
      for (let r = 0; r < round; r++) order.push(order.shift()!); // rotate per round
      for (const { m, socket } of order) {
        let i = 0;
        // An async function, so tinybench sees it is async from its type and never has to call
        // it to find out (a probing call would overlap with the next one on the same socket).
        bench.add(m.name, async () => {
          const offset = large ? 0 : ((i++ * 7) % (fileSizeBytes / sizeBytes)) * sizeBytes;
          await m.send(socket, fd, offset, sizeBytes);
        });
      }
      await bench.run();
      for (const task of bench.tasks) {
        const result = task.result;
        if (result.state !== "completed") throw new Error(`${task.name}: ${result.state}`, { cause: (result as { error?: unknown }).error });
        const mbPerS = sizeBytes / (result.latency.mean / 1000) / 1e6;
        results.get(sizeBytes)!.get(task.name)!.push(mbPerS);
      }
      process.stderr.write('.');
    }
  }
  process.stderr.write('\n');

  const median = (xs: number[]): number => {
    const s = [...xs].sort((a, b) => a - b);
    return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
  };
  const fmt = (x: number): string => (x >= 100 ? x.toFixed(0) : x.toFixed(1));
  const header = ['method'];
  for (const sizeBytes of sizesBytes) {
    const label = `${sizeBytes / MiB} MiB`;
    header.push(`${label} MB/s`, ...(rawName ? [`${label} × raw`] : []), `${label} × pipe`);
  }
  const lines = [`| ${header.join(' | ')} |`, `|${header.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|`];
  for (const m of methods) {
    const row = [m.name];
    for (const sizeBytes of sizesBytes) {
      const bySize = results.get(sizeBytes)!;
      const value = median(bySize.get(m.name)!);
      row.push(fmt(value));
      // Ratios are paired: method ÷ reference within each round (the rounds ran seconds apart
      // under changing background load), then the median of those per-round ratios.
      const pairedRatio = (reference: string): string => {
        const refs = bySize.get(reference)!;
        return `${median(bySize.get(m.name)!.map((x, r) => x / refs[r])).toFixed(2)}×`;
      };
      if (rawName) row.push(pairedRatio(rawName));
      row.push(pairedRatio(pipeName));
    }
    lines.push(`| ${row.join(' | ')} |`);
  }
  console.log(
    `\nsendfile bench: Node ${process.version}, ${os.cpus().length} CPUs, load ${os.loadavg()[0].toFixed(2)}, ` +
      `median of ${rounds} rounds (min–max in JSON below), receiver: ${sinkKind}\n`,
  );
  console.log(lines.join('\n'));
  const ranges: Record<string, Record<string, [number, number]>> = {};
  for (const [sizeBytes, bySize] of results) {
    ranges[`${sizeBytes / MiB} MiB`] = Object.fromEntries(
      [...bySize].map(([name, xs]) => [name, [Math.round(Math.min(...xs)), Math.round(Math.max(...xs))]]),
    );
  }
  console.log('\n' + JSON.stringify(ranges));

  for (const socket of sockets) socket.destroy();
  if (sink.stdin !== null) sink.stdin.end();
  else sink.disconnect();
  server.close();
  fs.closeSync(fd);
  fs.rmSync(dir, { recursive: true, force: true });
  await store.close();
  await lmdbStore?.close();
  fs.rmSync(storeDir, { recursive: true, force: true });
}

await main();
