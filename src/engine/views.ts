//! Read views over a tree: range options, iterators, snapshots and the transaction handle.
//! They hold a root (or the batch's writer) and call back into the Db for lookups and values.
import { Buffer } from 'node:buffer';
import { deletePrefixIn, type BatchAction } from './actions.js';
import type { Db, Reader } from './db.js';
import type { RangeOptions } from './options.js';
import { BadArgumentError, ClosedError } from './errors.js';
import { toBinKey, toValueBuffer as toValueBytes, type BinKey, type KeyInput, type ValueInput } from './keys.js';
import type { ValueRef } from './node.js';
import type { BatchWriter } from './batch-writer.js';
import type { ByteBounds, TreeRoot } from './wasm-tree-cursor.js';

/** What the iterators walk (store-tree.ts TreeRangeCursor). */
interface Cursor {
  next(): boolean;
  keyBuffer(): Buffer;
  valueBuffer(materialize: (v: Buffer | ValueRef) => Buffer): Buffer;
}

/** A range as the store's cursors take it: keys as binary strings (keys.ts BinKey). */
export interface Bounds {
  /** Lower bound and whether it is included. */
  low?: BinKey;
  lowInclusive?: boolean;
  high?: BinKey;
  highInclusive?: boolean;
  /** Only keys starting with this prefix (in addition to the bounds). */
  prefix?: BinKey;
  reverse?: boolean;
}

export function toBounds(o: RangeOptions): Bounds {
  const b: Bounds = { reverse: o.reverse === true };
  if (o.gte !== undefined) {
    b.low = toBinKey(o.gte);
    b.lowInclusive = true;
  }
  if (o.gt !== undefined) {
    const k = toBinKey(o.gt);
    if (b.low === undefined || k >= b.low) {
      b.low = k;
      b.lowInclusive = false;
    }
  }
  if (o.lte !== undefined) {
    b.high = toBinKey(o.lte);
    b.highInclusive = true;
  }
  if (o.lt !== undefined) {
    const k = toBinKey(o.lt);
    if (b.high === undefined || k <= b.high) {
      b.high = k;
      b.highInclusive = false;
    }
  }
  if (o.prefix !== undefined) b.prefix = toBinKey(o.prefix);
  if (o.limit !== undefined && !(Number.isInteger(o.limit) || o.limit === Infinity)) {
    throw new BadArgumentError('limit must be an integer');
  }
  return b;
}

/** Bounds with their keys as bytes (the WebAssembly tree's cursors). */
export function toByteBounds(b: Bounds): ByteBounds {
  const bytes = (k: string | undefined) => (k === undefined ? undefined : Buffer.from(k, 'latin1'));
  return {
    low: bytes(b.low),
    lowInclusive: b.lowInclusive,
    high: bytes(b.high),
    highInclusive: b.highInclusive,
    prefix: bytes(b.prefix),
    reverse: b.reverse,
  };
}

/**
 * Lazy range iterators. `assertLive` runs before every step, so an iterator used after its store
 * closed, its snapshot was released or its transaction ended throws ClosedError instead of
 * reading through a file descriptor that may since belong to another file. `onEnd` runs when the
 * iteration finishes, breaks (return()) or throws.
 */
export function entryIterator(
  db: Db, c: Cursor, limit: number | undefined, assertLive: () => void, onEnd?: () => void,
): IterableIterator<[Buffer, Buffer]> {
  return endsWhenClosed(entries(db, c, limit, assertLive, onEnd), onEnd);
}

export function keyIterator(c: Cursor, limit: number | undefined, assertLive: () => void, onEnd?: () => void): IterableIterator<Buffer> {
  return endsWhenClosed(keys(c, limit, assertLive, onEnd), onEnd);
}

/**
 * A generator closed (return()) before its first next() never runs its `finally`: `onEnd` (a
 * snapshot's release) is run by return() itself then. Without it the pin stayed until the
 * iterator was garbage-collected, and online compaction waited for it. `onEnd` is idempotent.
 * Only return() is wrapped: next() stays the generator's own.
 */
function endsWhenClosed<T>(g: Generator<T, void, undefined>, onEnd: (() => void) | undefined): Generator<T, void, undefined> {
  if (onEnd === undefined) return g;
  const close = g.return.bind(g);
  g.return = (v: void) => {
    try {
      return close(v);
    } finally {
      onEnd();
    }
  };
  return g;
}

function* entries(
  db: Db, c: Cursor, limit: number | undefined, assertLive: () => void, onEnd?: () => void,
): Generator<[Buffer, Buffer], void, undefined> {
  const materialize = (v: Buffer | ValueRef): Buffer => db.materialize(v);
  try {
    let left = limit === undefined || limit < 0 ? Infinity : limit;
    while (left-- > 0) {
      assertLive();
      if (!c.next()) break;
      yield [c.keyBuffer(), c.valueBuffer(materialize)];
    }
  } finally {
    onEnd?.();
  }
}

function* keys(c: Cursor, limit: number | undefined, assertLive: () => void, onEnd?: () => void): Generator<Buffer, void, undefined> {
  try {
    let left = limit === undefined || limit < 0 ? Infinity : limit;
    while (left-- > 0) {
      assertLive();
      if (!c.next()) break;
      yield c.keyBuffer();
    }
  } finally {
    onEnd?.();
  }
}

