//! The writer over the tree in linear memory (asm/wtree.ts): the store's writer since round 27
//! (batch-writer.ts drives it for db.ts), doing what tree.ts TreeWriter, now the tests' reference,
//! does, with keys and values as bytes or binary strings.
//!
//! Owns: one batch's (or transaction's) tree, and the references it holds on dirty nodes. A batch
//! starts from the published tree. In in-place mode it changes the published tree's own nodes in
//! place, journaled (wtreePutInPlace), until something cannot be done that way (a split, a delete,
//! a savepoint, a reader wanting the published contents): then it seals, taking a tree of its own
//! that holds its changes while the published tree gets its contents back. `publish()` ends the
//! batch with its changes kept, `abort()` without.
//! References: the published root's is the store's; the writer holds one on its own root (once it
//! has one), each savepoint one on its root, each frozen root one until the caller releases it.
//! A clean node the tree needs and the cache does not hold is loaded (TreeHost.load) and the call
//! made again: the asm side finds everything it needs before it changes anything.
//! One writer at a time per instance: the in-place journal and the undo area are the instance's.
import { Buffer } from 'node:buffer';
import type { CacheExports } from '../wasm/module.js';
import { AssertionError, CorruptionError, SolifugeError, assert, childNotOlder } from './errors.js';
import { ValueRef } from './node.js';
import { PROBE_BYTES_MAX } from './wasm-cache.js';
import type { TreeRoot } from './wasm-tree-cursor.js';
import type { StagedSets } from './staged-sets.js';

/** asm/wtree.ts results. */
const PUT_DONE = 0;
const DEL_NOT_FOUND = 1;
const PUT_MISS = 3;
const PUT_CHILD_NOT_OLDER = 4;
const PUT_NEEDS_SEAL = 5;
const PUT_NO_MEMORY = -2;
const PUT_TOO_DEEP = -3;
/** asm/cache.ts find() results. */
const FOUND_INLINE = 1;
const FOUND_REF = 2;

/** The instance the tree lives in: its exports, its areas, and how to load a node it misses. */
export interface TreeHost {
  readonly ex: CacheExports;
  readonly probe: number;
  readonly input: number;
  readonly result: number;
  /** A fresh view of the instance's memory (it may have grown). */
  mem(): Buffer;
  /**
   * Reads, checks and caches the clean node at `pos` (entry length `len`). A node too big for the
   * cache is left out: the writer, finding it missing again, throws CacheTooSmallError.
   */
  load(pos: number, len: number): void;
}

/**
 * The writer's dirty region is full. The commit fails with nothing written, and the next batch
 * starts after a checkpoint, which frees the region (db.ts makeRoomForBatch); a commit that still
 * does not fit changes more of the tree than the region holds.
 */
export class TreeMemoryFullError extends SolifugeError {
  constructor() {
    super('COMMIT_TOO_LARGE', "the commit changes more of the tree than the writer's region for changed nodes has room for (it is sized from checkpointIntervalBytes), nothing was written: a retry starts after a checkpoint has emptied the region; if it still fails, split the transaction, or open the store with a larger checkpointIntervalBytes");
  }
}

/** The node cache cannot hold a change's whole path at once (its size against nodeBytesMax). */
export class CacheTooSmallError extends SolifugeError {
  constructor(readonly pos: number) {
    super('BAD_ARGUMENT', `the node cache is too small to hold a change's path at once (node ${pos} was evicted while the change needed it): give the store more cacheBytes, or smaller nodes`);
  }
}

/**
 * A key as the writer takes it: bytes, or a binary string (keys.ts BinKey: one char per byte),
 * written into the instance as it is, without a Buffer in between.
 */
export type TreeKey = Uint8Array | string;

/** A value as the tree holds it: inline bytes (or a binary string), or a Value entry (its position, or a pending id's). */
export type TreeValue = Uint8Array | string | ValueRef;

/**
 * A savepoint: a root held, and the count with it; or (root null) the published tree itself,
 * taken while the batch changes it in place with nothing journaled yet: going back to it undoes
 * the journal (or drops the tree a seal took since), and the batch goes on in place.
 */
export interface TreeSavepoint {
  readonly root: TreeRoot | null;
  readonly count: number;
}

const EMPTY: TreeRoot = { addr: 0, pos: 0, len: 0 };

export class WasmTreeWriter {
  /** The writer's own tree, one reference held (or clean, or empty); null while changing the published one in place. */
  private own: TreeRoot | null;
  count: number;

  constructor(
    private readonly host: TreeHost,
    /** The published tree: the store's reference, never this writer's. */
    private readonly published: TreeRoot,
    count: number,
    private readonly maxNodeBytes: number,
    inPlace: boolean,
  ) {
    this.count = count;
    if (inPlace && published.addr !== 0) this.own = null;
    else {
      if (published.addr !== 0) host.ex.wtreeRetain(published.addr); // the writer's, for its first change to take
      this.own = { ...published };
    }
  }

