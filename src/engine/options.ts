//! What `open(path, options)` accepts, its defaults, and the checks that turn the caller's options
//! into the ones a store runs with (resolveOptions), with the sizes derived from them (the changed
//! nodes' region, the largest node body) that open's checks and the store both use.
import os from 'node:os';
import type { AutoCompactOptions } from './compaction.js';
import { BadArgumentError } from './errors.js';
import type { KeyInput } from './keys.js';
import { PLAN_VALUE_BYTES_MAX } from './plan.js';
import { PROBE_BYTES_MAX, WASM_CACHE_BYTES_MIN } from './wasm-cache.js';
import { allowedCpusOfProcess } from '../native/completion-cpu.js';

export interface OpenOptions {
  /** A write's promise settles after fdatasync (default true). */
  durable?: boolean;
  /** Create the file if it does not exist (default true). */
  create?: boolean;
  /** Open without the exclusive lock, writes or truncation (inspection). */
  readOnly?: boolean;
  /** Cut everything after the first damaged slab even if valid commits follow it (default false). */
  repair?: boolean;
  maxKeyBytes?: number;
  maxValueBytes?: number;
  /** Values up to this size live inside their leaf; larger ones get their own Value entry. */
  inlineValueBytesMax?: number;
  /** Target encoded size of a node; a node that grows past it splits. */
  nodeBytesMax?: number;
  /**
   * Node bytes the WebAssembly node cache keeps: the tree's nodes as the file holds them
   * (wasm-cache.ts), which every read and the writer use. Values below 4 MiB are taken as 4 MiB;
   * it must hold at least 32 nodes of `nodeBytesMax` (a change's whole path at once). Default
   * 512 MiB, reserved as address space and touched only as nodes arrive (in 2 MiB pages with
   * `hugePages`; the native addon faults the next few MiB in ahead of them, off the JS thread).
   * The nodes changed since the last checkpoint live beside it, in a region sized from
   * `checkpointIntervalBytes` (store-tree.ts); the two together must stay within 3 GiB.
   */
  cacheBytes?: number;
  /**
   * Ask the kernel for transparent huge pages over the WASM node cache (madvise MADV_HUGEPAGE,
   * through the native addon; default true). A get at 1M keys reads one leaf out of ~140 MiB, and
   * with 4 KiB pages nearly every node it touches also misses the TLB. Without the addon, or with
   * THP set to "never", this does nothing. The cost: the region is faulted in 2 MiB at a time (the
   * hash table, touched at random, becomes resident whole), and with THP's defrag set to
   * "madvise" a fault may wait for the kernel to compact memory.
   */
  hugePages?: boolean;
  /**
   * No longer used (accepted and ignored): the tree's nodes, the writer's included, live in
   * WebAssembly memory (`cacheBytes`), not as decoded JS objects.
   */
  decodedCacheBytes?: number;
  /** Rewrite the superblock once this many bytes were appended since the last one. */
  superblockIntervalBytes?: number;
  /**
   * Commits up to this size, checkpoints among them, are made durable before the JS thread goes
   * on (an fdatasync, or a direct write: `syncSpinUs`, `syncDirect`; default 256 KiB; 0: never).
   * On this machine the hop to libuv's pool and back costs ~100 µs, about the price of the
   * fdatasync of a small commit; a sorted load's ~122 KB commits (an fdatasync of ~110 µs in C)
   * measured +5% synced here (bench/RESULTS.md round 31). Such a sync blocks the loop for ~0.1–0.3 ms, as
   * better-sqlite3 and lmdb's synchronous commits do. Larger commits (big checkpoints, large
   * values) sync on the pool, and the loop runs meanwhile.
   */
  syncInlineBytesMax?: number;
  /**
   * Commits that sync on the JS thread (`syncInlineBytesMax`) have their fdatasync run on the
   * native addon's sync thread while the JS thread polls for it, for up to this many µs (then it
   * sleeps until the sync is done); the sync thread then polls for the next commit, at most this
   * long and only while commits come close together (a few times their recent gap, none once it
   * passes 200 µs; with `syncCpu`'s keeper, the keeper watches instead: bench/RESULTS.md round 32).
   * Default 1000 on machines with two or more cores, else 0: a plain fdatasync on the JS thread,
   * as without the addon. Either way the write promise settles after the fdatasync returned.
   * Why: a thread that blocks in fdatasync lets its core halt, and on this machine's VM waking it
   * for the completion, and running the JS that follows on a cold core, cost more than a third of
   * a small commit (bench/RESULTS.md round 16: single durable commits p50 159 µs against 227,
   * 1.42× the commits/s). The cost: up to two cores busy while small durable commits come back to
   * back (both polls yield to any other runnable thread). Set 0 where cores
   * are shared with work that matters more, e.g. several stores' processes on one small machine.
   */
  syncSpinUs?: number;
  /**
   * With `syncSpinUs` > 0, a small durable commit is written through a second descriptor opened
   * O_DIRECT | O_DSYNC, durable once that one write is done, instead of a buffered write and an
   * fdatasync (the addon needed). Default false: on this machine's disk (write-back cache, no
   * FUA, so the kernel follows the write with a flush) it measured no better in the bench:
   * durable single commits 1.06× and 0.80×, groups of 100 0.88× and 0.69× of the fdatasync path
   * (bench/RESULTS.md round 17); a disk with FUA may do better. Only after an fdatasync covered
   * every buffered write before it (a commit is never durable before the slab ahead of it);
   * file systems that refuse direct I/O are noticed on the first write and get the fdatasync.
   * Direct writes drop the page cache's copy of their blocks: the last ~1 MiB so written is
   * kept in memory for reads, and older values are read from the disk once.
   */
  syncDirect?: boolean;
  /**
   * Where the addon's sync thread serves this store's polled syncs (`syncSpinUs` > 0): 'auto'
   * (the default) pins it to the CPU that takes the completion interrupts of the disk holding the
   * file, when that is one CPU (a single-queue disk, read from sysfs and /proc/interrupts:
   * src/native/completion-cpu.ts), with a SCHED_IDLE keeper thread that spins there while the
   * sync waits for the disk, so the completions never meet a halted CPU and wake the sync thread
   * where it is, and as long after it, watching for the next commit to wake the sync thread for
   * (bench/RESULTS.md round 32); otherwise as 'off'. The CPU is read when the store opens
   * (irqbalance moving the interrupt later is not followed). A number names that CPU (it must be
   * one the process may run on); 'off' leaves the thread anywhere, without a keeper. The sync
   * thread is the process's: stores asking for different CPUs move it back and forth. Why
   * (bench/RESULTS.md round 18): on this machine's VM, side by side in the bench at 1M keys,
   * durable single commits ran at 7,773 commits/s against 5,623 with 'off', p50 102 against 141
   * µs. The cost: while a small durable commit waits for the disk, and up to `syncSpinUs` after
   * it, that CPU is busy with the keeper; it gives way to any other thread at once, but its time
   * counts against a cgroup's CPU quota.
   * `db.syncCpu` tells the choice.
   */
  syncCpu?: number | 'auto' | 'off';
  /**
   * Write the tree's changed nodes (a checkpoint) once this many bytes of slabs were appended
   * since the last one. Larger: fewer node copies written, but more to replay on open and more
   * changed nodes held in memory. Also once the changed nodes (estimated) reach four times this,
   * and on close.
   */
  checkpointIntervalBytes?: number;
  /**
   * Also checkpoint at a commit whose changed nodes (estimated, since the last checkpoint) are at
   * most this many times its log record: sorted and clustered batches then write the tree once
   * instead of logging now and writing the nodes later (actions.ts). Default 1.5; 0: never.
   */
  checkpointTreeOverLogMax?: number;
  /**
   * Also checkpoint once writes have paused this long (ms; 0: never). Readers then find the whole
   * tree on disk, where gets take one call into the WASM node cache (wasm-cache.ts) instead of
   * walking changed nodes held as JS objects, and a reopen replays nothing. Paused as long again
   * after a checkpoint, the store gives the memory of its region of changed nodes back (Db
   * trimIdle). Default 1000.
   */
  checkpointIdleMs?: number;
  /**
   * Checkpoints with at least this many bytes of changed nodes (estimated) run in slices of
   * `checkpointSliceMs`, giving the event loop back between them (README, "Big checkpoints give
   * the event loop back"). Default 4 MiB; 0: every checkpoint.
   */
  slicedCheckpointBytesMin?: number;
  /** How long one slice of a sliced checkpoint runs before it yields (ms; 0: the smallest slices, 64 KiB of nodes). Default 10. */
  checkpointSliceMs?: number;
  /**
   * Checkpoints the store chooses itself that would run in slices (`slicedCheckpointBytesMin`)
   * are built in the background while later batches commit; only their encoding and append hold
   * writes back (README, "Big checkpoints run beside the writes"). Default true; false: the
   * writes wait for the whole checkpoint, as before.
   */
  backgroundCheckpoints?: boolean;
  /**
   * Online compaction by policy (off by default): after a checkpoint, compact when the in-use part
   * of the file is estimated to be `garbageRatio` garbage (compaction.ts) and is at least
   * `minFileBytes`. Errors are kept in `db.lastAutoCompactError`.
   */
  autoCompact?: AutoCompactOptions | false;
  /**
   * Listen on the Unix socket `<file>.sock` so `solifuge compact --online FILE` (and `stats`) can
   * reach this running store (control.ts). Off by default.
   */
  controlSocket?: boolean;
}

