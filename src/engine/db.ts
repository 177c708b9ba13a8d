//! The embedded store's public API: `open(path)` → `Db`.
//!
//! Reads are synchronous against the last *durable* commit (or a pinned snapshot). Writes are
//! queued and group-committed: everything issued in one event-loop turn becomes one slab, one
//! append and (unless `durable: false`) one fdatasync; the promises settle after that. One batch
//! is in flight at a time, so while a batch syncs the next one gathers. Transactions run in the
//! batch, in order, against the tree as the batch has left it, and see their own writes.
//! After a failed append or fdatasync the tail of the file is unknown, so the store turns
//! read-only (IoFailedError) until it is reopened, when recovery decides what survived.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { threadId } from 'node:worker_threads';
import util from 'node:util';
import { Buffer } from 'node:buffer';
import { crc32c } from '../wasm/crc32c.js';
import { readNode } from './cache.js';
import type { CommitRecord, WriteValue } from './codec.js';
import { readEntry } from './entry.js';
import {
  AssertionError, BadArgumentError, ClosedError, CommitTooLargeError, CorruptionError, IoFailedError, KeyTooLargeError, SolifugeError, ValueTooLargeError, assert,
} from './errors.js';
import {
  DATA_START_POS, ENTRY_HEADER_BYTES, FORMAT_VERSION, Kind, SUPERBLOCK_A_POS, SUPERBLOCK_B_POS, encodeSuperblock, type Superblock,
} from './format.js';
import { copyOf, inlineValueBytes, toBinKey, toValueBuffer, type BinKey, type KeyInput, type ValueInput } from './keys.js';
import { FileLog, syncDirectory } from './log-file.js';
import { DiskRef, T, ValueRef, type Child, type LeafValue, type TreeNode } from './node.js';
import { recover, replayAfterCheckpoint } from './recovery.js';
import { BatchWriter } from './batch-writer.js';
import { CLOSED_TREE, EMPTY_ROOT, StoreTree, TreeRangeCursor } from './store-tree.js';
import type { BuiltTreeSlab } from './tree-slab.js';
import type { TreeRoot } from './wasm-tree-cursor.js';
import { WasmAllocationError } from '../wasm/module.js';
import { PUNCH_STEP_BYTES, type CompactOptions, type CompactProgress, type CompactResult, type CopyCursor } from './compaction.js';
import { addon } from '../native/addon.js';
import { completionCpuOfFile } from '../native/completion-cpu.js';
import { closeControl, listenControl } from './control.js';
import { ValueVerifier, duplicateFd, sendSource, type SendValueOptions, type SendValueResult, type ValueSource } from './get-with.js';
import type net from 'node:net';
import { actionLogBytes, applyActions, deletePrefixIn, lastPerKey, type BatchAction } from './actions.js';
import { Snapshot, Transaction, entryIterator, keyIterator, toBounds, toByteBounds } from './views.js';
import { checkStore, type CheckReport } from './check.js';
import {
  DIRTY_OVER_INTERVAL_MAX, dirtyRegionBytes, nodeBodyBytesMax, resolveOptions, type OpenOptions, type RangeOptions, type StoreOptions,
  type TransactionOptions,
} from './options.js';

export { DEFAULTS } from './options.js';
export type { OpenOptions, RangeOptions, TransactionOptions } from './options.js';

/** A checkpoint is also due once this share of the changed nodes' region is in use (checkpointDue). */
const DIRTY_REGION_SHARE_MAX = 0.6;
/**
 * A batch starts only with room in the region for what recent batches took (Db.batchRegionBytes):
 * beyond this share of it in use with that added, a checkpoint is written first.
 */
const DIRTY_REGION_FILL_MAX = 0.9;
/** What one batch weighs in Db.batchRegionBytes against the batches before it. */
const BATCH_REGION_DECAY = 0.99;

/**
 * Checkpoints with at least `slicedCheckpointBytesMin` changed-node bytes (estimated) are encoded
 * and appended in slices of about `checkpointSliceMs`, with a turn of the event loop between
 * slices: one of 565k changed keys held the event loop for 1.9–4.0 s in one piece (bench/RESULTS.md
 * rounds 11, 12), long enough to miss timers, sockets and a cluster's lease renewals. Writes wait
 * for it either way; reads, timers and I/O go on. Smaller ones (a sorted load's, every commit)
 * stay in one piece. A slice's bytes come from its time at about this rate (the encoder measured
 * ~0.6 GB/s, bench/RESULTS.md round 26; an append to the page cache about as fast), and at least
 * SLICE_BYTES_MIN. The switch to the written nodes after the append runs in slices too (330 ms
 * in one piece after a 1M-key random load, bench/RESULTS.md round 27): ~120 MB in those 330 ms,
 * about half the encoder's rate, so its slices get half the bytes.
 */
const ENCODE_BYTES_PER_MS = 600 * 1024;
const SWITCH_BYTES_PER_MS = 300 * 1024;
const SLICE_BYTES_MIN = 64 * 1024;
/**
 * A promise's outcome as data: started early and awaited later, a rejection must not count as
 * unhandled in between (Node would end the process).
 */
type Settled = { ok: true } | { ok: false; error: unknown };

/**
 * A commit failed before its publish and left nothing behind (its appended record erased): the
 * batch's jobs fail with `cause`, and the store goes on writing.
 */
class NothingWrittenError extends Error {
  constructor(override readonly cause: unknown) {
    super('nothing written');
  }
}

/**
 * Whether a batch refused before anything of it was written, for being too big for one commit
 * (COMMIT_TOO_LARGE: a slab past its limits, or the changed nodes' region full), is made again
 * in halves: when it holds more than one job and none of them runs the caller's code. Sets and
 * deletes issued together are separate writes, each answered when its commit is durable, so a
 * burst of them is never refused for its size as a whole (a burst of 400,000 `db.set` calls into
 * a 64 MiB region was, every one). A transaction runs its callback once, so a batch holding one
 * fails as before, and the caller retries or splits it.
 */
function splitWhenTooLarge(jobs: readonly Job[], err: unknown): boolean {
  const cause = err instanceof NothingWrittenError ? err.cause : err;
  return jobs.length > 1 && cause instanceof SolifugeError && cause.code === 'COMMIT_TOO_LARGE' &&
    jobs.every((j) => j.k === 'set' || j.k === 'del' || j.k === 'delPrefix');
}

function settled(p: Promise<void>): Promise<Settled> {
  return p.then(
    () => ({ ok: true }) as const,
    (error: unknown) => ({ ok: false, error }) as const,
  );
}

function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

interface Published {
  /** The published tree; the store holds one reference on it while it is dirty. */
  root: TreeRoot;
  count: number;
  tag: number | undefined;
  commit: CommitRecord | null;
}

/**
 * A checkpoint of an earlier commit's tree (`base`, whose root it holds a reference on), written
 * while later batches commit (Db, startBackgroundCheckpoint). Its phases: 'waiting' (for the
 * writer, between batches), 'writing' (it holds the writer while it encodes, appends and switches
 * the tree to its written nodes).
 */
interface BackgroundCheckpoint {
  readonly base: Published & { commit: CommitRecord };
  phase: 'waiting' | 'writing';
  /** Set by a forced checkpoint or close() while it waits: it stops and writes nothing. */
  cancelled: boolean;
  /** Set once its append starts: from then on a failure leaves the file's state unknown. */
  appending: boolean;
  /** bytesSinceCheckpoint and the dirty baseline when it started, given back if it writes nothing. */
  readonly bytesBefore: number;
  readonly dirtyBaselineBefore: number;
  /** Settles once it is done, written or not (it never rejects). */
  done: Promise<void>;
}

type Job =
  | { k: 'set'; key: BinKey; val: WriteValue; resolve: (v: undefined) => void; reject: (e: unknown) => void }
  | { k: 'del'; key: BinKey; resolve: (v: boolean) => void; reject: (e: unknown) => void }
  | { k: 'delPrefix'; prefix: BinKey; resolve: (v: number) => void; reject: (e: unknown) => void }
  | {
      k: 'tx';
      fn: (tx: Transaction) => unknown;
      opts: TransactionOptions;
      resolve: (v: unknown) => void;
      reject: (e: unknown) => void;
    }
  | {
      k: 'compactCopy';
      boundary: number;
      cursor: CopyCursor;
      chunkBytes: number;
      checkpointEveryBytes: number;
      resolve: (v: CopyCursor) => void;
      reject: (e: unknown) => void;
    }
  | { k: 'compactSeal'; boundary: number; resolve: (v: undefined) => void; reject: (e: unknown) => void }
  | { k: 'checkpoint'; resolve: (v: undefined) => void; reject: (e: unknown) => void };

/** The read surface shared by Db, Snapshot and Transaction. */
export interface Reader {
  get(key: KeyInput): Buffer | undefined;
  exists(key: KeyInput): boolean;
  count(): number;
  range(opts?: RangeOptions): IterableIterator<[Buffer, Buffer]>;
  keys(opts?: RangeOptions): IterableIterator<Buffer>;
}