  /** The tree as the writer sees it (the published root while changing it in place). */
  get root(): TreeRoot {
    return this.own ?? this.published;
  }

  /** Inserts or replaces; true when the key is new. */
  set(key: TreeKey, val: TreeValue): boolean {
    const ref = val instanceof ValueRef ? val : null;
    const inline = val instanceof ValueRef ? null : val;
    const len = ref !== null ? ref.len : (inline as Uint8Array | string).length;
    const isRef = ref !== null ? 1 : 0;
    const refPos = ref !== null ? ref.pos : 0;
    // Called once per key written: the call is made directly, and only a miss (a clean node to
    // load first) goes through callWithLoads, with the closure that makes it again.
    if (this.own === null) {
      writeInputs(this.host, key, inline);
      let r = this.putInPlace(key.length, len, isRef, refPos);
      r = r === PUT_MISS ? this.call(key, inline, () => this.putInPlace(key.length, len, isRef, refPos)) : checked(this.host, r);
      if (r === PUT_DONE) return this.counted(this.host.mem().readUInt32LE(this.host.result) === 1);
      if (r !== PUT_NEEDS_SEAL) throw new AssertionError(`wtreePutInPlace returned ${r}`);
      this.seal();
    }
    writeInputs(this.host, key, inline);
    let r = this.putOwn(key.length, len, isRef, refPos);
    r = r === PUT_MISS ? this.call(key, inline, () => this.putOwn(key.length, len, isRef, refPos)) : checked(this.host, r);
    if (r !== PUT_DONE) throw new AssertionError(`wtreePut returned ${r}`);
    const m = this.host.mem();
    const addr = m.readUInt32LE(this.host.result);
    // The same dirty root (the path was this writer's already): the object stays.
    const own = this.own as TreeRoot;
    if (addr !== own.addr || own.pos !== 0 || own.len !== 0) this.own = { addr, pos: 0, len: 0 };
    return this.counted(m.readUInt32LE(this.host.result + 4) === 1);
  }

  /**
   * Makes the sets staged (staged-sets.ts) and not made yet, in order, as set() would one by
   * one; returns how many keys were new. A throw leaves the sets before the one that failed made
   * (and counted). The caller marks them made (StagedSets.allMade).
   */
  putStaged(staged: StagedSets): number {
    const ex = this.host.ex;
    const end = staged.bytes;
    let at = staged.applied;
    let inserted = 0;
    let loaded: number[] | null = null;
    while (at < end) {
      const inPlace = this.own === null;
      const own = this.own ?? this.published;
      const r = ex.wtreePutStaged(own.addr, inPlace ? 0 : own.pos, inPlace ? 0 : own.len, inPlace ? 1 : 0, staged.address, at, end, this.maxNodeBytes);
      const stoppedAt = ex.wtreeStagedAt() >>> 0;
      inserted += ex.wtreeStagedInserted();
      if (!inPlace) {
        // The root after the sets made, holding the writer's reference (the same one if none was).
        const addr = ex.wtreeStagedRoot() >>> 0;
        if (addr !== own.addr) this.own = { addr, pos: 0, len: 0 };
      }
      if (stoppedAt !== at) loaded = null; // progress: a node loaded again now is no loop
      at = stoppedAt;
      if (r === PUT_DONE) break;
      if (r === PUT_NEEDS_SEAL && inPlace) {
        this.seal();
        continue;
      }
      if (r === PUT_MISS) {
        loaded = loadMissed(this.host, loaded);
        continue;
      }
      this.count += inserted;
      inserted = 0;
      checked(this.host, r); // throws what the asm side reported
      throw new AssertionError(`wtreePutStaged returned ${r}`);
    }
    this.count += inserted;
    return inserted;
  }

  /** wtreePutInPlace on the published tree, the key and value already at PROBE and INPUT. */
  private putInPlace(keyLen: number, len: number, isRef: number, refPos: number): number {
    return this.host.ex.wtreePutInPlace(this.published.addr, keyLen, this.host.input, len, isRef, refPos, this.maxNodeBytes);
  }

  /** wtreePut on the writer's own tree, the key and value already at PROBE and INPUT. */
  private putOwn(keyLen: number, len: number, isRef: number, refPos: number): number {
    const own = this.own as TreeRoot;
    return this.host.ex.wtreePut(own.addr, own.pos, own.len, keyLen, this.host.input, len, isRef, refPos, this.maxNodeBytes);
  }

