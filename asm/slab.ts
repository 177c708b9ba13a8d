// Slab serialization: encoding a commit's entries (Value, Leaf, Index, Actions) from a plan, and
// parsing Leaf, Index and Actions bodies into row tables for the JS side.
//
// Owns: the byte layout of entry framing (src/engine/format.ts) and of entry bodies
// (src/engine/codec.ts documents them; spec part A §A.3–A.5 the entry kinds and Inner/Outer
// references), LEB128 varints (Baardskeerder's Flog0, §A.4), each entry's CRC32C and the slab CRC.
// Must never: read outside [plan, plan + planLen) or a body's bounds (or, for a Node record, a
// node other than a dirty one in use, checked first), write outside [out, out + outCap), the row
// table or a Node record's header, or trap on any input: bad input is an error code.
//
// The plan is what JS writes into linear memory: one record per entry, in slab order, with whole
// keys and fixed-width numbers (little-endian, unaligned):
//
//   record   u8 kind, then by kind:
//   Value 1  u32 len, bytes
//   Leaf 2   u32 count, count × (u32 keyLen, u8 valueKind: 0 u32 len | 1 ref), then the bytes:
//            every key followed by its value's bytes if it has them (kind 0), in item order
//   Index 3  u32 count (children, >= 1), ref (child 0), (count - 1) × (u32 keyLen, key, ref)
//   Actions 5 u32 count, count × (u8 op, u32 keyLen, op 0: nothing | 1 u32 len | 2 ref), then the
//            bytes: every key followed by its value's bytes if it has them (op 1), in order
//   Node 6   u32 address: a node of the writer's tree in this instance's dirty region (asm/wleaf.ts,
//            asm/windex.ts), encoded as the Leaf or Index entry it is (wleafEncode, widxEncode).
//            Its header then holds the entry's position (`start` + offset) and length, which its
//            parent, encoded after it, refers to it by; so children come before their parents.
//            Valid only in the instance that holds the node (each store's cache instance).
//   ref      u8 inner, f64 at, u32 len: inner 0: an Outer reference, `at` a file position and `len`
//            the value length (leaf, actions) or entry length (index); inner 1: an Inner reference,
//            `at` the index of an earlier entry of this plan (Baardskeerder's Inner position,
//            §A.5), resolved here to its Outer position `start + offset`, and for an index child
//            its encoded entry length.
//
// A Leaf's and an Index's keys must be strictly ascending (checked: the shared prefix is taken
// from the first and last key). Output: the encoded entries back to back at `out`, and
// for entry i at `table + 12 i`: u32 offset, u32 entry length, u32 CRC. The slab CRC (CRC32C over
// the entries' CRCs, in order) is kept for `slabCrc()`.
import { crc32c, crc32cUpdate } from './crc32c';
import { commonPrefix, compareKeys } from './node';
import { full, wBytes, wr, wrEnd, wU8, wVarint } from './body-writer';
import { isDirtyNode, wleafEncode } from './wleaf';
import { widxEncode } from './windex';
import { pendingSlab } from './pending';

const KIND_VALUE: u32 = 1;
const KIND_LEAF: u32 = 2;
const KIND_INDEX: u32 = 3;
const KIND_ACTIONS: u32 = 5;
/** A plan record only: the entry is the node's own kind (asm/wcheckpoint.ts writes them). */
export const PLAN_NODE: u32 = 6;
/** A Node record's bytes: the kind, then the u32 address. */
export const PLAN_NODE_BYTES: u32 = 5;
const ENTRY_HEADER: usize = 9;

export const ERR_OUT_OF_SPACE: i32 = -1;
export const ERR_BAD_PLAN: i32 = -2;
export const ERR_TOO_MANY_ENTRIES: i32 = -3;

let rd: usize = 0;
let rdEnd: usize = 0;
let bad = false;
let lastSlabCrc: u32 = 0;
let slabStart: f64 = 0;
let tableAt: usize = 0;
let entries: u32 = 0;

function rU8(): u32 {
  if (rd >= rdEnd) {
    bad = true;
    return 0;
  }
  return <u32>load<u8>(rd++);
}

function rU32(): u32 {
  if (rd + 4 > rdEnd) {
    bad = true;
    rd = rdEnd;
    return 0;
  }
  const v = load<u32>(rd);
  rd += 4;
  return v;
}

