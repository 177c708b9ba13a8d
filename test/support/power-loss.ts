//! What a power cut could leave of one file: a recorder of the writes, truncations, hole punches
//! and syncs a store makes to it, and the images a crash at any moment may leave on the disk.
//!
//! A SIGKILL keeps everything written (the page cache survives the process); a power cut keeps
//! what an fdatasync covered, and of the rest any part, in any order. The model:
//! - an operation becomes durable once a sync of the file, through any of its descriptors,
//!   started after the operation had completed, has returned successfully;
//! - at a crash, each operation not yet durable (completed, or still in flight) may have reached
//!   the disk whole, not at all, or 512-byte sector by sector (a write; 4 KiB pages for a punched
//!   hole), independently of the others, applied in the order they completed;
//! - a file grown by writes not yet durable may come back shorter, cut at a sector.
//!
//! The recorder patches `node:fs` (the object every module's default import shares) and the
//! addon's sync and punch entry points for the descriptors of one path, which it follows through
//! opens of the path, opens of `/proc/self/fd/N` and the addon's dup. A direct write
//! (`syncDirect`, O_DIRECT | O_DSYNC) is in flight until its finish, then durable, its own bytes
//! only.
import fs from 'node:fs';
import { addon } from '../../src/native/addon.js';
import type { Prng } from '../../src/sim/prng.js';

type Op =
  | { k: 'write'; pos: number; bytes: Buffer; completed: number }
  | { k: 'truncate'; len: number; completed: number }
  | { k: 'punch'; pos: number; len: number; completed: number };

const SECTOR_BYTES = 512;
const PAGE_BYTES = 4096;
const IN_FLIGHT = Number.POSITIVE_INFINITY;

export class PowerLossRecorder {
  private durable: Image;
  /** Operations not known durable, in the order they completed (those in flight last). */
  private pending: Op[] = [];
  /** Completed operations so far: a sync that starts at `n` covers those completed before it. */
  private completions = 0;
  private readonly fds = new Set<number>();
  private readonly undo: Array<() => void> = [];
  /** fdatasyncStart's sync, until fdatasyncFinish (one thread: the JS one). */
  private startedAt: number | null = null;
  /** directWriteStart's write, until fdatasyncFinish. */
  private direct: Op | null = null;
  readonly counts = { writes: 0, truncates: 0, punches: 0, syncs: 0, directWrites: 0 };

  /** Called after every recorded operation and sync; a test takes its crash images from here. */
  onEvent: () => void = () => undefined;

  /** Starts from the file as it is, taken as durable (it was synced and closed). */
  constructor(readonly path: string) {
    this.durable = new Image(fs.readFileSync(path));
  }

