//! The `solifuge` command line.
//!
//!     solifuge inspect FILE [--slabs N] [--json]   superblocks, slabs, tree depth, key count, check;
//!                                                  a store a running process holds: its figures over
//!                                                  its control socket
//!     solifuge compact FILE                        offline compaction with an atomic swap
//!     solifuge compact --online FILE               online compaction in place (holes punched)
//!     solifuge demo [DIR]                          the embedded demo (see demo.ts)
//!
//! Exit status: 0 fine, 1 the file has problems, 2 usage errors.
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import cliProgress from 'cli-progress';
import { open } from '../engine/db.js';
import { LockedError } from '../engine/errors.js';
import { syncDirectory } from '../engine/log-file.js';
import { inspect, type InspectReport } from '../engine/inspect.js';
import { controlSocketPath, requestControl } from '../engine/control.js';
import type { CompactProgress, CompactResult } from '../engine/compaction.js';
import { runDemo } from './demo.js';

const USAGE = `usage:
  solifuge inspect FILE [--slabs N] [--json]
  solifuge compact [--online] FILE
  solifuge demo [DIR]`;

function fmtBytes(n: number): string {
  return n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(1)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n} B`;
}

/** A count given on the command line: digits only, so `abc`, `-1` and `2.5` are usage errors, not 0. */
function parseCount(flag: string, text: string): number {
  const n = Number(text);
  if (!/^[0-9]+$/.test(text) || !Number.isSafeInteger(n)) throw new UsageError(`${flag} wants a whole number, 0 or more, not ${JSON.stringify(text)}`);
  return n;
}

function slabLine(s: InspectReport['slabs'][number]): string {
  return `  seq ${String(s.seq).padStart(6)} at ${String(s.start).padStart(10)}  ${fmtBytes(s.bytes).padStart(10)}  keys ${s.keyCount ?? '-'}  tag ${s.tag ?? '-'}`;
}

async function cmdInspect(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { slabs: { type: 'string' }, json: { type: 'boolean' } } });
  if (positionals.length !== 1) throw new UsageError('inspect needs exactly one FILE');
  const slabsMax = values.slabs === undefined ? 20 : parseCount('--slabs', values.slabs);
  let r: InspectReport;
  try {
    r = await inspect(positionals[0], { slabsMax });
  } catch (err) {
    if (!(err instanceof LockedError)) throw err;
    return inspectLive(positionals[0], err, values.json === true);
  }
  const status = r.check?.ok === true ? 0 : 1;
  if (values.json === true) {
    process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
    return status;
  }
  const out: string[] = [];
  out.push(`file            ${r.file} (${fmtBytes(r.fileBytes)})`);
  for (const s of r.superblocks) {
    const d = s.read.kind === 'valid'
      ? `counter ${s.read.sb.counter}, last commit at ${s.read.sb.lastCommitPos}, durable end ${s.read.sb.dataEnd}`
      : s.read.kind;
    out.push(`superblock@${s.pos}`.padEnd(16) + d);
  }
  if (r.failure !== null || r.check === null) {
    // Recovery (or the open) refused the file: what was read before that, and why.
    out.push(`refused         ${r.failure?.message ?? 'no check'} (a writable open refuses it too)`);
    out.push(...r.slabs.map(slabLine));
    process.stdout.write(`${out.join('\n')}\n`);
    return status;
  }
  const c = r.lastCommit;
  out.push(`last commit     ${c === null ? 'none (empty store)' : `seq ${c.seq} at ${c.pos}, ${c.keyCount ?? r.check.keys} keys, tag ${c.tag ?? '-'}`}`);
  out.push(`tree            depth ${r.check.depth}, ${r.check.leaves} leaves, ${r.check.indexes} index nodes, ${r.check.valueEntries} value entries`);
  out.push(`live bytes      ${fmtBytes(r.check.liveBytes)} of ${fmtBytes(r.check.fileBytes)} (${((100 * r.check.liveBytes) / Math.max(1, r.check.fileBytes)).toFixed(1)}%), ${fmtBytes(r.allocatedBytes)} allocated`);
  if (r.liveStart > 8192) out.push(`reclaimed       ${fmtBytes(r.liveStart - 8192)} before offset ${r.liveStart} (online compaction, holes)`);
  if (r.tornTailBytes > 0) out.push(`torn tail       ${r.tornTailBytes} bytes after the last valid commit (cut on the next writable open)`);
  out.push(`slabs           ${r.check.slabs}${r.slabsOmitted > 0 ? ` (first ${r.slabs.length} listed)` : ''}`);
  out.push(...r.slabs.map(slabLine));
  out.push(`check           ${r.check.ok ? 'ok' : `${r.check.problems.length} problem(s)`}`);
  for (const p of r.check.problems) out.push(`  ${p}`);
  process.stdout.write(`${out.join('\n')}\n`);
  return status;
}

/**
 * A store a running process holds: inspect must not read it (the writer appends, and its online
 * compaction punches out bytes, under any reader without the lock), so the owner reports its own
 * figures over its control socket when it listens on one (`controlSocket: true`).
 */
async function inspectLive(file: string, locked: LockedError, json: boolean): Promise<number> {
  let stats: Record<string, unknown> | null = null;
  let refused: string | null = null;
  try {
    await requestControl(file, 'stats', (o) => {
      if (typeof o.result === 'object' && o.result !== null) stats = o.result as Record<string, unknown>;
      if (o.error !== undefined) refused = String(o.error);
    });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ECONNREFUSED' && code !== 'ENOENT') throw err;
  }
  if (stats === null) {
    const why = refused !== null ? `it answered ${JSON.stringify(refused)}` : 'it does not listen on a control socket (open it with controlSocket: true)';
    throw new Error(`${locked.message}: inspect reads a store no process holds, and ${why} on ${controlSocketPath(file)}`);
  }
  const live: Record<string, unknown> = stats;
  if (json) {
    process.stdout.write(`${JSON.stringify({ file, live: true, stats: live }, null, 2)}\n`);
    return 0;
  }
  const out = [`file            ${file}: open in a running process, which reports (${controlSocketPath(file)}):`];
  for (const [k, v] of Object.entries(live)) out.push(`  ${k.padEnd(16)}${String(v)}`);
  out.push('(superblocks, slabs and the check need the store closed)');
  process.stdout.write(`${out.join('\n')}\n`);
  return 0;
}

async function cmdCompact(args: string[]): Promise<number> {
  const { positionals, values } = parseArgs({ args, allowPositionals: true, options: { online: { type: 'boolean' } } });
  if (positionals.length !== 1) throw new UsageError('compact needs exactly one FILE');
  if (values.online === true) return compactOnline(path.resolve(positionals[0]));
  // Swap the real file, not a symlink naming it: renaming over the link would replace the link
  // with a copy and leave the store it points to as it was. The temporary file sits beside the
  // real file, so the rename stays on one file system and atomic.
  const file = fs.realpathSync(path.resolve(positionals[0]));
  const tmp = `${file}.compact-${process.pid}`;
  const db = await open(file, { create: false });
  const before = db.fileInfo().fileBytes;
  try {
    const original = fs.statSync(file);
    // Until it gets the original's mode, the copy is readable by its owner only.
    const umask = process.umask(0o077);
    let r: { keys: number; bytes: number };
    try {
      r = await db.compactTo(tmp);
    } finally {
      process.umask(umask);
    }
    keepOwnerAndMode(tmp, original);
    // Swap while we still hold the lock on the old file, so no writer slips in between.
    fs.renameSync(tmp, file);
    syncDirectory(path.dirname(file));
    process.stdout.write(`compacted ${file}: ${r.keys} keys, ${fmtBytes(before)} -> ${fmtBytes(r.bytes)}\n`);
  } finally {
    await db.close().catch(() => undefined);
    fs.rmSync(tmp, { force: true });
  }
  return 0;
}

/** Gives the compacted copy the original's mode, and its owner and group when root (best effort). */
function keepOwnerAndMode(file: string, original: fs.Stats): void {
  const fd = fs.openSync(file, 'r');
  try {
    if (process.getuid?.() === 0) {
      try {
        fs.fchownSync(fd, original.uid, original.gid);
      } catch {
        // Best effort: some file systems refuse; the mode below still holds.
      }
    }
    fs.fchmodSync(fd, original.mode & 0o7777); // after chown, which may clear set-id bits
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Renders compaction progress: a bar on a terminal, a plain line per phase (and per second) otherwise. */
function progressRenderer(): { update(p: CompactProgress): void; stop(): void } {
  const bar = process.stdout.isTTY === true
    ? new cliProgress.SingleBar({ format: '{phase} [{bar}] {percentage}% | {value}/{total} {unit}', hideCursor: true }, cliProgress.Presets.shades_classic)
    : null;
  let lastPhase = '';
  let lastLine = 0;
  return {
    update(p) {
      const [value, total, unit] = p.phase === 'punch' || p.phase === 'done'
        ? [Math.round(p.bytesReclaimed / (1 << 20)), Math.max(1, Math.round(p.bytesToReclaim / (1 << 20))), 'MiB punched']
        : [p.keysCopied, Math.max(1, p.keysTotal), p.phase === 'wait' ? `keys; waiting for ${p.pinnedSnapshots} snapshot(s)` : 'keys copied'];
      if (bar !== null) {
        if (p.phase !== lastPhase) {
          if (lastPhase !== '') bar.stop();
          bar.start(total, value, { phase: p.phase.padEnd(5), unit });
        } else bar.update(value, { unit });
      } else if (p.phase !== lastPhase || Date.now() - lastLine > 1000) {
        process.stdout.write(`${p.phase}: ${value}/${total} ${unit}\n`);
        lastLine = Date.now();
      }
      lastPhase = p.phase;
    },
    stop() {
      bar?.stop();
    },
  };
}

function reportCompaction(file: string, how: string, r: CompactResult): void {
  process.stdout.write(
    `compacted ${file} ${how}: ${r.keysCopied} keys copied, ${fmtBytes(r.bytesReclaimed)} punched, ` +
      `allocated ${fmtBytes(r.allocatedBytesBefore)} -> ${fmtBytes(r.allocatedBytesAfter)}` +
      `${r.punchSkipped === undefined ? '' : ` (no holes punched: ${r.punchSkipped})`}\n`,
  );
}

/**
 * Online compaction in place (compaction.ts). If a running process holds the store with
 * `controlSocket: true`, the request goes to it over `<file>.sock`; otherwise the store is
 * opened here (and must not be open elsewhere: the lock says so).
 */
async function compactOnline(file: string): Promise<number> {
  const progress = progressRenderer();
  try {
    if (fs.existsSync(controlSocketPath(file))) {
      let result: CompactResult | null = null;
      let failure: string | null = null;
      try {
        await requestControl(file, 'compact', (o) => {
          if (o.progress !== undefined) progress.update(o.progress as CompactProgress);
          if (o.result !== undefined) result = o.result as CompactResult;
          if (o.error !== undefined) failure = String(o.error);
        });
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== 'ECONNREFUSED' && code !== 'ENOENT') throw err;
        // A socket file without a listener: its owner is gone; compact the file here.
        return await compactHere(file, progress);
      }
      progress.stop();
      if (failure !== null) throw new Error(`the running store refused: ${failure}`);
      if (result === null) throw new Error('the running store closed the control connection without a result');
      reportCompaction(file, 'online (running store)', result);
      return 0;
    }
    return await compactHere(file, progress);
  } finally {
    progress.stop();
  }
}

async function compactHere(file: string, progress: { update(p: CompactProgress): void; stop(): void }): Promise<number> {
  const db = await open(file, { create: false });
  try {
    const r = await db.compact({ onProgress: (p) => progress.update(p) });
    progress.stop();
    reportCompaction(file, 'online', r);
  } finally {
    await db.close();
  }
  return 0;
}

class UsageError extends Error {}

let pipesGuarded = false;

/**
 * A reader that goes away early (`solifuge inspect FILE | head -1`) is no failure: the rest of
 * the output is dropped (the stream is destroyed, later writes are discarded) and the command
 * ends with the status it would have had. Any other error on the stream stays fatal.
 */
function quietOnEpipe(): void {
  if (pipesGuarded) return;
  pipesGuarded = true;
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPIPE') throw err;
    });
  }
}

export async function main(argv: string[]): Promise<number> {
  quietOnEpipe();
  const [cmd, ...rest] = argv;
  try {
    switch (cmd) {
      case 'inspect':
        return await cmdInspect(rest);
      case 'compact':
        return await cmdCompact(rest);
      case 'demo':
        await runDemo(rest[0]);
        return 0;
      default:
        throw new UsageError(cmd === undefined ? 'no command given' : `unknown command ${cmd}`);
    }
  } catch (err) {
    if (err instanceof UsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`solifuge: ${(err as Error).message}\n${USAGE}\n`);
      return 2;
    }
    process.stderr.write(`solifuge: ${(err as Error).message}\n`);
    return 1;
  }
}

const invokedDirectly = process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href;
if (invokedDirectly) {
  main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