function rF64(): f64 {
  if (rd + 8 > rdEnd) {
    bad = true;
    rd = rdEnd;
    return 0;
  }
  const v = load<f64>(rd);
  rd += 8;
  return v;
}

function rTake(n: u32): usize {
  if (<usize>n > rdEnd - rd) {
    bad = true;
    const p = rd;
    rd = rdEnd;
    return p;
  }
  const p = rd;
  rd += n;
  return p;
}

/** A file position from an f64: a whole number within 2^53, else the plan is bad. */
function position(at: f64): u64 {
  if (!(at >= 0 && at <= 9007199254740991.0) || at != Math.floor(at)) {
    bad = true;
    return 0;
  }
  return <u64>at;
}

/** Reads a ref; writes its Outer position and length as varints. `entryLen`: for index children. */
function wRef(entryLen: bool): void {
  const inner = rU8();
  const at = rF64();
  const len = rU32();
  if (inner == 0) {
    wVarint(position(at));
    wVarint(<u64>len);
    return;
  }
  const i = <u32>position(at);
  if (inner != 1 || bad || <f64>i != at || i >= entries) {
    bad = true;
    return;
  }
  const row = tableAt + <usize>i * 12;
  wVarint(<u64>(slabStart + <f64>load<u32>(row)));
  wVarint(<u64>(entryLen ? load<u32>(row, 4) : len));
}

function skipRef(): void {
  rTake(13);
}

// A node's keys, read twice: pass 1 notes the first and last (their common prefix is every key's,
// since keys ascend), pass 2 checks the order and writes each key's suffix.
let firstKey: usize = 0;
let firstKeyLen: u32 = 0;
let lastKey: usize = 0;
let lastKeyLen: u32 = 0;
let prevKey: usize = 0;
let prevKeyLen: u32 = 0;

/** Pass 1: reads a key, noting it as the first (`isFirst`) and, so far, the last. */
function rNoteKey(isFirst: bool): void {
  const kl = rU32();
  noteKey(isFirst, rTake(kl), kl);
}

function noteKey(isFirst: bool, kp: usize, kl: u32): void {
  if (isFirst) {
    firstKey = kp;
    firstKeyLen = kl;
  }
  lastKey = kp;
  lastKeyLen = kl;
}

/** After pass 1: writes the count and the shared prefix of a node with `keys` keys; returns its length. */
function wNodeHead(count: u32, keys: u32): u32 {
  const prefixLen = keys > 1 ? commonPrefix(firstKey, firstKeyLen, lastKey, lastKeyLen) : 0;
  wVarint(<u64>count);
  wVarint(<u64>prefixLen);
  wBytes(firstKey, prefixLen);
  return prefixLen;
}

/** Pass 2: reads a key, checks it follows the previous one (strictly), writes its suffix. */
function wNextKey(isFirst: bool, prefixLen: u32): void {
  const kl = rU32();
  wKey(isFirst, prefixLen, rTake(kl), kl);
}

function wKey(isFirst: bool, prefixLen: u32, kp: usize, kl: u32): void {
  if ((!isFirst && compareKeys(prevKey, prevKeyLen, kp, kl) >= 0) || kl < prefixLen) {
    bad = true;
    return;
  }
  prevKey = kp;
  prevKeyLen = kl;
  wVarint(<u64>(kl - prefixLen));
  wBytes(kp + prefixLen, kl - prefixLen);
}

/** A leaf plan's byte cursor: its keys and inline values, after its item headers. */
let bl: usize = 0;

function bTake(n: u32): usize {
  if (<usize>n > rdEnd - bl) {
    bad = true;
    const p = bl;
    bl = rdEnd;
    return p;
  }
  const p = bl;
  bl += n;
  return p;
}