export class Db implements Reader {
  private published: Published;
  private queue: Job[] = [];
  /** Halves of batches refused as too big (splitWhenTooLarge), each the next batch, before the queue's. */
  private readonly halves: Job[][] = [];
  private scheduled = false;
  private running: Promise<void> | null = null;
  private failed: SolifugeError | null = null;
  private closed = false;
  /**
   * In-place batches. A batch of writes changes the published tree's own dirty nodes in place
   * instead of copying them where nothing else holds them (a snapshot, a cursor, a savepoint, a
   * background checkpoint: reference counts, asm/wtree.ts), journaled (wasm-tree-writer.ts).
   * While a batch has changes in place (`inPlaceWriter`), every read of the published tree seals
   * it first (readRoot), so no reader ever sees a change before it is durable and published.
   */
  private inPlaceWriter: BatchWriter | null = null;
  /** getWith calls (sendValue's among them) whose handlers have not settled: close() waits for them. */
  private readonly handlersRunning = new Set<Promise<unknown>>();
  /**
   * The tree in WebAssembly memory: the node cache, the changed nodes, the slab plans
   * (store-tree.ts). CLOSED_TREE once closed, so that a closed Db object holds none of the
   * instance's memory.
   */
  private tree: StoreTree;
  private sb: Superblock;
  private sbPos: number;
  /** The background checkpoint running, if any (startBackgroundCheckpoint). */
  private background: BackgroundCheckpoint | null = null;
  private readonly pins = new Map<number, number>(); // commit seq -> pinned snapshots
  private bytesSinceCheckpoint = 0;
  /**
   * The region recent batches took (their peak use over their use at start, all of it for one
   * that did not fit), a maximum that decays by BATCH_REGION_DECAY a batch: makeRoomForBatch
   * keeps that much room before the next. Without it, a store whose batches each need more than
   * the 1 - DIRTY_REGION_SHARE_MAX left above the bound (big scattered batches into a big tree)
   * failed each such batch with the region full, checkpointing never (bench/RESULTS.md round 29).
   */
  private batchRegionBytes = 0;
  /**
   * The changed nodes' estimated bytes (the tree's total, StoreTree.dirtyEstimateBytes) that do
   * not count as changed since the last checkpoint: those other trees (snapshots, a background
   * checkpoint's base) still hold. dirtyBytesSinceCheckpoint() is the total above it.
   */
  private dirtyBaseline = 0;
  private compacting = false;
  /** Set by close(): a compaction still copying or waiting for snapshots stops (before its seal). */
  private compactionCancelled = false;
  private control: net.Server | null = null;
  /** Settles when the running compaction ends; close() waits for it (it punches through our fd). */
  private compactionRun: Promise<void> | null = null;
  /** In-use bytes right after the last compaction (or at open), for the auto-compaction policy. */
  private lastCompactedBytes = 0;
  private readonly verifier: ValueVerifier;
  /** Commits replayed on open (those after the last checkpoint). */
  readonly replayedSlabs: number = 0;
  /**
   * Counters since open. `inPlaceChanges`: slots changed in place by published batches (see
   * "In-place batches"); `inPlaceSeals`: batches whose changes in place had to be sealed off
   * for a reader of the published tree or for a checkpoint; `slicedCheckpoints`: checkpoints
   * that ran in slices (slicedCheckpointBytesMin), `switchSlices`: the turns their switches to
   * the written nodes paused for (background checkpoints' among them); `inlineSyncs`: syncs made
   * before the JS thread went on (syncInlineBytesMax), `directSyncs`: those that were a direct
   * write (syncDirect); `zerosPrepared`: times zeros were written and synced ahead of the log for the
   * next big durable commits (FileLog.prepareAhead); `backgroundCheckpoints`: checkpoints written
   * beside the writes (backgroundCheckpoints; also counted in `checkpoints`), `backgroundCommits`:
   * commits published while one was running, `backgroundDropped`: ones that wrote nothing (a
   * forced checkpoint or close() came first, or building failed); `batchesSplit`: batches of
   * writes refused as too big for one commit and made again in halves (splitWhenTooLarge);
   * `checkpointsOnZeros`: big checkpoints whose slab went over zeros written ahead of it while
   * it was built (zeroAheadForCheckpoint); `regionTrims`, `regionBytesTrimmed`: times an idle
   * store gave its emptied region of changed nodes back to the kernel, and the bytes it had carved
   * (trimIdle; whole pages inside them are discarded); `slabBytesTrimmed`: the bytes of the slab
   * builder's buffers given back at the same times, trims or not.
   */
  readonly stats = {
    commits: 0, syncs: 0, inlineSyncs: 0, directSyncs: 0, checkpoints: 0, slicedCheckpoints: 0, switchSlices: 0, bytesAppended: 0, autoCompactions: 0, inPlaceChanges: 0,
    inPlaceSeals: 0, zerosPrepared: 0, backgroundCheckpoints: 0, backgroundCommits: 0, backgroundDropped: 0, batchesSplit: 0,
    checkpointsOnZeros: 0, regionTrims: 0, regionBytesTrimmed: 0, slabBytesTrimmed: 0,
  };

  private constructor(
    readonly path: string,
    private readonly log: FileLog,
    readonly options: StoreOptions,
    recovered: { sb: Superblock; sbPos: number; lastCommit: CommitRecord | null },
    /** Bytes cut from the end of the file by recovery. */
    readonly tornBytesCut: number,
  ) {
    this.sb = recovered.sb;
    this.sbPos = recovered.sbPos;
    this.verifier = new ValueVerifier(log);
    this.tree = new StoreTree(log, {
      cacheBytes: options.cacheBytes,
      dirtyBytes: dirtyRegionBytes(options.checkpointIntervalBytes),
      hugePages: options.hugePages,
      nodeBytesMax: options.nodeBytesMax,
      nodeBodyBytesMax: nodeBodyBytesMax(options),
    });
    const c = recovered.lastCommit;
    let root: TreeRoot = EMPTY_ROOT;
    let count = 0;
    if (c !== null) {
      // The last commit's tree = its checkpoint + the actions of the commits after it.
      const checkpointed: TreeRoot = c.rootKind === 0 ? EMPTY_ROOT : { addr: 0, pos: c.rootPos, len: c.rootLen };
      const w = new BatchWriter(this.tree, checkpointed, c.treeKeyCount, false);
      try {
        const replayed = replayAfterCheckpoint(log, c, (actions) => applyActions(w, actions));
        this.replayedSlabs = replayed.slabs;
        // (A version-2 commit records no count: its sets changed the tree after it was written.)
        if (c.keyCount !== null && w.count !== c.keyCount) throw new CorruptionError(c.pos, `replay gives ${w.count} keys, the commit records ${c.keyCount}`);
        this.bytesSinceCheckpoint = replayed.logBytes;
      } catch (err) {
        w.abort();
        this.tree.dispose();
        throw err;
      }
      root = w.publish().root;
      count = w.count;
    }
    this.published = { root, count, tag: c?.tag, commit: c };
    this.lastCompactedBytes = log.end - this.sb.liveStart;
  }

  static async open(file: string, options: OpenOptions = {}): Promise<Db> {
    const opts = resolveOptions(options);
    const create = options.create ?? true;
    if (!fs.existsSync(file)) {
      if (!create || opts.readOnly) throw new BadArgumentError(`${file} does not exist`);
      initFile(file);
    }
    const log = FileLog.open(file, { readOnly: opts.readOnly });
    try {
      log.syncCpu = syncCpuFor(log, opts.syncCpu, opts.syncSpinUs);
      const r = recover(log, { repair: opts.repair });
      log.end = r.end;
      if (!opts.readOnly) {
        // Cut the torn tail, and make what recovery kept durable before anything follows it
        // (FileLog.durableEnd): a process that died may have left it in the page cache only.
        if (r.tornBytes > 0) log.truncate(r.end);
        log.syncNow();
      }
      const db = new Db(file, log, opts, r, opts.readOnly ? 0 : r.tornBytes);
      if (!opts.readOnly && db.sb.version < FORMAT_VERSION) {
        // Before this build writes a commit an older one cannot read (format.ts FORMAT_VERSION):
        // the same superblock again as this version, synced.
        try {
          db.rewriteSuperblock();
        } catch (err) {
          await db.close();
          throw err;
        }
      }
      if (opts.controlSocket && !opts.readOnly) {
        try {
          db.control = await listenControl(file, db);
        } catch (err) {
          await db.close();
          throw err;
        }
      }
      return db;
    } catch (err) {
      log.close();
      throw err;
    }
  }

  // --- reads ----------------------------------------------------------------------------------

  /** The published root, for a read: a batch's changes in place are sealed off first. */
  private readRoot(): TreeRoot {
    this.sealInPlace();
    return this.published.root;
  }

  /** Gives the published tree its own contents back, if a batch changed shared nodes in place. */
  private sealInPlace(): void {
    if (this.inPlaceWriter !== null && this.inPlaceWriter.seal()) this.stats.inPlaceSeals++;
  }

  get(key: KeyInput): Buffer | undefined {
    this.assertOpen();
    // One call into the WASM tree, whose inline values come back as fresh copies.
    const v = this.lookupIn(this.readRoot(), key);
    return v === undefined ? undefined : this.materialize(v);
  }

  exists(key: KeyInput): boolean {
    this.assertOpen();
    return this.lookupIn(this.readRoot(), key) !== undefined;
  }

  count(): number {
    this.assertOpen(); // (as get and exists: a closed store answers nothing)
    return this.published.count;
  }

  /**
   * A short description for console.log and test-failure messages: the store holds views over its
   * WebAssembly memory (hundreds of MiB), which a generic formatter would print byte by byte.
   */
  toJSON(): { path: string; keys: number; closed: boolean } {
    return { path: this.path, keys: this.published.count, closed: this.closed };
  }

  [util.inspect.custom](): string {
    return `Db ${JSON.stringify(this.toJSON())}`;
  }

  /** Tag of the last durable commit that carried one (see TransactionOptions.tag). */
  get lastTag(): number | undefined {
    return this.published.tag;
  }

  /** The CPU the addon's sync thread serves this store's small durable commits on, or null (OpenOptions.syncCpu). */
  get syncCpu(): number | null {
    return this.log.syncCpu >= 0 ? this.log.syncCpu : null;
  }

  range(opts: RangeOptions = {}): IterableIterator<[Buffer, Buffer]> {
    this.assertOpen();
    // The iterator pins the commit it reads (online compaction waits for it) until it finishes,
    // breaks or is garbage-collected unfinished.
    const snap = this.snapshot();
    let it: IterableIterator<[Buffer, Buffer]>;
    try {
      it = entryIterator(this, this.cursor(snap.rootForGetWith, opts), opts.limit, () => snap.assertUsable(), () => snap.release());
    } catch (err) {
      snap.release(); // bad options: no iterator will ever release it (online compaction waits for pins)
      throw err;
    }
    iteratorPins.register(it, snap);
    return it;
  }

  keys(opts: RangeOptions = {}): IterableIterator<Buffer> {
    this.assertOpen();
    const snap = this.snapshot();
    let it: IterableIterator<Buffer>;
    try {
      it = keyIterator(this.cursor(snap.rootForGetWith, opts), opts.limit, () => snap.assertUsable(), () => snap.release());
    } catch (err) {
      snap.release();
      throw err;
    }
    iteratorPins.register(it, snap);
    return it;
  }

  /** Pins the current commit: reads through the snapshot see it until `release()`. */
  snapshot(): Snapshot {
    this.assertOpen();
    const root = this.readRoot();
    // It holds this tree: later batches copy its nodes instead of changing them (reference counts).
    this.tree.retain(root);
    const p = this.published;
    const seq = p.commit?.seq ?? 0;
    this.pins.set(seq, (this.pins.get(seq) ?? 0) + 1);
    return new Snapshot(this, { ...root }, p.count, p.tag, seq);
  }