  install(): void {
    const f = fs as unknown as Record<string, (...args: never[]) => unknown>;
    const patch = (obj: Record<string, unknown>, name: string, wrap: (orig: (...a: never[]) => unknown) => unknown): void => {
      const orig = obj[name] as (...a: never[]) => unknown;
      if (typeof orig !== 'function') return;
      obj[name] = wrap(orig.bind(obj));
      this.undo.push(() => void (obj[name] = orig));
    };
    const tracked = (fd: unknown): fd is number => typeof fd === 'number' && this.fds.has(fd);

    patch(f, 'openSync', (orig) => (p: fs.PathLike, ...rest: never[]) => {
      const fd = orig(p as never, ...rest) as number;
      const name = String(p);
      const proc = /^\/proc\/self\/fd\/(\d+)$/.exec(name);
      if (name === this.path || (proc !== null && this.fds.has(Number(proc[1])))) this.fds.add(fd);
      return fd;
    });
    patch(f, 'closeSync', (orig) => (fd: number) => {
      this.fds.delete(fd);
      return orig(fd as never);
    });
    patch(f, 'close', (orig) => (fd: number, cb: never) => {
      this.fds.delete(fd);
      return orig(fd as never, cb);
    });
    patch(f, 'writeSync', (orig) => (fd: number, buf: Buffer, off: number, len: number, pos: number) => {
      const n = orig(fd as never, buf as never, off as never, len as never, pos as never) as number;
      if (tracked(fd)) {
        if (!Buffer.isBuffer(buf) || typeof pos !== 'number') throw new Error('power-loss recorder: only positioned Buffer writes are modelled');
        this.complete({ k: 'write', pos, bytes: Buffer.from(buf.subarray(off, off + n)), completed: IN_FLIGHT });
      }
      return n;
    });
    patch(f, 'write', (orig) => (fd: number, buf: Buffer, off: number, len: number, pos: number, cb: (err: unknown, n: number) => void) => {
      if (!tracked(fd)) return orig(fd as never, buf as never, off as never, len as never, pos as never, cb as never);
      if (!Buffer.isBuffer(buf) || typeof pos !== 'number' || typeof cb !== 'function') throw new Error('power-loss recorder: only positioned Buffer writes are modelled');
      const op: Op = { k: 'write', pos, bytes: Buffer.from(buf.subarray(off, off + len)), completed: IN_FLIGHT };
      this.pending.push(op); // in flight: a crash may keep any part of it
      return orig(fd as never, buf as never, off as never, len as never, pos as never, ((err: unknown, n: number) => {
        this.pending.splice(this.pending.indexOf(op), 1);
        if (err === null && n > 0) this.complete({ ...op, bytes: op.bytes.subarray(0, n) });
        cb(err, n);
      }) as never);
    });
    patch(f, 'ftruncateSync', (orig) => (fd: number, len: number) => {
      const r = orig(fd as never, len as never);
      if (tracked(fd)) this.complete({ k: 'truncate', len: len ?? 0, completed: IN_FLIGHT });
      return r;
    });
    for (const name of ['fdatasyncSync', 'fsyncSync']) {
      patch(f, name, (orig) => (fd: number) => {
        const at = this.completions;
        const r = orig(fd as never);
        if (tracked(fd)) this.synced(at);
        return r;
      });
    }
    for (const name of ['fdatasync', 'fsync']) {
      patch(f, name, (orig) => (fd: number, cb: (err: unknown) => void) => {
        if (!tracked(fd)) return orig(fd as never, cb as never);
        const at = this.completions;
        return orig(fd as never, ((err: unknown) => {
          if (err === null || err === undefined) this.synced(at);
          cb(err);
        }) as never);
      });
    }

    if (addon === null) return;
    const a = addon as unknown as Record<string, unknown>;
    patch(a, 'dup', (orig) => (fd: number) => {
      const r = orig(fd as never) as number;
      if (tracked(fd) && r >= 0) this.fds.add(r);
      return r;
    });
    patch(a, 'punchHole', (orig) => (fd: number, pos: number, len: number) => {
      const rc = orig(fd as never, pos as never, len as never) as number;
      if (tracked(fd) && rc === 0) this.complete({ k: 'punch', pos, len, completed: IN_FLIGHT });
      return rc;
    });
    patch(a, 'fdatasyncPolled', (orig) => (fd: number, ...rest: never[]) => {
      const at = this.completions;
      const rc = orig(fd as never, ...rest) as number;
      if (tracked(fd) && rc === 0) this.synced(at);
      return rc;
    });
    patch(a, 'fdatasyncStart', (orig) => (fd: number, ...rest: never[]) => {
      const r = orig(fd as never, ...rest);
      this.startedAt = tracked(fd) ? this.completions : null;
      this.direct = null;
      return r;
    });
    patch(a, 'fdatasyncFinish', (orig) => () => {
      const rc = orig() as number;
      const at = this.startedAt;
      this.startedAt = null;
      if (at !== null && rc === 0) this.synced(at);
      const direct = this.direct;
      this.direct = null;
      if (direct !== null) {
        this.pending.splice(this.pending.indexOf(direct), 1);
        // O_DSYNC: done means durable, its own bytes only. -EINVAL: nothing was written. Another
        // failure: any part of it may have been.
        if (rc === 0) {
          this.counts.directWrites++;
          this.durable.apply(direct, () => true);
          this.onEvent();
        } else if (rc !== -22) {
          this.complete(direct);
        }
      }
      return rc;
    });
    // A pwrite through a descriptor opened O_DIRECT | O_DSYNC, padded with zeros to whole 4 KiB
    // blocks; fdatasyncFinish waits for it. In flight until then.
    patch(a, 'directWriteStart', (orig) => (fd: number, bytes: Uint8Array, pos: number, ...rest: never[]) => {
      const r = orig(fd as never, bytes as never, pos as never, ...rest);
      this.startedAt = null;
      if (tracked(fd)) {
        const padded = Buffer.alloc(Math.ceil(bytes.length / PAGE_BYTES) * PAGE_BYTES);
        padded.set(bytes);
        this.direct = { k: 'write', pos, bytes: padded, completed: IN_FLIGHT };
        this.pending.push(this.direct);
      }
      return r;
    });
  }