  /** Removes a key; false (and nothing changed) when it is absent. */
  delete(key: TreeKey): boolean {
    this.seal(); // deletes merge: never in place
    const own = this.own as TreeRoot;
    if (own.addr === 0 && !(own.pos > 0)) return false;
    const r = this.call(key, null, () => this.host.ex.wtreeDelete(own.addr, own.pos, own.len, key.length, this.maxNodeBytes));
    if (r === DEL_NOT_FOUND) return false;
    if (r !== PUT_DONE) throw new AssertionError(`wtreeDelete returned ${r}`);
    const m = this.host.mem();
    const addr = m.readUInt32LE(this.host.result);
    this.own = addr !== 0 ? { addr, pos: 0, len: 0 } : { addr: 0, pos: m.readDoubleLE(this.host.result + 8), len: m.readUInt32LE(this.host.result + 4) };
    this.count--;
    return true;
  }

  /** The value under `key` in the writer's tree (its own changes included): bytes, a Value entry's reference, or undefined. */
  get(key: TreeKey): Buffer | ValueRef | undefined {
    return findIn(this.host, this.root, key);
  }

  /**
   * Ends changes in place for the rest of the batch: the writer takes a tree of its own holding
   * them (every journaled path copied), and the published tree gets its contents back. Nothing to
   * do once sealed.
   */
  seal(): void {
    if (this.own !== null) return;
    const r = this.host.ex.wtreeSeal(this.published.addr);
    if (r === PUT_NO_MEMORY) throw new TreeMemoryFullError();
    if (r !== PUT_DONE) throw new AssertionError(`wtreeSeal returned ${r}`);
    this.own = { addr: this.host.mem().readUInt32LE(this.host.result), pos: 0, len: 0 };
  }

  /**
   * A point to come back to (restore), or to give up (drop): the current tree, held. At the start
   * of an in-place batch (nothing journaled) it is the published tree, and the batch stays in
   * place: a transaction that is the batch's first job does not cost it its changes in place.
   */
  savepoint(): TreeSavepoint {
    if (this.own === null && this.host.ex.wtreeJournaled() === 0) return { root: null, count: this.count };
    const root = this.freeze();
    return { root, count: this.count };
  }

  /** Back to a savepoint, which this uses up: the changes since are dropped. */
  restore(s: TreeSavepoint): void {
    if (s.root === null) {
      // The published tree as the batch found it: undo what was changed in place, or drop the
      // tree a seal took since (the seal gave the published tree its contents back).
      if (this.own === null) this.host.ex.wtreeUndo();
      else this.releaseOwn();
      this.own = null;
    } else {
      this.releaseOwn();
      this.own = { ...s.root }; // the savepoint's reference becomes the writer's
    }
    this.count = s.count;
  }

  /** Gives up a savepoint without going back to it. */
  drop(s: TreeSavepoint): void {
    if (s.root !== null && s.root.addr !== 0) this.host.ex.wtreeRelease(s.root.addr);
  }

  /**
   * A checkpoint wrote the writer's tree and switched it to its written nodes (tree-slab.ts
   * `written`): the writer's reference moved to `root`.
   */
  rootWritten(root: TreeRoot): void {
    assert(this.own !== null, 'a tree changed in place was checkpointed without a seal');
    this.own = { ...root };
  }

  /** Whether the batch is changing the published tree in place (not sealed yet). */
  get inPlace(): boolean {
    return this.own === null;
  }

  /** Changes made in place so far (the journal's length). */
  get changesInPlace(): number {
    return this.own === null ? this.host.ex.wtreeJournaled() : 0;
  }

  /**
   * The current tree, held for a reader (a cursor): the caller releases it (wtreeRelease) when
   * done. Seals first: a frozen tree is never changed in place.
   */
  freeze(): TreeRoot {
    this.seal();
    const root = { ...(this.own as TreeRoot) };
    if (root.addr !== 0) this.host.ex.wtreeRetain(root.addr);
    return root;
  }

  /**
   * Ends the batch, its changes kept: returns the tree to publish, with one reference (if dirty)
   * for the caller, who then drops the one it held on the published tree (the same root, when the
   * batch changed it in place or changed nothing).
   */
  publish(): TreeRoot {
    if (this.own === null) {
      this.host.ex.wtreeSettle(); // the changes in place are the published tree's now
      this.host.ex.wtreeRetain(this.published.addr);
      this.own = { ...EMPTY };
      return { ...this.published };
    }
    const root = this.own;
    this.own = { ...EMPTY }; // used up
    return root;
  }

  /** Ends the batch, its changes dropped: the published tree is as it was. */
  abort(): void {
    if (this.own === null) this.host.ex.wtreeUndo();
    else this.releaseOwn();
    this.own = { ...EMPTY };
  }

  private releaseOwn(): void {
    if (this.own !== null && this.own.addr !== 0) this.host.ex.wtreeRelease(this.own.addr);
  }

  private counted(inserted: boolean): boolean {
    if (inserted) this.count++;
    return inserted;
  }