  /** @internal A snapshot's release: its commit unpinned, its tree let go (unless the store closed, taking the tree with it). */
  unpin(seq: number, root: TreeRoot): void {
    const n = (this.pins.get(seq) ?? 0) - 1;
    if (n <= 0) this.pins.delete(seq);
    else this.pins.set(seq, n);
    if (this.tree !== CLOSED_TREE) this.tree.release(root); // (a closed store took the tree with it)
  }

  /** Number of snapshots currently pinned. */
  get pinnedSnapshots(): number {
    let n = 0;
    for (const c of this.pins.values()) n += c;
    return n;
  }

  /** @internal A cursor over `root`, which the caller holds while using it. */
  cursor(root: TreeRoot, opts: RangeOptions): TreeRangeCursor {
    return new TreeRangeCursor(this.tree, root, toByteBounds(toBounds(opts)));
  }

  /**
   * @internal Copies a stored value out (reading and verifying its entry when not inline). A
   * Buffer is a copy the WASM cache already made (wasm-tree-writer.ts findIn), handed over as it is.
   */
  materialize(v: LeafValue | Buffer): Buffer {
    if (typeof v === 'string') return inlineValueBytes(v);
    if (!(v instanceof ValueRef)) return v;
    if (v.bytes !== undefined) return copyOf(v.bytes);
    if (this.verifier.isVerified(v.pos, v.len)) {
      // Checked once since open (get-with.ts): read the bytes alone, no second checksum pass.
      return this.log.read(v.pos + ENTRY_HEADER_BYTES, v.len);
    }
    const e = readEntry(this.log, v.pos, ENTRY_HEADER_BYTES + v.len, Kind.Value);
    this.verifier.markVerified(v.pos, v.len);
    return e.buf.subarray(ENTRY_HEADER_BYTES);
  }

  /**
   * Hands the value of `key` to `handler` as NotFound, Value or Location (see get-with.ts); the
   * read's commit stays pinned and the Location's fd open until the handler's promise settles.
   */
  getWith<R>(key: KeyInput, handler: (src: ValueSource) => R | Promise<R>): Promise<R> {
    this.assertOpen();
    // close() waits for these: a handler's transfer reads the file through its own descriptor
    // after the store let go of its pin, and online compaction in the next process to open the
    // file could punch out the bytes it is still sending (the peer got zeros, the send resolved).
    const p = this.getWithPinned(key, handler);
    this.handlersRunning.add(p);
    const forget = () => this.handlersRunning.delete(p);
    p.then(forget, forget);
    return p;
  }

  private async getWithPinned<R>(key: KeyInput, handler: (src: ValueSource) => R | Promise<R>): Promise<R> {
    const snap = this.snapshot();
    let fd = -1;
    try {
      const v = this.lookupIn(snap.rootForGetWith, key);
      let src: ValueSource;
      if (v === undefined) src = { kind: 'notFound' };
      else if (!(v instanceof ValueRef) || v.bytes !== undefined) src = { kind: 'value', value: this.materialize(v) };
      else {
        this.verifier.verify(v.pos, v.len);
        // Written directly moments ago, its blocks are not in the page cache: a send from the
        // file would wait for the disk, a copy from the recent window does not.
        const fresh = this.log.readRecent(v.pos + ENTRY_HEADER_BYTES, v.len);
        if (fresh !== undefined) src = { kind: 'value', value: fresh };
        else {
          fd = duplicateFd(this.log);
          src = { kind: 'location', fd, offset: v.pos + ENTRY_HEADER_BYTES, length: v.len };
        }
      }
      return await handler(src);
    } finally {
      if (fd >= 0) fs.closeSync(fd);
      snap.release();
    }
  }

  /**
   * Writes the value of `key` to a socket (by default after a u32 LE length), zero-copy when the
   * native addon and a plain TCP socket allow. Nothing else may write to the socket until it settles.
   */
  sendValue(key: KeyInput, socket: net.Socket, opts: SendValueOptions = {}): Promise<SendValueResult> {
    return this.getWith(key, (src) => sendSource(socket, src, opts));
  }

  /** @internal The store's tree (for transactions: deletePrefix). */
  get storeTree(): StoreTree {
    return this.tree;
  }

  /** @internal */
  lookupIn(root: TreeRoot, key: KeyInput): Buffer | ValueRef | undefined {
    return this.tree.get(root, key instanceof Uint8Array ? key : toBinKey(key));
  }

  // --- writes ---------------------------------------------------------------------------------

  set(key: KeyInput, value: ValueInput): Promise<void> {
    return this.submit(() => ({ k: 'set', key: this.checkKey(key), val: this.makeValue(value), resolve: noop, reject: noop }));
  }

  delete(key: KeyInput): Promise<boolean> {
    return this.submit(() => ({ k: 'del', key: this.checkKey(key), resolve: noop, reject: noop }));
  }

  /** Arakoon's MULTI_GET_OPTION: the values in the keys' order, undefined for missing keys. */
  getMany(keys: readonly KeyInput[]): Array<Buffer | undefined> {
    return keys.map((k) => this.get(k));
  }

  /** Arakoon's TEST_AND_SET as its own transaction; see Transaction.testAndSet. */
  testAndSet(key: KeyInput, expected: ValueInput | null, wanted: ValueInput | null): Promise<Buffer | undefined> {
    return this.transaction((tx) => tx.testAndSet(key, expected, wanted));
  }

  /** Arakoon's REPLACE as its own transaction: resolves with the previous value. */
  replace(key: KeyInput, wanted: ValueInput | null): Promise<Buffer | undefined> {
    return this.transaction((tx) => tx.replace(key, wanted));
  }

  /** Arakoon's CONFIRM: like set, but writes nothing when the stored value is already equal. */
  confirm(key: KeyInput, value: ValueInput): Promise<void> {
    return this.transaction((tx) => tx.confirm(key, value));
  }

  /** Deletes every key starting with `prefix`; resolves with how many were deleted. */
  deletePrefix(prefix: KeyInput): Promise<number> {
    return this.submit(() => ({ k: 'delPrefix', prefix: this.checkKey(prefix), resolve: noop, reject: noop }));
  }

  /**
   * Runs `fn` as one atomic unit: it commits with the batch it runs in, or, if it throws (or its
   * promise rejects), none of its writes happen and the returned promise rejects with that error.
   * Inside, use only `tx` for this store (awaiting `db.set` inside would wait for a later batch).
   */
  transaction<R>(fn: (tx: Transaction) => R | Promise<R>, opts: TransactionOptions = {}): Promise<R> {
    return this.submit(() => {
      if (opts.tag !== undefined && !(Number.isSafeInteger(opts.tag) && opts.tag >= 0)) {
        throw new BadArgumentError('tag must be a non-negative safe integer');
      }
      return { k: 'tx', fn: fn as (tx: Transaction) => unknown, opts, resolve: noop, reject: noop };
    });
  }

  /** Validates a write and queues it; bad input rejects the promise and queues nothing. */
  private submit<R>(make: () => Job): Promise<R> {
    let job: Job;
    try {
      this.assertWritable();
      job = make();
    } catch (err) {
      return Promise.reject(err);
    }
    return this.enqueue<R>(job);
  }

  private enqueue<R>(job: Job): Promise<R> {
    const p = new Promise<R>((resolve, reject) => {
      (job as { resolve: (v: unknown) => void }).resolve = resolve as (v: unknown) => void;
      job.reject = reject;
    });
    this.queue.push(job);
    this.scheduleBatch();
    return p;
  }

  /** Starts the queue's next batch on a later turn, unless one runs or is already due to start. */
  private scheduleBatch(): void {
    if (this.scheduled || this.running !== null || !this.writesWaiting) return;
    this.scheduled = true;
    setImmediate(() => this.startBatch());
  }

  /** Whether jobs wait for a batch (the queue's, or halves of a refused one). */
  private get writesWaiting(): boolean {
    return this.queue.length > 0 || this.halves.length > 0;
  }

  private startBatch(): void {
    this.scheduled = false;
    // One batch at a time. close() starts the queue's batch itself, and a start scheduled before
    // that still fires: it must not run a second batch beside the first (its commit would build
    // on the same published tree, and one of the two would be lost). The running batch's end
    // schedules the next.
    if (this.running !== null || !this.writesWaiting) return;
    this.running = this.runBatch().finally(() => {
      this.running = null;
      this.scheduleBatch();
    });
  }

  /** @internal */
  checkKey(key: KeyInput): BinKey {
    const bin = toBinKey(key);
    if (bin.length > this.options.maxKeyBytes) throw new KeyTooLargeError(bin.length, this.options.maxKeyBytes);
    return bin;
  }

  /**
   * @internal Copies the caller's bytes (they may change them after the call returns): inline ones
   * as a Buffer, which goes into the tree and the log as it is (no string in between: round 27).
   */
  makeValue(value: ValueInput): WriteValue {
    const buf = toValueBuffer(value);
    if (buf.length > this.options.maxValueBytes) throw new ValueTooLargeError(buf.length, this.options.maxValueBytes);
    if (buf.length <= this.options.inlineValueBytesMax) return Buffer.from(buf);
    const copy = Buffer.allocUnsafeSlow(buf.length);
    buf.copy(copy);
    return new ValueRef(-1, buf.length, copy);
  }

  /**
   * @internal A transaction's value (Transaction.set): inline bytes as the caller gave them, for
   * BatchWriter.setLater to copy into the instance at once (staged-sets.ts); others as makeValue.
   */
  txValue(value: ValueInput): WriteValue {
    const o = this.options;
    if (value instanceof Uint8Array && value.length <= o.inlineValueBytesMax && value.length <= o.maxValueBytes) return value;
    return this.makeValue(value);
  }