  uninstall(): void {
    while (this.undo.length > 0) this.undo.pop()!();
    this.fds.clear();
  }

  /** The file as a power cut now could leave it, one of many, chosen by `rng`. */
  crashImage(rng: Prng): Buffer {
    const image = this.durable.clone();
    const grownFrom = image.len;
    for (const op of this.pending) {
      const mode = rng.int(0, 2); // 0: none of it, 1: all of it, 2: piece by piece
      if (mode === 0) continue;
      image.apply(op, mode === 1 ? () => true : () => rng.chance(0.5));
    }
    if (image.len > grownFrom && rng.chance(0.25)) {
      const cut = grownFrom + rng.int(0, Math.floor((image.len - grownFrom) / SECTOR_BYTES)) * SECTOR_BYTES;
      image.resize(Math.min(cut, image.len));
    }
    return image.bytes();
  }

  /** What a crash now could still lose or keep, for a failure's message. */
  describe(): string {
    const ops = this.pending.map((o) =>
      o.k === 'write' ? `write ${o.pos}+${o.bytes.length}${o.completed === IN_FLIGHT ? ' (in flight)' : ''}` : o.k === 'truncate' ? `truncate ${o.len}` : `punch ${o.pos}+${o.len}`,
    );
    return `durable length ${this.durable.len}; not yet durable: ${ops.join(', ') || 'nothing'}`;
  }

  /** Operations a crash now could still lose or keep. */
  get pendingCount(): number {
    return this.pending.length;
  }

  private complete(op: Op): void {
    op.completed = this.completions++;
    // In completion order, ahead of those still in flight.
    let i = this.pending.length;
    while (i > 0 && this.pending[i - 1].completed === IN_FLIGHT) i--;
    this.pending.splice(i, 0, op);
    if (op.k === 'write') this.counts.writes++;
    else if (op.k === 'truncate') this.counts.truncates++;
    else this.counts.punches++;
    this.onEvent();
  }

  /** A sync that started when `at` operations had completed has returned: those are durable. */
  private synced(at: number): void {
    this.counts.syncs++;
    const keep: Op[] = [];
    for (const op of this.pending) {
      if (op.completed < at) this.durable.apply(op, () => true);
      else keep.push(op);
    }
    this.pending = keep;
    this.onEvent();
  }
}

/** A file's bytes in a buffer that grows by doubling (images are rebuilt at every sync). */
class Image {
  private buf: Buffer;
  constructor(
    from: Buffer,
    public len = from.length,
  ) {
    this.buf = Buffer.alloc(Math.max(4096, len * 2));
    from.copy(this.buf, 0, 0, len);
  }
  clone(): Image {
    return new Image(this.buf, this.len);
  }
  bytes(): Buffer {
    return Buffer.from(this.buf.subarray(0, this.len));
  }
  /** Sets the length; bytes past the old one read as zeros. */
  resize(len: number): void {
    if (len > this.buf.length) {
      const bigger = Buffer.alloc(Math.max(len, this.buf.length * 2));
      this.buf.copy(bigger, 0, 0, this.len);
      this.buf = bigger;
    } else if (len > this.len) {
      this.buf.fill(0, this.len, len);
    }
    this.len = len;
  }
  /** `op` applied to the units (sectors, or pages of a hole) that `take` accepts. */
  apply(op: Op, take: () => boolean): void {
    if (op.k === 'truncate') {
      if (take()) this.resize(op.len);
      return;
    }
    if (op.k === 'punch') {
      // KEEP_SIZE: zeros inside the file, nothing past its end.
      for (let at = op.pos; at < op.pos + op.len && at < this.len; ) {
        const next = Math.min(op.pos + op.len, (Math.floor(at / PAGE_BYTES) + 1) * PAGE_BYTES);
        if (take()) this.buf.fill(0, at, Math.min(next, this.len));
        at = next;
      }
      return;
    }
    const end = op.pos + op.bytes.length;
    for (let at = op.pos; at < end; ) {
      const next = Math.min(end, (Math.floor(at / SECTOR_BYTES) + 1) * SECTOR_BYTES);
      if (take()) {
        if (next > this.len) this.resize(next);
        op.bytes.copy(this.buf, at, at - op.pos, next - op.pos);
      }
      at = next;
    }
  }
}