// A leaf's keys and values come after its item headers, back to back, so that JS writes them
// with one call (plan.ts leaf: 1.0 µs against 3.2 for a leaf of 35 items, one call per value).
function encodeLeaf(): void {
  const count = rU32();
  const items = rd;
  for (let i: u32 = 0; i < count && !bad; i++) {
    rU32();
    const vk = rU8();
    if (vk == 0) rU32();
    else if (vk == 1) skipRef();
    else bad = true;
  }
  if (bad) return;
  const bytes = rd;
  rd = items;
  bl = bytes;
  for (let i: u32 = 0; i < count && !bad; i++) {
    const kl = rU32();
    noteKey(i == 0, bTake(kl), kl);
    if (rU8() == 0) bTake(rU32());
    else skipRef();
  }
  if (bad) return;
  const end = bl;
  rd = items;
  bl = bytes;
  const prefixLen = wNodeHead(count, count);
  for (let i: u32 = 0; i < count && !bad && !full; i++) {
    const kl = rU32();
    wKey(i == 0, prefixLen, bTake(kl), kl);
    const vk = rU8();
    if (vk == 0) {
      const vl = rU32();
      wU8(0);
      wVarint(<u64>vl);
      wBytes(bTake(vl), vl);
    } else {
      wU8(1);
      wRef(false);
    }
  }
  rd = end;
}

function encodeIndex(): void {
  const count = rU32();
  if (count < 1) {
    bad = true;
    return;
  }
  const items = rd;
  skipRef();
  for (let i: u32 = 1; i < count && !bad; i++) {
    rNoteKey(i == 1);
    skipRef();
  }
  if (bad) return;
  rd = items;
  const prefixLen = wNodeHead(count, count - 1);
  wRef(true);
  for (let i: u32 = 1; i < count && !bad && !full; i++) {
    wNextKey(i == 1, prefixLen);
    wRef(true);
  }
}

/** Encodes the dirty node `n`; returns its entry kind (KIND_LEAF or KIND_INDEX). */
function encodeNode(n: usize): u32 {
  if (bad || !isDirtyNode(n)) {
    bad = true;
    return 0;
  }
  const kind = load<u32>(n, 4);
  // A leaf's values not in the file yet may be entries of this slab, written before it.
  pendingSlab(slabStart, tableAt, entries);
  const r = kind == KIND_LEAF ? wleafEncode(n, wr, <u32>(wrEnd - wr)) : kind == KIND_INDEX ? widxEncode(n, wr, <u32>(wrEnd - wr)) : -2;
  pendingSlab(0, 0, 0);
  // -1: no room (the caller asks again with more); -2: a value or child not written yet.
  if (r == -1) full = true;
  else if (r < 0) bad = true;
  return kind;
}

// Like a leaf's, the keys and values come after the headers (one call from JS).
function encodeActions(): void {
  const count = rU32();
  const items = rd;
  for (let i: u32 = 0; i < count && !bad; i++) {
    const op = rU8();
    rU32();
    if (op == 1) rU32();
    else if (op == 2) skipRef();
    else if (op != 0) bad = true;
  }
  if (bad) return;
  bl = rd;
  rd = items;
  wVarint(<u64>count);
  for (let i: u32 = 0; i < count && !bad && !full; i++) {
    const op = rU8();
    const kl = rU32();
    wU8(op);
    wVarint(<u64>kl);
    wBytes(bTake(kl), kl);
    if (op == 1) {
      const vl = rU32();
      wVarint(<u64>vl);
      wBytes(bTake(vl), vl);
    } else if (op == 2) {
      wRef(false);
    }
  }
  rd = bl;
}

/**
 * Encodes the plan at [plan, plan + planLen) as entries at `out` (capacity `outCap`) for a slab
 * that will start at file position `start`. Returns the bytes written, or ERR_OUT_OF_SPACE (call
 * again with more room), ERR_BAD_PLAN or ERR_TOO_MANY_ENTRIES (more than `maxEntries` records).
 */
export function slabEncode(plan: usize, planLen: u32, out: usize, outCap: u32, table: usize, maxEntries: u32, start: f64): i32 {
  return encodeFrom(plan, planLen, out, outCap, table, maxEntries, start, 0, 0, 0, 0, 0);
}

/** slabEncodePart: stopped after `budgetBytes` of output; its state block holds where. */
export const ENCODE_PAUSED: i32 = -4;

/**
 * slabEncode in parts, for big slabs, so the caller can give its thread back in between. The
 * caller owns the state block at `state` (16 bytes, zeroed before the first part): u32 plan
 * offset, u32 output offset, u32 entries so far, u32 slab CRC so far. Each call encodes whole
 * entries until at least `budgetBytes` were written, then returns ENCODE_PAUSED with the block
 * updated; the last returns what slabEncode would. The state lives with the caller because this
 * instance serves every store in the process, and others encode and parse in between.
 */