  private async runBatch(): Promise<void> {
    // The halves of a batch refused as too big go first, each a batch of its own, in order.
    let jobs = this.halves.shift();
    if (jobs === undefined) {
      jobs = this.queue;
      this.queue = [];
    }
    if (this.rejectedAsStopped(jobs)) return;
    // A batch that writes the tree itself (a forced checkpoint, compaction) waits for a background
    // checkpoint past its append, or stops one still staging: two must not give nodes positions.
    if (this.background !== null && jobs.some((j) => j.k === 'checkpoint' || j.k === 'compactCopy' || j.k === 'compactSeal')) {
      await this.settleBackground();
      if (this.rejectedAsStopped(jobs)) return;
    }
    try {
      await this.makeRoomForBatch();
      this.tree.takeDirtyRegionPeakBytes(); // (counts from here)
    } catch (err) {
      // Its checkpoint failed: before its append, nothing was written (the batch fails, the
      // store goes on); from the append on, the file's state is unknown, as after a failed commit.
      const e = err instanceof SolifugeError ? err : new IoFailedError(String(err), err);
      if (!(err instanceof CommitTooLargeError)) this.failed ??= e;
      for (const j of jobs) j.reject(e);
      return;
    }
    if (this.rejectedAsStopped(jobs)) return;
    const base = this.published;
    // Compaction and checkpoint jobs walk and rewrite the tree: their batches copy, as always.
    const inPlace = jobs.every((j) => j.k === 'set' || j.k === 'del' || j.k === 'delPrefix' || j.k === 'tx');
    const w = new BatchWriter(this.tree, base.root, base.count, inPlace);
    if (inPlace) this.inPlaceWriter = w;
    const regionBefore = this.tree.dirtyRegionBytesInUse;
    let split = false;
    try {
      await this.applyAndCommit(jobs, base, w);
    } catch (err) {
      // A change that could not be made before anything was written: a node on its path failed
      // its checksum (CorruptionError) or could not be read, or the batch was too big. The batch
      // publishes nothing, every job in it fails with that error (settled ones stay as they are),
      // and the store goes on: the file is as it was, and other keys may still be read and
      // written. Failures from the append on were handled in applyAndCommit: the store stops
      // writing, unless the commit erased what it appended (NothingWrittenError: a held-back set
      // that could not be made). A batch of writes alone too big is made again in halves.
      if (splitWhenTooLarge(jobs, err)) split = true;
      else for (const j of jobs) j.reject(err);
    } finally {
      // Published (commit() ended it) or not: a batch that published nothing (a failed commit, or
      // only aborted transactions) drops its tree, and the published one gets back what it changed
      // in place.
      if (!w.ended) w.abort();
      if (this.inPlaceWriter === w) this.inPlaceWriter = null;
      const took = this.tree.takeDirtyRegionPeakBytes() - regionBefore;
      this.batchRegionBytes = Math.max(this.batchRegionBytes * BATCH_REGION_DECAY, took);
    }
    if (split) {
      // Nothing of it was written, and its tree is dropped: each half is a batch of its own, the
      // first half's commit before the second's, before any later write. Each starts with room in
      // the region (this one's refusal counted as the whole of it: a checkpoint first), and a
      // background checkpoint may take the writer between them.
      this.stats.batchesSplit++;
      for (const j of jobs) if (j.k === 'set' && j.val instanceof ValueRef) j.val.pos = -1; // its pending id was forgotten
      const half = jobs.length >> 1;
      this.halves.unshift(jobs.slice(0, half), jobs.slice(half));
    }
  }

  /** If the store stopped writing (a failure, close()), the jobs fail with that: true. */
  private rejectedAsStopped(jobs: Job[]): boolean {
    if (this.failed === null && !this.closed) return false;
    const err = this.failed ?? new ClosedError();
    for (const j of jobs) j.reject(err);
    return true;
  }

  private async applyAndCommit(jobs: Job[], base: Published, w: BatchWriter): Promise<void> {
    const actions: BatchAction[] = [];
    let forceCheckpoint = false;
    let tag = base.tag;
    let sync = false;
    const results: unknown[] = new Array(jobs.length);
    const errors: unknown[] = new Array(jobs.length);
    for (let i = 0; i < jobs.length; i++) {
      const job = jobs[i];
      switch (job.k) {
        case 'set':
          // Made while the commit syncs (see commit); the action names the value's staged copy.
          actions.push({ key: job.key, val: w.setLater(job.key, job.val) });
          sync ||= this.options.durable;
          break;
        case 'del':
          results[i] = w.delete(job.key);
          if (results[i] === true) actions.push({ key: job.key, val: null });
          sync ||= this.options.durable;
          break;
        case 'delPrefix':
          results[i] = deletePrefixIn(this.tree, w, job.prefix, actions);
          sync ||= this.options.durable;
          break;
        case 'tx': {
          const savepoint = w.savepoint();
          const mark = actions.length;
          const tx = new Transaction(this, w, actions);
          try {
            results[i] = await job.fn(tx);
            // Its sets are held back (BatchWriter.setLater) until the commit only when it is the
            // batch's one job: a set that cannot be made (its path fails a checksum) then fails
            // the batch, which is this transaction alone. Beside other jobs they are made here,
            // where a failure aborts this transaction only, as a throw inside it does.
            if (jobs.length > 1) w.applyLater();
            w.throwLaterFailure();
            w.drop(savepoint);
            if (job.opts.tag !== undefined) tag = job.opts.tag;
            sync ||= job.opts.durable ?? this.options.durable;
          } catch (err) {
            w.restore(savepoint);
            actions.length = mark;
            errors[i] = err ?? new Error('transaction aborted');
          } finally {
            tx.end();
          }
          break;
        }
        case 'compactCopy':
          w.applyLater(); // copyForward reads the writer's root
          try {
            const next = this.copyForward(w, job.boundary, job.cursor, job.chunkBytes);
            // Copies stay in memory (dirty) between chunks; a checkpoint writes them every few
            // MiB and after the last chunk, so small chunks keep writer pauses short.
            if (next.done || next.bytesSinceCheckpoint >= job.checkpointEveryBytes) {
              forceCheckpoint = true;
              next.bytesSinceCheckpoint = 0;
            }
            results[i] = next;
          } catch (err) {
            errors[i] = err;
          }
          break;
        case 'checkpoint':
          forceCheckpoint = true;
          break;
        case 'compactSeal':
          w.applyLater();
          try {
            await this.sealCompaction(job.boundary);
          } catch (err) {
            // A failed fdatasync leaves the file's state unknown (fsyncgate): read-only until
            // reopened, as after a failed commit.
            this.failed ??= err instanceof SolifugeError ? err : new IoFailedError(String(err), err);
            errors[i] = this.failed;
          }
          break;
        default: {
          const never: never = job;
          throw new Error(`unknown job ${String(never)}`);
        }
      }
    }
    // Every held-back set logs an action, and an aborted transaction drops both.
    assert(actions.length > 0 || w.setsLater === 0, 'sets held back without actions');
    if (actions.length === 0 && tag === base.tag && !forceCheckpoint && !sameRoot(w.root, base.root)) {
      // Only compaction copies changed the tree: same contents, same commit, nothing to write
      // yet (the next checkpoint writes the copies). Publish it so the next chunk builds on it.
      assert(w.count === base.count && this.compacting, 'a tree change without actions outside compaction');
      this.publishTree(w);
    }
    if (actions.length > 0 || tag !== base.tag || forceCheckpoint) {
      try {
        await this.commit(w, lastPerKey(actions), tag, sync, forceCheckpoint);
      } catch (err) {
        if (splitWhenTooLarge(jobs, err)) throw err; // nothing written: runBatch makes it again in halves
        if (err instanceof CommitTooLargeError) {
          for (const j of jobs) j.reject(err); // nothing written (runBatch undoes the changes in place)
          return;
        }
        if (err instanceof NothingWrittenError) {
          for (const j of jobs) j.reject(err.cause); // as above
          return;
        }
        // (runBatch undoes the batch's changes in place; a reader before that seals them off.)
        const e = err instanceof SolifugeError ? err : new IoFailedError(String(err), err);
        this.failed = e;
        for (const j of jobs) j.reject(e);
        return;
      }
    } else if (sync && this.log.hasUnsyncedWrites) {
      // Nothing to write, but a durable answer (a confirm of an equal value, a failed
      // testAndSet, a delete of a missing key, a read-only transaction) may rest on commits made
      // with durable: false: they are synced before it is given.
      try {
        await this.log.sync();
        this.stats.syncs++;
      } catch (err) {
        const e = err instanceof SolifugeError ? err : new IoFailedError(String(err), err);
        this.failed = e; // fsyncgate: the file's state is unknown after a failed fdatasync
        for (const j of jobs) j.reject(e);
        return;
      }
    }
    for (let i = 0; i < jobs.length; i++) {
      if (errors[i] !== undefined) jobs[i].reject(errors[i]);
      else jobs[i].resolve(results[i] as never);
    }
  }

