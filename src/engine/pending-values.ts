//! Values the writer's tree holds before their Value entry is in the file (asm/pending.ts).
//!
//! Owns: the ids such values go by in the tree's leaves, the bytes of each until its entry is
//! appended, and the table of their positions in the instance's memory that the encoder and the
//! cache read. A value too big to be inline gets an id when the tree takes it before the slab that
//! writes it is appended (a transaction's set, read back by the transaction itself); the slab then
//! stages its entry (`stage`), and once it is appended the id has a position for good (`place`).
//! A leaf keeps naming the id (-(id + 1)) until a checkpoint writes it, when the position goes into
//! the entry and the cache's copy.
//! Table entry id: >= 0 the position; -(i + 1) entry i of the slab being encoded; NaN not written.
//! Id 0 is never handed out: -(0 + 1) = -1 is what a ValueRef not in the tree yet holds.
//! Invariant: ids are forgotten (`reset`) only while the tree's memory holds no dirty node, so
//! no leaf can still name one.
import { Buffer } from 'node:buffer';
import { allocOrThrow, growCapacity, type CacheExports } from '../wasm/module.js';
import { AssertionError, assert } from './errors.js';
import { ValueRef } from './node.js';

const TABLE_ROWS_MIN = 1024;

export class PendingValues {
  private table = 0;
  private cap = 0;
  /** The next id; ids 1 .. next - 1 are in use. */
  private next = 1;
  /** Bytes of the ids not yet placed (undefined once placed). */
  private readonly bytes: Array<Buffer | undefined> = [];
  /** Ids not placed yet: a checkpoint writes them all (a leaf it writes may name any of them). */
  private readonly unplaced = new Set<number>();

  constructor(
    private readonly ex: CacheExports,
    /** Told after this allocated in the instance (its memory may have grown). */
    private readonly memoryGrown: () => void,
  ) {}

  /** Ids in use (tests and stats). */
  get count(): number {
    return this.next - 1;
  }

  /**
   * Gives the value `v` (a ValueRef not in the tree yet: pos -1, its bytes held) an id, which it
   * now holds as -(id + 1): the reference the tree stores. The slab that carries `v` writes it.
   */
  add(v: ValueRef): void {
    assert(v.pos === -1 && v.bytes !== undefined && v.bytes.length === v.len, 'a pending value needs its bytes, and no id yet');
    if (this.next >= this.cap) this.grow();
    const id = this.next++;
    this.f64()[this.table / 8 + id] = NaN;
    this.bytes[id] = v.bytes;
    this.unplaced.add(id);
    v.pos = -(id + 1);
    this.register();
  }

  /** The id a reference the tree stores names (pos <= -2), or 0 for a position or a value not in the tree. */
  static idOf(pos: number): number {
    return pos <= -2 ? -pos - 1 : 0;
  }

  /**
   * What a reference read from the tree stands for: itself when it holds a position; else the
   * value's position once placed, or its bytes.
   */
  resolve(pos: number, len: number): ValueRef {
    const id = PendingValues.idOf(pos);
    if (id === 0) return new ValueRef(pos, len, undefined);
    if (id >= this.next) throw new AssertionError(`the tree names pending value ${id}, past the ${this.next - 1} handed out`);
    const at = this.f64()[this.table / 8 + id];
    if (at >= 0) return new ValueRef(at, len, undefined);
    const bytes = this.bytes[id];
    if (!(bytes !== undefined && bytes.length === len)) throw new AssertionError(`pending value ${id} has neither a position nor its bytes`);
    return new ValueRef(-1, len, bytes);
  }

  /** The slab being encoded carries id's Value entry as its entry `entry`. */
  stage(id: number, entry: number): void {
    this.set(id, -(entry + 1));
  }

  /** That slab was not appended: id is unwritten again. */
  unstage(id: number): void {
    this.set(id, NaN);
  }

  /** That slab was appended: id's entry is at `pos`, and its bytes are no longer needed. */
  place(id: number, pos: number): void {
    this.set(id, pos);
    this.bytes[id] = undefined;
    this.unplaced.delete(id);
  }

  /**
   * The ids not placed yet, with their bytes: those the tree took outside any logged set (a
   * compaction's copies), and those of sets since dropped (an aborted transaction's, a key set
   * twice in a batch), which a checkpoint then writes as entries nothing refers to.
   */
  unplacedValues(): Array<{ id: number; bytes: Buffer }> {
    const out: Array<{ id: number; bytes: Buffer }> = [];
    for (const id of this.unplaced) out.push({ id, bytes: this.bytes[id] as Buffer });
    return out;
  }

  /**
   * Drops an id whose set was undone (an aborted batch or transaction): no tree names it any
   * more, and no slab is to write its bytes.
   */
  forget(id: number): void {
    if (!(id > 0 && id < this.next)) throw new AssertionError(`pending value ${id} is not one handed out`);
    this.bytes[id] = undefined;
    this.unplaced.delete(id);
  }

  /** Forgets every id: only while no dirty node of the tree exists (see the invariant). */
  reset(): void {
    this.next = 1;
    this.bytes.length = 0;
    this.unplaced.clear();
  }

  /** Tells the instance where the table is (again: it may have moved). */
  register(): void {
    this.ex.pendingTable(this.table, this.next);
  }

  private set(id: number, v: number): void {
    if (!(id > 0 && id < this.next)) throw new AssertionError(`pending value ${id} is not one handed out`);
    this.f64()[this.table / 8 + id] = v;
  }

  private f64(): Float64Array {
    return new Float64Array(this.ex.memory.buffer);
  }

  private grow(): void {
    const bytes = growCapacity((this.next + 1) * 8, this.cap * 8, TABLE_ROWS_MIN * 8);
    const ptr = allocOrThrow(bytes, 'the pending values table', this.ex);
    this.memoryGrown();
    assert(ptr % 8 === 0, 'the pending values table is not 8-byte aligned');
    const m = Buffer.from(this.ex.memory.buffer);
    if (this.table !== 0) {
      m.copyWithin(ptr, this.table, this.table + this.next * 8);
      this.ex.free(this.table);
    }
    this.table = ptr;
    this.cap = Math.floor(bytes / 8);
  }

  /** Frees the table (the store's close). */
  dispose(): void {
    if (this.table !== 0) this.ex.free(this.table);
    this.table = 0;
    this.cap = 0;
    this.reset();
    this.ex.pendingTable(0, 0);
  }
}