export function slabEncodePart(plan: usize, planLen: u32, out: usize, outCap: u32, table: usize, maxEntries: u32, start: f64, state: usize, budgetBytes: u32): i32 {
  const rdOff = load<u32>(state);
  const wrOff = load<u32>(state, 4);
  if (rdOff > planLen || wrOff > outCap) return ERR_BAD_PLAN;
  const r = encodeFrom(plan, planLen, out, outCap, table, maxEntries, start, rdOff, wrOff, load<u32>(state, 8), load<u32>(state, 12), budgetBytes);
  if (r == ENCODE_PAUSED) {
    store<u32>(state, <u32>(rd - plan));
    store<u32>(state, <u32>(wr - out), 4);
    store<u32>(state, entries, 8);
    store<u32>(state, pausedSlabCrc, 12);
  }
  return r;
}

let pausedSlabCrc: u32 = 0;

function encodeFrom(plan: usize, planLen: u32, out: usize, outCap: u32, table: usize, maxEntries: u32, start: f64, rdOff: u32, wrOff: u32, entriesSoFar: u32, crcSoFar: u32, budgetBytes: u32): i32 {
  rd = plan + rdOff;
  rdEnd = plan + planLen;
  wr = out + wrOff;
  wrEnd = out + outCap;
  bad = false;
  full = false;
  slabStart = start;
  tableAt = table;
  entries = entriesSoFar;
  let slab: u32 = crcSoFar;
  const pauseAt: usize = budgetBytes == 0 ? 0 : wr + <usize>budgetBytes;
  while (rd < rdEnd) {
    if (pauseAt != 0 && wr >= pauseAt) {
      pausedSlabCrc = slab;
      return ENCODE_PAUSED;
    }
    if (entries >= maxEntries) return ERR_TOO_MANY_ENTRIES;
    let kind = rU8();
    let node: usize = 0;
    const entry = wr;
    if (wr + ENTRY_HEADER > wrEnd) return ERR_OUT_OF_SPACE;
    wr += ENTRY_HEADER;
    if (kind == KIND_VALUE) {
      const n = rU32();
      wBytes(rTake(n), n);
    } else if (kind == KIND_LEAF) encodeLeaf();
    else if (kind == KIND_INDEX) encodeIndex();
    else if (kind == KIND_ACTIONS) encodeActions();
    else if (kind == PLAN_NODE) {
      node = <usize>rU32();
      kind = encodeNode(node);
    }
    else bad = true;
    if (bad) return ERR_BAD_PLAN;
    if (full) return ERR_OUT_OF_SPACE;
    const bodyLen = <u32>(wr - entry - ENTRY_HEADER);
    store<u32>(entry, bodyLen, 4);
    store<u8>(entry, <u8>kind, 8);
    const crc = crc32c(entry + 4, 5 + bodyLen);
    store<u32>(entry, crc);
    slab = crc32cUpdate(slab, entry, 4);
    const row = table + <usize>entries * 12;
    store<u32>(row, <u32>(entry - out));
    store<u32>(row, bodyLen + <u32>ENTRY_HEADER, 4);
    store<u32>(row, crc, 8);
    if (node != 0) {
      // Where the node now is: its parent's entry refers to it by this (widxEncode).
      store<f64>(node, slabStart + <f64>(entry - out), 8);
      store<u32>(node, bodyLen + <u32>ENTRY_HEADER, 20);
    }
    entries++;
  }
  lastSlabCrc = slab;
  return <i32>(wr - out);
}

/** The slab CRC of the last successful slabEncode. */
export function slabCrc(): u32 {
  return lastSlabCrc;
}

// --- parsing bodies into rows -----------------------------------------------------------------
//
// parseBody(kind, body, len, rows, maxRows) reads a Leaf, Index or Actions body and writes rows
// of 5 f64 each (offsets relative to `body`), so JS builds its strings and views without parsing:
//   row 0        count, prefix offset, prefix length, 0, 0       (Actions: count, 0, 0, 0, 0)
//   Leaf item    suffix offset, suffix length, 0 inline | 1 ref, value offset | position, length
//   Index child  suffix offset, suffix length (child 0: 0, 0), 0, position, entry length
//   Actions item key offset, key length, op (0 delete, 1 inline, 2 ref), value offset | position, length
// Returns the item count, or a negative code (PARSE_* below); every read is bounds-checked.