/** A pinned, consistent read view. Release it when done. */
export class Snapshot implements Reader {
  private released = false;
  /** @internal */
  get rootForGetWith(): TreeRoot {
    return this.root;
  }
  constructor(
    private readonly db: Db,
    /** Held (a reference, if dirty) until release(). */
    private readonly root: TreeRoot,
    private readonly keyCount: number,
    readonly tag: number | undefined,
    readonly seq: number,
  ) {}
  /** @internal Throws ClosedError once the snapshot is released or its store closed. */
  assertUsable(): void {
    if (this.released) throw new ClosedError('snapshot');
    if (this.db.isClosed) throw new ClosedError();
  }
  private assertLive(): void {
    this.assertUsable();
  }
  get(key: KeyInput): Buffer | undefined {
    this.assertLive();
    const v = this.db.lookupIn(this.root, key);
    return v === undefined ? undefined : this.db.materialize(v);
  }
  exists(key: KeyInput): boolean {
    this.assertLive();
    return this.db.lookupIn(this.root, key) !== undefined;
  }
  count(): number {
    this.assertLive();
    return this.keyCount;
  }
  range(opts: RangeOptions = {}): IterableIterator<[Buffer, Buffer]> {
    this.assertLive();
    return entryIterator(this.db, this.db.cursor(this.root, opts), opts.limit, () => this.assertLive());
  }
  keys(opts: RangeOptions = {}): IterableIterator<Buffer> {
    this.assertLive();
    return keyIterator(this.db.cursor(this.root, opts), opts.limit, () => this.assertLive());
  }
  release(): void {
    if (this.released) return;
    this.released = true;
    this.db.unpin(this.seq, this.root);
  }
}

/** The handle a transaction function gets. Every read sees the transaction's own writes. */
export class Transaction implements Reader {
  private ended = false;
  constructor(
    private readonly db: Db,
    private readonly w: BatchWriter,
    private readonly actions: BatchAction[],
  ) {}
  /** @internal */
  end(): void {
    this.ended = true;
  }
  private live(): BatchWriter {
    if (this.ended) throw new ClosedError('transaction');
    return this.w;
  }
  get(key: KeyInput): Buffer | undefined {
    const v = this.live().get(toBinKey(key));
    return v === undefined ? undefined : this.db.materialize(v);
  }
  exists(key: KeyInput): boolean {
    return this.live().get(toBinKey(key)) !== undefined;
  }
  count(): number {
    const w = this.live();
    w.applyLater();
    return w.count;
  }
  set(key: KeyInput, value: ValueInput): void {
    const w = this.live();
    const k = this.db.checkKey(key);
    // Copied into the instance now; made by the next read or change of the tree
    // (BatchWriter.setLater), or while the commit syncs. The action names the copy.
    this.actions.push({ key: k, val: w.setLater(k, this.db.txValue(value)) });
  }
  delete(key: KeyInput): boolean {
    const w = this.live();
    const k = this.db.checkKey(key);
    const deleted = w.delete(k);
    if (deleted) this.actions.push({ key: k, val: null });
    return deleted;
  }
  deletePrefix(prefix: KeyInput): number {
    const w = this.live();
    return deletePrefixIn(this.db.storeTree, w, this.db.checkKey(prefix), this.actions);
  }
  /**
   * Arakoon's TEST_AND_SET (spec/arakoon-client-protocol.md §5.2): if the current value equals
   * `expected` (null: the key is absent), store `wanted` (null: delete). Returns the previous
   * value (undefined when absent) whether or not it swapped.
   */
  testAndSet(key: KeyInput, expected: ValueInput | null, wanted: ValueInput | null): Buffer | undefined {
    const old = this.get(key);
    const matches = expected === null ? old === undefined : old !== undefined && old.equals(toValueBytes(expected));
    if (matches) this.replace(key, wanted);
    return old;
  }
  /** Arakoon's REPLACE: stores `wanted` (null: delete, no error if absent); returns the previous value. */
  replace(key: KeyInput, wanted: ValueInput | null): Buffer | undefined {
    const old = this.get(key);
    if (wanted === null) this.delete(key);
    else this.set(key, wanted);
    return old;
  }
  /** Arakoon's CONFIRM: a set that writes nothing when the stored value is already equal. */
  confirm(key: KeyInput, value: ValueInput): void {
    const old = this.get(key);
    if (old === undefined || !old.equals(toValueBytes(value))) this.set(key, value);
  }
  range(opts: RangeOptions = {}): IterableIterator<[Buffer, Buffer]> {
    const w = this.live();
    // Held until the batch ends: later writes in this transaction copy instead of changing it.
    const root = w.freeze();
    return entryIterator(this.db, this.db.cursor(root, opts), opts.limit, () => this.live());
  }
  keys(opts: RangeOptions = {}): IterableIterator<Buffer> {
    const w = this.live();
    const root = w.freeze();
    return keyIterator(this.db.cursor(root, opts), opts.limit, () => this.live());
  }
}