  /**
   * Writes one slab (the actions, and the tree's changed nodes when it is time to checkpoint),
   * syncs if asked, then publishes the new tree to readers: the batch writer's (`w`), or with w
   * null (close()'s last checkpoint) the published one.
   */
  private async commit(w: BatchWriter | null, actions: BatchAction[], tag: number | undefined, sync: boolean, forceCheckpoint: boolean): Promise<void> {
    const prev = this.published.commit;
    const start = this.log.end;
    // Sets the batch's writer held back (BatchWriter.setLater) are made after the append, while
    // the sync runs: the tree change of a small batch then costs no time of its own in the
    // commit's latency. The commit record cannot count the keys yet, and says so (codec.ts,
    // commit version 2); replay counts them.
    let checkpoint: boolean;
    try {
      // A batch past SET_LATER_MAX sets makes its last group now: its tree changes before the append.
      if (w !== null && w.changesFirst) w.applyLater();
      checkpoint = this.checkpointDue(actions, forceCheckpoint, w !== null && w.setsLater > 0 ? w : null);
    } catch (err) {
      // A held-back set met a node it could not read: nothing is written yet.
      throw new NothingWrittenError(err);
    }
    // A big checkpoint the store chose itself is written in the background, after this commit.
    const background = checkpoint && !forceCheckpoint && this.backgroundAllowed(actions);
    if (background) checkpoint = false;
    // A checkpoint writes nodes the published tree may share, which must not change in place
    // from their encode on: the batch's changes in place are sealed off first.
    if (checkpoint) this.sealInPlace();
    const later = w !== null && w.setsLater > 0 ? w : null;
    const held = later !== null;
    assert(!(held && checkpoint), 'sets held back in a checkpoint');
    const root = w !== null ? w.root : this.published.root;
    const count = w !== null ? w.count : this.published.count;
    const input = {
      actions, keyCount: held ? null : count, tag, prev, start, afterDurable: this.log.endDurable,
      checkpoint: checkpoint ? { root, keyCount: count } : null,
    };
    const sliced = checkpoint && this.dirtyBytesSinceCheckpoint() >= this.options.slicedCheckpointBytesMin;
    if (sliced) this.prefaultForCheckpoint();
    const zeroed = sliced ? this.zeroAheadForCheckpoint() : null;
    let slab: BuiltTreeSlab;
    try {
      // (A background checkpoint builds in the same builder, holding the writer while it does.)
      const slabs = this.tree.slabs;
      slab = sliced ? await slabs.buildSliced(input, this.sliceBytes, nextTurn) : slabs.build(input);
    } catch (err) {
      // Nothing is written yet: a batch too big to encode is refused, and the store goes on.
      if (err instanceof WasmAllocationError) throw new CommitTooLargeError(err.message, err);
      throw err;
    } finally {
      if (zeroed !== null) await zeroed;
    }
    // A superblock may only name data already durable, so it is written after a sync. Checkpoints
    // the store chose itself need no sync of their own (a lost one is replayed from the one
    // before); forced ones (db.checkpoint(), compaction, close) resolve once durable.
    const superblockDue = forceCheckpoint || slab.commit.pos + slab.commit.len - this.sb.dataEnd >= this.options.superblockIntervalBytes;
    const syncDue = sync || superblockDue;
    // Checkpoints of that size too: a sorted load's 1,000-key commits write their leaves (~122 KB),
    // and on the pool they took ~5% longer, the hop there and back (bench/RESULTS.md round 31).
    // Never a sliced one: its append awaits between slices.
    const syncInline = !sliced && slab.len <= this.options.syncInlineBytesMax;
    // A small commit's sync starts with its append, on the addon's sync thread (syncSpinUs), and
    // the steps up to the publish run while it does; this thread polls for it after them.
    // Nothing in between may await: another commit on this thread would start a second one.
    const syncInlineStarted = syncDue && syncInline;
    // Appended before the tree refers to anything by position: if the append fails, the slab's
    // positions are taken back (abandon) and the tree still holds everything in memory.
    try {
      if (sliced) await this.appendSliced(slab.bytes, slab.len);
      else if (syncInlineStarted) this.log.appendSynced(slab.bytes(), slab.len, this.options.syncSpinUs, this.options.syncDirect);
      else this.log.append(slab.bytes(), slab.len);
    } catch (err) {
      slab.abandon();
      throw err;
    }
    // A pooled fdatasync starts now and runs while this thread switches the tree to its written
    // nodes and makes held-back sets. Nothing those steps change is visible to readers before the
    // publish below, which waits for it.
    const syncing = syncDue && !syncInline ? settled(this.log.sync()) : null;
    try {
      const written = sliced ? await slab.writtenSliced(this.switchSliceBytes, this.switchPause) : slab.written();
      if (written !== null) {
        // The checkpointed tree's reference moved to `written` (its root, now written).
        if (w !== null) w.rootWritten(written);
        else this.published.root = written;
      }
    } catch (err) {
      if (syncInlineStarted) {
        try {
          this.log.syncFinish();
        } catch {
          // This commit fails with err; the store stops writing either way.
        }
      }
      throw err;
    }
    if (held) {
      try {
        later.applyLater();
      } catch (err) {
        // A node on a set's path failed its checksum or could not be read. Before the tree
        // changed first, such a batch wrote nothing and the store went on; so it does here: the
        // record just appended is erased (zeros, synced) before the batch fails. (A crash after
        // the record's sync and before the zeros' replays it on open, and meets that node again:
        // the open then reports the corruption, as the file holds it.)
        await this.eraseAppended(start, syncInlineStarted, syncing);
        throw new NothingWrittenError(err);
      }
    }
    this.stats.commits++;
    this.stats.bytesAppended += slab.len;
    if (checkpoint) {
      this.stats.checkpoints++;
      if (sliced) this.stats.slicedCheckpoints++;
      this.bytesSinceCheckpoint = 0;
    } else {
      this.bytesSinceCheckpoint += slab.len;
    }
    // Idle for checkpointIdleMs after this: a checkpoint if this logged, else the region's trim.
    this.armIdleCheckpoint();
    if (syncDue) {
      if (syncing === null) {
        if (this.log.syncFinish()) this.stats.directSyncs++;
        this.stats.inlineSyncs++;
        // Zeros ahead for the next big append, as below (a sorted load's ~122 KB commits sync here).
        if (!this.closed && this.log.prepareAhead(slab.len)) this.stats.zerosPrepared++;
      } else {
        const outcome = await syncing;
        if (!outcome.ok) throw outcome.error;
        // Zeros ahead for the next big append, now that this one is durable (see prepareAhead);
        // not for close()'s last checkpoint, after which they would only be cut off again.
        if (!this.closed && this.log.prepareAhead(slab.len)) this.stats.zerosPrepared++;
      }
      this.stats.syncs++;
      if (superblockDue) this.writeSuperblock(slab.commit);
    }
    if (w !== null) this.publishTree(w, { tag, commit: slab.commit });
    else this.published = { ...this.published, tag, commit: slab.commit };
    if (checkpoint) {
      // What the tree still holds changed is what other trees (snapshots) keep: not this store's.
      this.dirtyBaseline = this.tree.dirtyEstimateBytes;
      this.tree.checkpointed();
      this.maybeAutoCompact();
    }
    if (this.background !== null) this.stats.backgroundCommits++;
    if (background) this.startBackgroundCheckpoint();
  }

  /**
   * Publishes the batch's tree (with the commit it belongs to, if any): its reference becomes the
   * store's, and the one on the tree it replaces is let go. Same turn as the commit's sync
   * settling: no reader in between.
   */
  private publishTree(w: BatchWriter, commit?: { tag: number | undefined; commit: CommitRecord }): void {
    const { root, changesInPlace } = w.publish();
    const old = this.published.root;
    this.published = { root, count: w.count, tag: commit?.tag ?? this.published.tag, commit: commit?.commit ?? this.published.commit };
    this.tree.release(old);
    this.stats.inPlaceChanges += changesInPlace;
    if (this.inPlaceWriter === w) this.inPlaceWriter = null;
  }

  /**
   * Bytes a sliced checkpoint encodes or appends between two turns of the event loop: about
   * `checkpointSliceMs` of work at ENCODE_BYTES_PER_MS, at least SLICE_BYTES_MIN (0 ms: those).
   */
  private get sliceBytes(): number {
    return Math.max(SLICE_BYTES_MIN, Math.round(this.options.checkpointSliceMs * ENCODE_BYTES_PER_MS));
  }

  /** A turn of the event loop between slices of a switch to the written nodes (counted). */
  private readonly switchPause = (): Promise<void> => {
    this.stats.switchSlices++;
    return nextTurn();
  };

  /** A slice of the switch to the written nodes (SWITCH_BYTES_PER_MS), as sliceBytes. */
  private get switchSliceBytes(): number {
    return Math.max(SLICE_BYTES_MIN, Math.round(this.options.checkpointSliceMs * SWITCH_BYTES_PER_MS));
  }

  /** Changed nodes' estimated bytes since the last checkpoint (see dirtyBaseline). */
  private dirtyBytesSinceCheckpoint(): number {
    const total = this.tree.dirtyEstimateBytes;
    // Trees that held older changed nodes let go of them: those no longer count against the next checkpoint.
    if (total < this.dirtyBaseline) this.dirtyBaseline = total;
    return total - this.dirtyBaseline;
  }

  /**
   * Whether a checkpoint due now may run in the background (OpenOptions.backgroundCheckpoints).
   * Not when it is due because this commit should write the tree instead of logging its actions
   * (`treeAboutLog`: a big sorted batch, compactTo's output), nor when every commit is to be a
   * checkpoint (`checkpointIntervalBytes` 0): in the background the commit would log its actions
   * and the checkpoint then write the same keys again (compactTo's file measured 2.05× logical).
   */
  private backgroundAllowed(actions: BatchAction[]): boolean {
    return this.options.backgroundCheckpoints && this.background === null && !this.compacting && !this.closed &&
      this.closing === null && this.dirtyBytesSinceCheckpoint() >= Math.max(this.options.slicedCheckpointBytesMin, 1) &&
      this.options.checkpointIntervalBytes > 0 && !this.treeAboutLog(actions);
  }

  /**
   * Whether the nodes changed since the last checkpoint are at most `checkpointTreeOverLogMax`
   * times this commit's Actions entry: writing them now costs about what logging does.
   */
  private treeAboutLog(actions: BatchAction[]): boolean {
    const max = this.options.checkpointTreeOverLogMax;
    return max > 0 && this.dirtyBytesSinceCheckpoint() <= max * actionLogBytes(actions, this.tree.staged);
  }

  /**
   * Checkpoints the tree just published while later batches commit. A checkpoint in a commit
   * holds every write back for its whole run; this one holds them only while it encodes, appends
   * and switches the tree to its written nodes (the event loop turns between the encode's and the
   * append's slices). Letting batches run between the switch's steps measured a third fewer
   * groups of 100 a second, for a longest wait of 355 ms instead of 650 (bench/RESULTS.md round
   * 29). The slab it writes (its commit, `C_k`) carries the tree of the commit
   * published now (`C_s`) and names it as its tree's commit: replay starts after `C_s` and replays
   * the commits between them onto that tree (codec.ts, commit body), which is what the tree of
   * `C_k` is. It holds a reference on that tree, so later batches copy its nodes instead of
   * changing them in place.
   */
  private startBackgroundCheckpoint(): void {
    const base = this.published;
    assert(base.commit !== null && this.inPlaceWriter === null && this.background === null, 'a background checkpoint without a commit to write');
    this.tree.retain(base.root);
    const bg: BackgroundCheckpoint = {
      base: { ...base, root: { ...base.root } } as BackgroundCheckpoint['base'],
      phase: 'waiting',
      cancelled: false,
      appending: false,
      bytesBefore: this.bytesSinceCheckpoint,
      dirtyBaselineBefore: this.dirtyBaseline,
      done: Promise.resolve(),
    };
    // From here on these count what the next checkpoint replays and writes: what comes after base.
    this.bytesSinceCheckpoint = 0;
    this.dirtyBaseline = this.tree.dirtyEstimateBytes;
    this.background = bg;
    this.prefaultForCheckpoint();
    bg.done = this.runBackgroundCheckpoint(bg).then(
      (written) => {
        if (!written) this.dropBackground(bg);
      },
      (err: unknown) => {
        // From its append on, a failure leaves the file's state unknown: the store stops writing,
        // as after a failed commit. Before that (building it could not allocate, say), nothing
        // was written and the store goes on; the next checkpoint due tries again.
        if (bg.appending) this.failed ??= err instanceof SolifugeError ? err : new IoFailedError(String(err), err);
        else this.dropBackground(bg);
      },
    ).finally(() => {
      this.background = null;
    });
  }