export const PARSE_ENDS_EARLY: i32 = -1;
export const PARSE_NUMBER_TOO_LONG: i32 = -2;
export const PARSE_COUNT_TOO_BIG: i32 = -3;
export const PARSE_RUNS_PAST: i32 = -4;
export const PARSE_UNKNOWN_VALUE_KIND: i32 = -5;
export const PARSE_UNKNOWN_OP: i32 = -6;
export const PARSE_TRAILING: i32 = -7;
export const PARSE_NO_ROOM: i32 = -8;
export const PARSE_BAD_KIND: i32 = -9;

let err: i32 = 0;

function pU8(): u32 {
  if (rd >= rdEnd) {
    if (err == 0) err = PARSE_ENDS_EARLY;
    return 0;
  }
  return <u32>load<u8>(rd++);
}

function pVarint(): f64 {
  let v: u64 = 0;
  let shift: u64 = 0;
  for (let i = 0; i < 8; i++) {
    if (rd >= rdEnd) {
      if (err == 0) err = PARSE_ENDS_EARLY;
      return 0;
    }
    const x = <u64>load<u8>(rd++);
    v |= (x & 0x7f) << shift;
    if (x < 0x80) return <f64>v;
    shift += 7;
  }
  if (err == 0) err = PARSE_NUMBER_TOO_LONG;
  return 0;
}

/** Skips `n` bytes; returns their offset from the body start. */
function pTake(n: f64, body: usize): f64 {
  if (n > <f64>(rdEnd - rd)) {
    if (err == 0) err = PARSE_RUNS_PAST;
    rd = rdEnd;
    return 0;
  }
  const at = <f64>(rd - body);
  rd += <usize>n;
  return at;
}

// @ts-ignore: decorator
@inline function row(rows: usize, i: u32, a: f64, b: f64, c: f64, d: f64, e: f64): void {
  const p = rows + <usize>i * 40;
  store<f64>(p, a);
  store<f64>(p, b, 8);
  store<f64>(p, c, 16);
  store<f64>(p, d, 24);
  store<f64>(p, e, 32);
}

export function parseBody(kind: u32, body: usize, len: u32, rows: usize, maxRows: u32): i32 {
  rd = body;
  rdEnd = body + len;
  err = 0;
  const count = pVarint();
  if (err != 0) return err;
  if (count > <f64>len) return PARSE_COUNT_TOO_BIG;
  const n = <u32>count;
  if (n + 1 > maxRows) return PARSE_NO_ROOM;
  if (kind == KIND_ACTIONS) {
    row(rows, 0, count, 0, 0, 0, 0);
    for (let i: u32 = 1; i <= n && err == 0; i++) {
      const op = pU8();
      const kl = pVarint();
      const ko = pTake(kl, body);
      let a: f64 = 0;
      let b: f64 = 0;
      if (op == 1) {
        b = pVarint();
        a = pTake(b, body);
      } else if (op == 2) {
        a = pVarint();
        b = pVarint();
      } else if (op != 0 && err == 0) err = PARSE_UNKNOWN_OP;
      row(rows, i, ko, kl, <f64>op, a, b);
    }
  } else if (kind == KIND_LEAF || kind == KIND_INDEX) {
    if (kind == KIND_INDEX && n < 1) return PARSE_COUNT_TOO_BIG;
    const pl = pVarint();
    const po = pTake(pl, body);
    row(rows, 0, count, po, pl, 0, 0);
    let i: u32 = 1;
    if (kind == KIND_INDEX) {
      const pos = pVarint();
      const el = pVarint();
      row(rows, 1, 0, 0, 0, pos, el);
      i = 2;
    }
    for (; i <= n && err == 0; i++) {
      const sl = pVarint();
      const so = pTake(sl, body);
      if (kind == KIND_INDEX) {
        const pos = pVarint();
        row(rows, i, so, sl, 0, pos, pVarint());
        continue;
      }
      const vk = pU8();
      let a: f64 = 0;
      let b: f64 = 0;
      if (vk == 0) {
        b = pVarint();
        a = pTake(b, body);
      } else if (vk == 1) {
        a = pVarint();
        b = pVarint();
      } else if (err == 0) err = PARSE_UNKNOWN_VALUE_KIND;
      row(rows, i, so, sl, <f64>vk, a, b);
    }
  } else return PARSE_BAD_KIND;
  if (err != 0) return err;
  if (rd != rdEnd) return PARSE_TRAILING;
  return <i32>n;
}