  private call(key: TreeKey, val: Uint8Array | string | null, op: () => number): number {
    return callWithLoads(this.host, key, val, op);
  }
}

/**
 * The value under `key` in the tree at `root` (dirty or clean): inline bytes (a fresh copy), the
 * reference a leaf holds (its position, or a pending id's: the caller resolves it), or undefined.
 */
export function findIn(host: TreeHost, root: TreeRoot, key: TreeKey): Buffer | ValueRef | undefined {
  // Longer than the probe area holds, so longer than any key the store takes (maxKeyBytes): absent.
  if ((root.addr === 0 && !(root.pos > 0)) || key.length > PROBE_BYTES_MAX) return undefined;
  // Called once per read: the call is made directly, and only a miss (a clean node to load first)
  // goes through callWithLoads, with the closure that makes it again.
  putBytes(host.mem(), key, host.probe);
  let r = findOnce(host.ex, root, key.length);
  r = r === PUT_MISS ? callWithLoads(host, key, null, () => findOnce(host.ex, root, key.length)) : checked(host, r);
  const m = host.mem();
  if (r === FOUND_INLINE) {
    const at = m.readUInt32LE(host.result);
    const len = m.readUInt32LE(host.result + 4);
    // The copy through a plain Uint8Array view: ~60 ns a 100-byte value, against ~90 for
    // Buffer.from of a Buffer's subarray (bench/RESULTS.md round 29).
    const out = Buffer.allocUnsafe(len);
    out.set(new Uint8Array(m.buffer, at, len));
    return out;
  }
  if (r === FOUND_REF) return new ValueRef(m.readDoubleLE(host.result), m.readUInt32LE(host.result + 8), undefined);
  if (r !== 0) throw new AssertionError(`the cache's find returned ${r}`);
  return undefined;
}

/** One find from `root` of the key at PROBE (`keyLen` bytes): from a dirty root by address, else by position. */
function findOnce(ex: CacheExports, root: TreeRoot, keyLen: number): number {
  return root.addr !== 0 ? ex.cacheFindDirty(root.addr, keyLen) : ex.cacheFind(root.pos, root.len, keyLen);
}

/**
 * A key or inline value into `m` at `at`: bytes as they are, a binary string (one char per byte)
 * by a JS loop when short, cheaper than a call into C++.
 */
export function putBytes(m: Buffer, b: Uint8Array | string, at: number): void {
  if (typeof b !== 'string') {
    m.set(b, at);
    return;
  }
  const n = b.length;
  if (n <= 32) for (let i = 0; i < n; i++) m[at + i] = b.charCodeAt(i);
  else m.write(b, at, n, 'latin1');
}

/**
 * Puts `key` at PROBE (and an inline value at INPUT), then runs `op`, loading each clean node
 * it misses and running it again. Errors it reports are thrown; other results are returned.
 */
function callWithLoads(host: TreeHost, key: TreeKey, val: Uint8Array | string | null, op: () => number): number {
  let loaded: number[] | null = null;
  for (;;) {
    writeInputs(host, key, val);
    const r = op();
    if (r !== PUT_MISS) return checked(host, r);
    loaded = loadMissed(host, loaded);
  }
}

/**
 * Loads the clean node a call missed (RESULT: its position and entry length); `loaded` lists
 * those loaded since the call last made progress. Returns that list with this one.
 */
function loadMissed(host: TreeHost, loaded: number[] | null): number[] {
  const mr = host.mem();
  const pos = mr.readDoubleLE(host.result);
  // Asked for a node it had loaded already: the cache evicted it to make room for the rest of
  // the path, and would again. Said instead of going round forever.
  if (loaded?.includes(pos) === true) throw new CacheTooSmallError(pos);
  const list = loaded ?? [];
  list.push(pos);
  host.load(pos, mr.readUInt32LE(host.result + 8));
  return list;
}

/** Puts `key` at PROBE and an inline value at INPUT, where the asm calls read them. */
function writeInputs(host: TreeHost, key: TreeKey, val: Uint8Array | string | null): void {
  if (key.length > PROBE_BYTES_MAX) throw new AssertionError(`a key of ${key.length} bytes is past the tree's ${PROBE_BYTES_MAX}`);
  const m = host.mem();
  putBytes(m, key, host.probe);
  if (val !== null) putBytes(m, val, host.input);
}

/** A result other than a miss: the errors the asm side reports are thrown, the rest returned. */
function checked(host: TreeHost, r: number): number {
  if (r === PUT_NO_MEMORY) throw new TreeMemoryFullError();
  if (r === PUT_CHILD_NOT_OLDER) {
    const mr = host.mem();
    throw childNotOlder(mr.readDoubleLE(host.result), mr.readDoubleLE(host.result + 8));
  }
  if (r === PUT_TOO_DEEP) throw new CorruptionError(0, 'the tree is deeper than the writer can descend');
  return r;
}