  /** Whether it was written (false: dropped before its append, nothing written). */
  private async runBackgroundCheckpoint(bg: BackgroundCheckpoint): Promise<boolean> {
    const stop = () => bg.cancelled || this.failed !== null || this.closed || this.log.isClosed;
    let root: TreeRoot = bg.base.root; // the checkpoint's reference
    try {
      await nextTurn(); // the batch that started it settles first
      if (stop()) return false;
      const written = await this.holdWriter(async () => {
        if (stop()) return false;
        bg.phase = 'writing';
        const p = this.published;
        const start = this.log.end;
        const input = {
          actions: [], keyCount: p.count, tag: p.tag, prev: p.commit, start, afterDurable: this.log.endDurable,
          checkpoint: { root, keyCount: bg.base.count, of: bg.base.commit },
        };
        const zeroed = this.zeroAheadForCheckpoint();
        let built: BuiltTreeSlab;
        try {
          built = await this.tree.slabs.buildSliced(input, this.sliceBytes, nextTurn);
        } finally {
          await zeroed;
        }
        bg.appending = true;
        try {
          await this.appendSliced(built.bytes, built.len);
        } catch (err) {
          built.abandon();
          throw err;
        }
        assert(this.published === p, 'a commit while a background checkpoint held the writer');
        // Synced before the writer is let go (on the pool, while the switch below runs), so that
        // in a durable store no slab follows one that is not durable: every commit then records
        // that it came after durable bytes (CommitRecord.afterDurable), and damage before any of
        // them is reported as corruption, never cut as a torn tail (recovery.ts). Before the
        // flag existed, a power cut here could leave a store that opened only with `repair`
        // (power-loss.test.ts found it). The next batch's fdatasync no longer carries this slab's
        // writeback (its longest group commit fell, bench/RESULTS.md round 33).
        const syncing = settled(this.log.sync());
        root = (await built.writtenSliced(this.switchSliceBytes, this.switchPause)) ?? root;
        const outcome = await syncing;
        if (!outcome.ok) throw outcome.error;
        this.stats.syncs++;
        // The tree readers see stays the live one; only the chain of commits moves on.
        this.published = { ...p, commit: built.commit };
        this.stats.commits++;
        this.stats.bytesAppended += built.len;
        // No batch changed the tree since: readers get its written root (then one call into the
        // cache for a get, as after any checkpoint).
        if (sameRoot(this.published.root, bg.base.root) && this.inPlaceWriter === null) {
          const old = this.published.root;
          this.tree.retain(root);
          this.published = { ...this.published, root: { ...root } };
          this.tree.release(old);
        }
        return true;
      });
      if (!written) return false;
    } finally {
      this.tree.release(root);
    }
    this.stats.checkpoints++;
    this.stats.backgroundCheckpoints++;
    this.tree.checkpointed();
    if (this.closing === null) {
      this.armIdleCheckpoint();
      this.maybeAutoCompact();
    }
    return true;
  }

  /**
   * A big checkpoint is about to be written: the ring's pages its switch will copy the written
   * nodes into (about their estimate, half again for the cache's layout) get faulted in on the
   * pool meanwhile (WasmNodeCache.prefaultFor).
   */
  private prefaultForCheckpoint(): void {
    this.tree.cache.prefaultFor(1.5 * this.tree.dirtyEstimateBytes);
  }

  /**
   * A big checkpoint is being built, holding the writer: zeros go ahead of the log's end for its
   * slab (about the changed nodes' estimate) on the pool meanwhile (FileLog.zeroAhead), so that
   * its append, after they are done, overwrites pages already in the page cache.
   */
  private async zeroAheadForCheckpoint(): Promise<void> {
    if ((await this.log.zeroAhead(this.tree.dirtyEstimateBytes + (1 << 20))) > 0) this.stats.checkpointsOnZeros++;
  }

  /** A background checkpoint that wrote nothing: what it would have covered counts again. */
  private dropBackground(bg: BackgroundCheckpoint): void {
    this.stats.backgroundDropped++;
    if (bg.cancelled) return; // the canceller gave the counts back (settleBackground)
    this.bytesSinceCheckpoint += bg.bytesBefore;
    this.dirtyBaseline = Math.min(this.dirtyBaseline, bg.dirtyBaselineBefore);
  }

  /**
   * Stops a background checkpoint still waiting for the writer (giving its counts back), or waits
   * for one past that. Called with the writer held (a batch, close()): one waiting never waits for it.
   */
  private async settleBackground(): Promise<void> {
    const bg = this.background;
    if (bg === null) return;
    if (bg.phase === 'waiting' && !bg.cancelled) {
      bg.cancelled = true;
      this.bytesSinceCheckpoint += bg.bytesBefore;
      this.dirtyBaseline = Math.min(this.dirtyBaseline, bg.dirtyBaselineBefore);
      return; // it ends when it gets the writer, without writing
    }
    if (bg.phase === 'writing') await bg.done;
  }

  /**
   * Runs `fn` while no batch runs, as a batch does (startBatch): writes queue behind it, and the
   * next batch starts when it ends.
   */
  private async holdWriter<T>(fn: () => Promise<T>): Promise<T> {
    while (this.running !== null) await this.running;
    const p = fn();
    this.running = p.then(noop, noop).finally(() => {
      this.running = null;
      this.scheduleBatch();
    });
    return p;
  }

  /**
   * Whether this commit also writes the tree (a checkpoint). Also when the changed nodes grow past
   * DIRTY_OVER_INTERVAL_MAX intervals: scattered writes to a big tree can dirty a leaf per key, and
   * a checkpoint slab (staged and encoded in linear memory) and the JS heap holding those nodes
   * must stay bounded. With sets held back in `later`, the nodes they will dirty are not counted
   * yet: if the estimate without them calls for a checkpoint, they are made now and it is decided
   * again (a checkpoint needs the whole tree anyway). Otherwise their nodes count from the next
   * commit on, so the DIRTY_OVER_INTERVAL_MAX bound may be passed by one batch of at most
   * SET_LATER_MAX sets.
   */
  private checkpointDue(actions: BatchAction[], forceCheckpoint: boolean, later: BatchWriter | null): boolean {
    const dirtyBytesMax = DIRTY_OVER_INTERVAL_MAX * Math.max(this.options.checkpointIntervalBytes, 1);
    // The changed nodes' region itself must not fill up (a batch that finds it full fails).
    const regionFull = () => this.tree.dirtyRegionBytesInUse >= DIRTY_REGION_SHARE_MAX * dirtyRegionBytes(this.options.checkpointIntervalBytes);
    // One checkpoint at a time: a background one waiting for the writer is the next checkpoint
    // (it takes the writer on the next turn, before any later batch: startBackgroundCheckpoint).
    if (!forceCheckpoint && this.background !== null) return false;
    const due = () =>
      forceCheckpoint || this.bytesSinceCheckpoint >= this.options.checkpointIntervalBytes ||
      this.dirtyBytesSinceCheckpoint() >= dirtyBytesMax || regionFull() || this.treeAboutLog(actions);
    if (!due()) return false;
    if (later === null) return true;
    later.applyLater();
    return due();
  }

  /**
   * Before a batch, with the writer held: if the region's changed nodes leave too little room for
   * what recent batches took (regionShortForBatch), a checkpoint is written first, in the
   * foreground (as db.checkpoint() does), and frees them.
   */
  private async makeRoomForBatch(): Promise<void> {
    if (this.background === null && this.failed === null && !this.closed && this.published.commit !== null && this.regionShortForBatch()) {
      await this.commit(null, [], this.published.tag, false, true);
    }
  }

  /** Whether the region in use, with what recent batches took added (batchRegionBytes), is past DIRTY_REGION_FILL_MAX of it. */
  private regionShortForBatch(): boolean {
    const inUse = this.tree.dirtyRegionBytesInUse;
    return inUse > 0 && this.dirtyBytesSinceCheckpoint() > 0 &&
      inUse + this.batchRegionBytes > DIRTY_REGION_FILL_MAX * dirtyRegionBytes(this.options.checkpointIntervalBytes);
  }

  /**
   * Erases the slab appended at `start` by a commit that fails before its publish and must leave
   * nothing behind (its sync, if started, is waited for first): zeros over it, synced, and the end
   * back at `start`. Recovery sees zeros as a torn tail, so a reopen never replays it. If that
   * fails too, the store stops writing (the caller's error is then an IoFailedError).
   */
  private async eraseAppended(start: number, syncInlineStarted: boolean, syncing: Promise<Settled> | null): Promise<void> {
    try {
      if (syncInlineStarted) this.log.syncFinish();
      else if (syncing !== null) {
        const outcome = await syncing;
        if (!outcome.ok) throw outcome.error;
      }
      this.log.eraseFrom(start);
    } catch (err) {
      throw err instanceof SolifugeError ? err : new IoFailedError(String(err), err);
    }
  }

  /** Appends a big slab in pieces (sliceBytes), a turn of the event loop between them; the end moves last. */
  private async appendSliced(bytes: () => Buffer, len: number): Promise<void> {
    const step = this.sliceBytes;
    for (let off = 0; off < len; off += step) {
      if (off > 0) await nextTurn();
      this.log.writeAhead(bytes().subarray(off), Math.min(step, len - off), off);
    }
    this.log.advance(len);
  }

  private idleTimer: NodeJS.Timeout | null = null;

  /** (Re)starts the idle-checkpoint timer: it fires once no commit came for checkpointIdleMs. */
  private armIdleCheckpoint(): void {
    const ms = this.options.checkpointIdleMs;
    if (ms <= 0) return;
    if (this.idleTimer !== null) {
      this.idleTimer.refresh();
      return;
    }
    this.idleTimer = setTimeout(() => {
      this.idleTimer = null;
      if (this.closed || this.closing !== null || this.failed !== null || this.log.readOnly || this.log.isClosed) return;
      if (this.running !== null || this.writesWaiting || this.background !== null) {
        if (this.bytesSinceCheckpoint > 0) this.armIdleCheckpoint(); // still busy: look again later
        return;
      }
      if (this.bytesSinceCheckpoint === 0) {
        this.trimIdle(); // (a checkpoint wrote the tree since the last commit)
        return;
      }
      // A failure here already made the store fail-stop (the batch records it); nothing to add.
      // (Its commit arms the timer again: idle after it too, the region is trimmed.)
      this.checkpoint().catch(() => undefined);
    }, ms);
    this.idleTimer.unref();
  }