export interface RangeOptions {
  gt?: KeyInput;
  gte?: KeyInput;
  lt?: KeyInput;
  lte?: KeyInput;
  prefix?: KeyInput;
  reverse?: boolean;
  limit?: number;
}

export interface TransactionOptions {
  /** Stored with the commit; `db.lastTag` returns it (the cluster stores its applied instance). */
  tag?: number;
  /** Override the store's durability for the batch holding this transaction. */
  durable?: boolean;
}

export const DEFAULTS = {
  durable: true,
  maxKeyBytes: 64 * 1024,
  maxValueBytes: 64 * 1024 * 1024,
  inlineValueBytesMax: 128,
  nodeBytesMax: 4096,
  cacheBytes: 512 * 1024 * 1024,
  hugePages: true,
  decodedCacheBytes: 256 * 1024 * 1024,
  superblockIntervalBytes: 64 * 1024 * 1024,
  checkpointIntervalBytes: 64 * 1024 * 1024,
  checkpointTreeOverLogMax: 1.5,
  checkpointIdleMs: 1000,
  syncInlineBytesMax: 256 * 1024,
  syncSpinUs: os.availableParallelism() > 1 ? 1000 : 0,
  syncDirect: false,
  syncCpu: 'auto',
  slicedCheckpointBytesMin: 4 * 1024 * 1024,
  checkpointSliceMs: 10,
  backgroundCheckpoints: true,
} as const;