  /**
   * Idle after a checkpoint: gives the region of changed nodes back to the kernel if that
   * checkpoint emptied it and writes are still paused. A load leaves its peak resident there
   * (~200 MB after 1M random keys), unused until the next batches; they fault in what they touch
   * (with huge pages, ~100 faults for 200 MB). Nothing is given back while a snapshot, an
   * iterator or a background checkpoint holds changed nodes (StoreTree.trimDirtyRegion).
   */
  private trimIdle(): void {
    if (this.closed || this.closing !== null || this.failed !== null || this.running !== null || this.writesWaiting || this.background !== null || this.inPlaceWriter !== null) return;
    // The slab builder's buffers too: no build runs between batches.
    this.stats.slabBytesTrimmed += this.tree.trimSlabBuffers();
    const bytes = this.tree.trimDirtyRegion();
    if (bytes === 0) return;
    this.stats.regionTrims++;
    this.stats.regionBytesTrimmed += bytes;
  }

  /**
   * Writes the tree's changed nodes now (they are otherwise written every checkpointIntervalBytes,
   * after checkpointIdleMs without writes, and on close). Resolves once durable.
   */
  async checkpoint(): Promise<void> {
    this.assertWritable();
    await this.enqueue<undefined>({ k: 'checkpoint', resolve: noop, reject: noop });
  }

  /** Writes the other superblock copy; it becomes durable with the next fdatasync. */
  /**
   * Writes the current superblock again, as this build's format version, into the other copy,
   * and syncs it. It names what the current one names, which is durable.
   */
  private rewriteSuperblock(): void {
    this.putSuperblock({ ...this.sb, version: FORMAT_VERSION, counter: this.sb.counter + 1 });
    this.log.syncNow();
  }

  private writeSuperblock(c: CommitRecord | null, liveStart = this.sb.liveStart): void {
    this.putSuperblock({
      version: FORMAT_VERSION,
      counter: this.sb.counter + 1,
      lastCommitPos: c?.pos ?? 0,
      lastCommitLen: c?.len ?? 0,
      dataEnd: c === null ? DATA_START_POS : c.pos + c.len,
      liveStart,
    });
  }

  /** Writes `sb` into the superblock copy not in use (unsynced) and makes it the current one. */
  private putSuperblock(sb: Superblock): void {
    const pos = this.sbPos === SUPERBLOCK_A_POS ? SUPERBLOCK_B_POS : SUPERBLOCK_A_POS;
    const block = encodeSuperblock(sb, (b, s, e) => crc32c(b, s, e));
    this.log.writeAt(block, block.length, pos);
    this.sb = sb;
    this.sbPos = pos;
  }

  // --- maintenance ----------------------------------------------------------------------------

  /**
   * Online compaction (compaction.ts): copies the live tree forward in chunks while reads and
   * writes go on, waits for older snapshots, then punches the space before the copy. One at a time.
   */
  async compact(opts: CompactOptions = {}): Promise<CompactResult> {
    this.assertWritable();
    if (this.compacting) throw new BadArgumentError('a compaction is already running');
    this.compacting = true;
    const run = this.runCompaction(opts);
    this.compactionRun = run.then(noop, noop);
    try {
      return await run;
    } finally {
      this.compacting = false;
      this.compactionRun = null;
    }
  }

  /**
   * The file's allocated bytes less the zeros written ahead of the log (up to 1 MiB, dropped on
   * close): compaction's before and after, which otherwise showed a store growing from 40 KiB to
   * 1 MiB when a write laid zeros ahead in between.
   */
  private dataAllocatedBytes(): number {
    return Math.max(0, allocatedBytes(this.log.fd) - Math.ceil(this.log.zerosAheadBytes / PAGE_BYTES) * PAGE_BYTES);
  }

  private async runCompaction(opts: CompactOptions): Promise<CompactResult> {
    const chunkBytes = opts.chunkBytes ?? 64 * 1024;
    const checkpointEveryBytes = opts.checkpointEveryBytes ?? 64 << 20;
    const allocatedBytesBefore = this.dataAllocatedBytes();
    // Checkpoint first, so no node changed before compaction is still waiting in memory: the
    // copy's checkpoints then write copies only, not also the old tree's pending changes.
    await this.enqueue<undefined>({ k: 'checkpoint', resolve: noop, reject: noop });
    // Everything so far is the old region; the boundary is a slab boundary.
    const boundary = this.log.end;
    const keysTotal = this.count();
    const progress: CompactProgress = {
      phase: 'copy', keysCopied: 0, keysTotal, pinnedSnapshots: 0, bytesReclaimed: 0, bytesToReclaim: boundary - DATA_START_POS,
    };
    const report = () => opts.onProgress?.({ ...progress });
    report();
    const loadShare = opts.loadShare ?? 0.15;
    if (!(loadShare > 0 && loadShare <= 1)) throw new BadArgumentError('loadShare must be in (0, 1]');
    let cursor: CopyCursor = { afterKey: null, done: false, keysCopied: 0, bytesSinceCheckpoint: 0, chunkMs: 0 };
    while (!cursor.done) {
      if (this.compactionCancelled) throw new ClosedError();
      cursor = await this.enqueue<CopyCursor>({ k: 'compactCopy', boundary, cursor, chunkBytes, checkpointEveryBytes, resolve: noop, reject: noop });
      progress.keysCopied = cursor.keysCopied;
      report();
      // Pace: rest long enough that copying takes about `loadShare` of the event loop.
      const restMs = cursor.chunkMs * (1 / loadShare - 1);
      await new Promise((r) => (restMs >= 1 ? setTimeout(r, restMs) : setImmediate(r)));
    }
    const sealedSeq = this.published.commit?.seq ?? 0;
    progress.phase = 'wait';
    for (;;) {
      if (this.compactionCancelled) throw new ClosedError(); // nothing reclaimed yet: harmless
      let older = 0;
      for (const [seq, n] of this.pins) if (seq < sealedSeq) older += n;
      progress.pinnedSnapshots = older;
      if (older === 0) break;
      report();
      await new Promise((r) => setTimeout(r, 10));
    }
    await this.enqueue<undefined>({ k: 'compactSeal', boundary, resolve: noop, reject: noop });
    progress.phase = 'punch';
    report();
    let punchSkipped: string | undefined;
    if (addon === null) {
      punchSkipped = 'hole punching needs the native addon';
    } else {
      // Whole pages only: punching part of a page zeroes it in place, and a sendfile that already
      // settled may still hold that page for a peer that has not read it yet (native/zerocopy.cc);
      // whole pages leave the page cache while the socket keeps its references to them.
      const punchEnd = boundary - (boundary % PAGE_BYTES);
      for (let at = DATA_START_POS; at < punchEnd; at += PUNCH_STEP_BYTES) {
        const len = Math.min(PUNCH_STEP_BYTES, punchEnd - at);
        const rc = this.log.punchHole(at, len);
        if (rc < 0) {
          punchSkipped = `fallocate(PUNCH_HOLE) failed: errno ${-rc}`;
          break;
        }
        progress.bytesReclaimed += len;
        report();
        await new Promise((r) => setImmediate(r));
      }
    }
    this.lastCompactedBytes = this.log.end - boundary;
    progress.phase = 'done';
    report();
    return {
      boundary,
      keysCopied: cursor.keysCopied,
      bytesReclaimed: progress.bytesReclaimed,
      ...(punchSkipped === undefined ? {} : { punchSkipped }),
      allocatedBytesBefore,
      allocatedBytesAfter: this.dataAllocatedBytes(),
    };
  }

  /**
   * One copy chunk, inside a batch. The chunk's entries (in key order, after the cursor) are
   * deleted and inserted again in ascending order with their current values, so the copies are
   * both new (after the boundary) and densely packed: ascending inserts split leaves full-left,
   * as a sorted load does (a plain re-set would keep each leaf's old fill, ~70% after random
   * inserts). Values stored before the boundary are re-read into new Value entries.
   */
  private copyForward(w: BatchWriter, boundary: number, cursor: CopyCursor, chunkBytes: number): CopyCursor {
    const startedMs = performance.now();
    const root = w.freeze(); // the cursor walks a frozen tree; the changes below copy
    const keys: BinKey[] = [];
    const vals: LeafValue[] = [];
    let bytes = 0;
    let done = true;
    try {
      const after = cursor.afterKey === null ? {} : { gt: Buffer.from(cursor.afterKey, 'latin1') };
      const c = this.cursor(root, after);
      while (c.next()) {
        const key = c.binKey();
        let val: LeafValue = c.leafValue();
        if (val instanceof ValueRef && val.pos >= 0 && val.pos < boundary) {
          const bytesOfValue = this.materialize(val);
          val = new ValueRef(-1, bytesOfValue.length, bytesOfValue);
        }
        keys.push(key);
        vals.push(val);
        bytes += key.length + (val instanceof ValueRef ? val.len : val.length);
        if (bytes >= chunkBytes) {
          done = false;
          break;
        }
      }
    } finally {
      w.unfreeze(root);
    }
    for (const k of keys) assert(w.delete(k), 'compaction lost a key it had just listed');
    for (let i = 0; i < keys.length; i++) w.set(keys[i], vals[i]);
    const copied = cursor.keysCopied + keys.length;
    const sinceCheckpoint = cursor.bytesSinceCheckpoint + bytes;
    if (done) assertNothingBelow(this.log, this.tree.jsTree(w.root), boundary);
    return {
      afterKey: keys.length > 0 ? keys[keys.length - 1] : cursor.afterKey,
      done,
      keysCopied: copied,
      bytesSinceCheckpoint: sinceCheckpoint,
      chunkMs: performance.now() - startedMs,
    };
  }

  /** Inside a batch: makes the compaction's commit durable and both superblocks name it. */
  private async sealCompaction(boundary: number): Promise<void> {
    const c = this.published.commit;
    assert(c !== null && c.pos >= boundary && c.treeCommitPos >= boundary, 'compaction sealed before its checkpoint');
    await this.log.sync();
    this.writeSuperblock(c, boundary);
    await this.log.sync();
    this.writeSuperblock(c, boundary);
    await this.log.sync();
  }

  /** @internal What the control socket's `stats` command reports. */
  controlStats(): Record<string, number> {
    return {
      keys: this.count(),
      fileBytes: this.log.end,
      allocatedBytes: allocatedBytes(this.log.fd),
      liveStart: this.sb.liveStart,
      commits: this.stats.commits,
      checkpoints: this.stats.checkpoints,
      pinnedSnapshots: this.pinnedSnapshots,
    };
  }

  /** Last error of a compaction started by the autoCompact policy. */
  lastAutoCompactError: unknown = undefined;