/** The options a store runs with: every one given or defaulted (`create` is open's alone). */
export type StoreOptions = Required<Omit<OpenOptions, 'create'>>;

/** Changed-node bytes (estimated) that force a checkpoint, in checkpointIntervalBytes. */
export const DIRTY_OVER_INTERVAL_MAX = 4;

/**
 * The region the changed nodes live in (asm/dirty.ts), for a store checkpointing every
 * `intervalBytes`: room for DIRTY_OVER_INTERVAL_MAX intervals of their estimated bytes, three
 * times over (a node's block is a power of two with room to grow: blocks held about three times
 * their nodes' estimates until round 30 sized them to the node, 1.7-2.2 times since; the room
 * left is what one big transaction can change), at least 64 MiB and at most 1 GiB. A checkpoint is also
 * due once a share of it is in use (db.ts DIRTY_REGION_SHARE_MAX).
 */
export function dirtyRegionBytes(intervalBytes: number): number {
  return Math.min(Math.max(3 * DIRTY_OVER_INTERVAL_MAX * Math.max(intervalBytes, 1), 64 * 2 ** 20), 2 ** 30);
}

/** The largest nodeBytesMax (see its check in resolveOptions). */
const NODE_BYTES_MAX = 32 * 1024;

/** Nodes of the largest size the cache must hold at once: a change's path, with room to spare. */
const CACHE_NODES_MIN = 32;