  private maybeAutoCompact(): void {
    const policy = this.options.autoCompact;
    if (policy === false || this.compacting || this.closed || this.failed !== null) return;
    const inUse = this.log.end - this.sb.liveStart;
    if (inUse < (policy.minFileBytes ?? 64 << 20)) return;
    const garbageRatio = Math.min(Math.max(policy.garbageRatio ?? 0.5, 0.05), 0.95);
    if (1 - this.lastCompactedBytes / inUse < garbageRatio) return;
    this.stats.autoCompactions++;
    this.compact().catch((err: unknown) => {
      this.lastAutoCompactError = err;
    });
  }


  /** Verifies the whole file and the live tree; problems are reported as data. */
  check(): CheckReport {
    this.assertOpen();
    const root = this.readRoot();
    return checkStore(this.log, this.published.commit, diskNodes(this.log), this.tree.jsTree(root), this.published.count, this.sb.liveStart);
  }

  /**
   * Writes the live tree of the current commit into a fresh file at `target` (which must not
   * exist): dense, sorted, one version, the same tag. Reads and writes go on meanwhile.
   */
  async compactTo(target: string, opts: { batchBytes?: number } = {}): Promise<{ keys: number; bytes: number }> {
    this.assertOpen();
    if (fs.existsSync(target)) throw new BadArgumentError(`${target} already exists`);
    const snap = this.snapshot();
    let out: Db;
    try {
      out = await Db.open(target, {
        durable: false,
        checkpointIntervalBytes: 0, // every batch is a checkpoint, in its commit: the new file holds the tree only
        nodeBytesMax: this.options.nodeBytesMax,
        inlineValueBytesMax: this.options.inlineValueBytesMax,
        maxKeyBytes: this.options.maxKeyBytes,
        maxValueBytes: this.options.maxValueBytes,
      });
    } catch (err) {
      snap.release(); // a pin left behind would hold online compaction up until close
      throw err;
    }
    const batchBytes = opts.batchBytes ?? 4 << 20;
    let keys = 0;
    try {
      const it = snap.range();
      let done = false;
      while (!done) {
        await out.transaction((tx) => {
          let bytes = 0;
          for (;;) {
            const r = it.next();
            if (r.done === true) {
              done = true;
              break;
            }
            tx.set(r.value[0], r.value[1]);
            keys++;
            bytes += r.value[0].length + r.value[1].length;
            if (bytes >= batchBytes) break;
          }
        });
      }
      await out.transaction(() => undefined, { tag: snap.tag, durable: true });
      await out.close();
    } catch (err) {
      await out.close().catch(() => undefined);
      fs.rmSync(target, { force: true });
      throw err;
    } finally {
      snap.release();
    }
    syncDirectory(path.dirname(path.resolve(target)));
    return { keys, bytes: fs.statSync(target).size };
  }

  /** File size and how it splits, for inspection and benchmarks. */
  fileInfo(): { fileBytes: number; lastCommit: CommitRecord | null; superblock: Superblock; superblockPos: number } {
    return { fileBytes: this.log.end, lastCommit: this.published.commit, superblock: { ...this.sb }, superblockPos: this.sbPos };
  }

  /**
   * Waits for queued writes, writes a final checkpoint and superblock, syncs and releases the
   * lock. The file and lock are released even if that writing fails (a full disk): close then
   * rejects with an IoFailedError, and nothing acknowledged is lost.
   */
  close(): Promise<void> {
    // Concurrent calls share one close: a second must not write a second final checkpoint.
    this.closing ??= this.closeOnce();
    return this.closing;
  }

  private closing: Promise<void> | null = null;

  private async closeOnce(): Promise<void> {
    if (this.closed) return;
    if (this.idleTimer !== null) clearTimeout(this.idleTimer);
    this.idleTimer = null;
    // A compaction still copying or waiting for snapshots stops first (it may be the one a
    // control connection asked for, and closing the control server waits for that connection).
    this.compactionCancelled = true;
    if (this.control !== null) {
      const server = this.control;
      this.control = null;
      await closeControl(this.path, server);
    }
    if (this.compactionRun !== null) await this.compactionRun;
    // Handlers may still read (a transfer streaming a Location) and write; new ones may start.
    while (this.handlersRunning.size > 0) await Promise.allSettled([...this.handlersRunning]);
    while (this.running !== null || this.writesWaiting) {
      if (this.running !== null) await this.running;
      else this.startBatch();
    }
    // A background checkpoint still waiting stops (the final checkpoint below writes the tree);
    // one writing finishes first.
    await this.settleBackground();
    while (this.background !== null) await this.background.done;
    this.closed = true;
    try {
      if (!this.log.readOnly && this.failed === null) {
        let c = this.published.commit;
        if (c !== null && c.treeSeq !== c.seq) {
          // Checkpoint, so the next open replays nothing.
          await this.commit(null, [], this.published.tag, true, true);
          c = this.published.commit;
        }
        await this.log.settlePrepare(); // (zeros still being written would land past the trim)
        this.log.trimAhead();
        if (c !== null && c.pos + c.len !== this.sb.dataEnd) {
          await this.log.sync();
          this.writeSuperblock(c);
        }
        await this.log.sync();
      }
    } catch (err) {
      // Every acknowledged write was durable before it was acknowledged: a final checkpoint or
      // superblock that fails (a full disk, an I/O error) leaves the log as it was, plus at most
      // a torn tail that the next open cuts off, and that open replays the log. The caller still
      // learns of it, as the typed error every other failed write gives. (A broken invariant
      // stays what it is.)
      throw err instanceof SolifugeError || err instanceof AssertionError ? err : new IoFailedError(`close's final checkpoint was not written (every acknowledged write is durable; the next open replays the log): ${String(err)}`, err);
    } finally {
      // The tree's instance goes with this Db object; its buffers are given back now (snapshots
      // still unreleased have nothing left to let go of: unpin).
      this.tree.dispose();
      this.tree = CLOSED_TREE;
      this.inPlaceWriter = null;
      // (The final checkpoint's commit armed it again; it would find the store closed.)
      if (this.idleTimer !== null) clearTimeout(this.idleTimer);
      this.idleTimer = null;
      await this.log.settlePrepare();
      this.log.close();
    }
  }

  get isClosed(): boolean {
    return this.closed;
  }

  private assertOpen(): void {
    if (this.closed) throw new ClosedError();
  }

  private assertWritable(): void {
    this.assertOpen();
    if (this.log.readOnly) throw new BadArgumentError(`${this.path} is open read-only`);
    if (this.failed !== null) throw this.failed;
  }
}

function noop(): void {}

/** OpenOptions.syncCpu as the CPU number FileLog passes to the addon (-1: anywhere). */
function syncCpuFor(log: FileLog, option: number | 'auto' | 'off', spinUs: number): number {
  if (option === 'off' || spinUs === 0 || log.readOnly || addon?.fdatasyncStart === undefined) return -1;
  if (option !== 'auto') return option;
  return completionCpuOfFile(log.fd) ?? -1;
}


/** Releases the snapshot of a range iterator dropped unfinished (no return(), no end). */
const iteratorPins = new FinalizationRegistry<Snapshot>((snap) => snap.release());

/** Page size for hole punching (x86-64 and arm64 Linux default). */
const PAGE_BYTES = 4096;

function allocatedBytes(fd: number): number {
  return fs.fstatSync(fd).blocks * 512;
}

/** Whether two roots name the same tree (the same dirty node, or the same written one). */
function sameRoot(a: TreeRoot, b: TreeRoot): boolean {
  return a.addr === b.addr && a.pos === b.pos;
}

/** Nodes read straight from the file (the structural check's and compaction's walks). */
function diskNodes(log: FileLog): { load(ref: DiskRef): TreeNode } {
  return { load: (ref) => readNode(log, ref.pos, ref.len) };
}

/** Compaction's postcondition: nothing the live tree reaches lies before the boundary. */
function assertNothingBelow(log: FileLog, root: Child | null, boundary: number): void {
  if (root === null) return;
  const src = diskNodes(log);
  const walk = (c: Child): void => {
    if (c.t === T.Disk && c.pos < boundary) throw new AssertionError(`compaction left a node at ${c.pos} below ${boundary}`);
    const n = c.t === T.Disk ? src.load(c) : c;
    if (n.pos !== -1 && n.pos < boundary) throw new AssertionError(`compaction left a node at ${n.pos} below ${boundary}`);
    if (n.t === T.Leaf) {
      for (const v of n.vals) if (v instanceof ValueRef && v.pos !== -1 && v.pos < boundary) throw new AssertionError(`compaction left a value at ${v.pos}`);
    } else {
      for (const k of n.kids) walk(k);
    }
  };
  walk(root);
}

/** Creates a new, empty data file atomically: written under a temporary name, synced, renamed. */
function initFile(file: string): void {
  const tmp = `${file}.init-${process.pid}-${threadId}-${crypto.randomBytes(4).toString('hex')}`;
  const crc = (b: Uint8Array, s: number, e: number) => crc32c(b, s, e);
  const a = encodeSuperblock({ version: FORMAT_VERSION, counter: 0, lastCommitPos: 0, lastCommitLen: 0, dataEnd: DATA_START_POS, liveStart: DATA_START_POS }, crc);
  const b = encodeSuperblock({ version: FORMAT_VERSION, counter: 1, lastCommitPos: 0, lastCommitLen: 0, dataEnd: DATA_START_POS, liveStart: DATA_START_POS }, crc);
  const fd = fs.openSync(tmp, 'wx');
  try {
    fs.writeSync(fd, a, 0, a.length, SUPERBLOCK_A_POS);
    fs.writeSync(fd, b, 0, b.length, SUPERBLOCK_B_POS);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  try {
    // A link, not a rename: it fails if another opener created the file meanwhile, where a rename
    // would put a fresh file in place of one that opener may hold locked and be writing (its
    // acknowledged writes then gone with the old inode). The file found is opened, and locked,
    // as any existing store.
    fs.linkSync(tmp, file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EPERM' || code === 'ENOTSUP' || code === 'EOPNOTSUPP' || code === 'ENOSYS') {
      // No hard links here: an exclusive copy, which also never replaces a file.
      try {
        fs.copyFileSync(tmp, file, fs.constants.COPYFILE_EXCL);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      }
    } else if (code !== 'EEXIST') {
      throw err;
    }
  } finally {
    fs.rmSync(tmp, { force: true });
  }
  syncDirectory(path.dirname(path.resolve(file)));
}

/** Opens (creating if needed) a Solifuge store. */
export function open(file: string, options?: OpenOptions): Promise<Db> {
  return Db.open(file, options);
}

export { T };
export { Snapshot, Transaction };