/** The largest node body the tree may hold: a full node, and one more record of the largest key and inline value. */
export function nodeBodyBytesMax(o: { nodeBytesMax: number; maxKeyBytes: number; inlineValueBytesMax: number }): number {
  return o.nodeBytesMax + o.maxKeyBytes + o.inlineValueBytesMax + 4096;
}

/**
 * The options `open` was given, with every default filled in and every value checked: a bad one
 * throws BadArgumentError before anything is opened.
 */
export function resolveOptions(options: OpenOptions): StoreOptions {
  const opts = {
    durable: options.durable ?? DEFAULTS.durable,
    readOnly: options.readOnly ?? false,
    repair: options.repair ?? false,
    maxKeyBytes: options.maxKeyBytes ?? DEFAULTS.maxKeyBytes,
    maxValueBytes: options.maxValueBytes ?? DEFAULTS.maxValueBytes,
    inlineValueBytesMax: options.inlineValueBytesMax ?? DEFAULTS.inlineValueBytesMax,
    nodeBytesMax: options.nodeBytesMax ?? DEFAULTS.nodeBytesMax,
    cacheBytes: options.cacheBytes ?? DEFAULTS.cacheBytes,
    decodedCacheBytes: options.decodedCacheBytes ?? DEFAULTS.decodedCacheBytes,
    hugePages: options.hugePages ?? DEFAULTS.hugePages,
    superblockIntervalBytes: options.superblockIntervalBytes ?? DEFAULTS.superblockIntervalBytes,
    checkpointIntervalBytes: options.checkpointIntervalBytes ?? DEFAULTS.checkpointIntervalBytes,
    checkpointTreeOverLogMax: options.checkpointTreeOverLogMax ?? DEFAULTS.checkpointTreeOverLogMax,
    checkpointIdleMs: options.checkpointIdleMs ?? DEFAULTS.checkpointIdleMs,
    syncInlineBytesMax: options.syncInlineBytesMax ?? DEFAULTS.syncInlineBytesMax,
    syncSpinUs: options.syncSpinUs ?? DEFAULTS.syncSpinUs,
    syncDirect: options.syncDirect ?? DEFAULTS.syncDirect,
    syncCpu: options.syncCpu ?? DEFAULTS.syncCpu,
    slicedCheckpointBytesMin: options.slicedCheckpointBytesMin ?? DEFAULTS.slicedCheckpointBytesMin,
    checkpointSliceMs: options.checkpointSliceMs ?? DEFAULTS.checkpointSliceMs,
    backgroundCheckpoints: options.backgroundCheckpoints ?? DEFAULTS.backgroundCheckpoints,
    autoCompact: options.autoCompact ?? false,
    controlSocket: options.controlSocket ?? false,
  };
  if (!(opts.syncSpinUs >= 0 && opts.syncSpinUs <= 1_000_000)) throw new BadArgumentError('syncSpinUs must be within 0 .. 1000000');
  if (!(opts.slicedCheckpointBytesMin >= 0)) throw new BadArgumentError('slicedCheckpointBytesMin must be a non-negative number');
  if (!(opts.checkpointSliceMs >= 0 && opts.checkpointSliceMs <= 10_000)) throw new BadArgumentError('checkpointSliceMs must be within 0 .. 10000');
  if (!(opts.checkpointTreeOverLogMax >= 0 && opts.checkpointTreeOverLogMax <= 1000)) throw new BadArgumentError('checkpointTreeOverLogMax must be within 0 .. 1000');
  // A node, room to grow and a copy's slack stay within one block of the changed nodes' region
  // (asm/dirty.ts DIRTY_BLOCK_MAX, 256 KiB; asm/wtree.ts asks for 4 × nodeBytesMax in a seal).
  if (!(opts.nodeBytesMax >= 512 && opts.nodeBytesMax <= NODE_BYTES_MAX)) throw new BadArgumentError(`nodeBytesMax must be within 512 B .. ${NODE_BYTES_MAX >> 10} KiB`);
  // A key goes into the tree's PROBE area whole (wasm-cache.ts PROBE_BYTES_MAX).
  if (!(opts.maxKeyBytes >= 1 && opts.maxKeyBytes <= PROBE_BYTES_MAX)) throw new BadArgumentError(`maxKeyBytes must be within 1 B .. ${PROBE_BYTES_MAX >> 10} KiB`);
  // A value goes through the slab encoder's linear memory whole (plan.ts PLAN_VALUE_BYTES_MAX).
  if (!(opts.maxValueBytes >= 0 && opts.maxValueBytes <= PLAN_VALUE_BYTES_MAX)) throw new BadArgumentError(`maxValueBytes must be within 0 .. ${PLAN_VALUE_BYTES_MAX >> 20} MiB`);
  if (!(opts.cacheBytes >= 0)) throw new BadArgumentError('cacheBytes must be a non-negative number');
  opts.cacheBytes = Math.max(opts.cacheBytes, WASM_CACHE_BYTES_MIN);
  // Every node on a change's path is in the cache at once (wasm-tree-writer.ts CacheTooSmallError).
  if (opts.cacheBytes < CACHE_NODES_MIN * nodeBodyBytesMax(opts)) {
    throw new BadArgumentError(`cacheBytes must hold at least ${CACHE_NODES_MIN} nodes of nodeBytesMax (with maxKeyBytes): ${CACHE_NODES_MIN * nodeBodyBytesMax(opts)} bytes`);
  }
  if (opts.cacheBytes + dirtyRegionBytes(opts.checkpointIntervalBytes) > 3 * 2 ** 30) {
    throw new BadArgumentError(`cacheBytes and the changed nodes' region (${dirtyRegionBytes(opts.checkpointIntervalBytes) >> 20} MiB for this checkpointIntervalBytes) must stay within 3 GiB (WebAssembly memory is 32-bit)`);
  }
  if (typeof opts.hugePages !== 'boolean') throw new BadArgumentError('hugePages must be a boolean');
  if (typeof opts.syncDirect !== 'boolean') throw new BadArgumentError('syncDirect must be a boolean');
  if (!(opts.syncCpu === 'auto' || opts.syncCpu === 'off' || (Number.isInteger(opts.syncCpu) && opts.syncCpu >= 0 && opts.syncCpu < 1024))) {
    throw new BadArgumentError("syncCpu must be 'auto', 'off' or a CPU number within 0 .. 1023");
  }
  if (typeof opts.syncCpu === 'number') assertAllowedCpu(opts.syncCpu);
  if (opts.inlineValueBytesMax > opts.nodeBytesMax / 4) throw new BadArgumentError('inlineValueBytesMax must be at most nodeBytesMax / 4');
  return opts;
}

/** Throws unless `cpu` is one this process may run on (where /proc tells). */
function assertAllowedCpu(cpu: number): void {
  const allowed = allowedCpusOfProcess();
  if (allowed !== null && !allowed.includes(cpu)) {
    throw new BadArgumentError(`syncCpu ${cpu} is not a CPU this process may run on (${allowed.join(',')})`);
  }
}
