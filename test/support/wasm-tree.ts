// Shared by the tests of the writer's tree in linear memory (test/wasm-tree.test.ts,
// test/wasm-checkpoint.test.ts): puts and deletes as the store would make them, loading missing
// clean nodes from a map of entries, and readers that check a tree's structure, contents and
// reference counts.
import fc from 'fast-check';
import { Buffer } from 'node:buffer';
import { expect } from 'vitest';
import { REF_FLAG, type Instance, type Val } from './wasm-nodes.js';
import { verifyEntry } from '../../src/engine/entry.js';

export const PUT_DONE = 0;
export const PUT_MISS = 3;
export const DEL_NOT_FOUND = 1;
export const PUT_NEEDS_SEAL = 5;
export const KIND_LEAF = 2;
export const KIND_INDEX = 3;

export interface Root {
  addr: number;
  pos: number;
  len: number;
}

/** The node a PUT_MISS asked for (RESULT: its position), from `disk` into the cache, as the store loads it. */
export function loadMissing(t: Instance, disk: Map<number, { body: Buffer; kind: number }>): void {
  const pos = t.mem().readDoubleLE(t.result);
  const e = disk.get(pos)!;
  t.mem().set(e.body, t.input);
  expect(t.ex.cacheIngest(pos, e.body.length + 9, e.kind, e.body.length)).toBe(0);
}

/** Puts through wtreePut, loading missing clean nodes from `disk` as the store would; returns the new root. */
export function put(t: Instance, root: Root, key: Buffer, v: Val, maxNodeBytes: number, disk?: Map<number, { body: Buffer; kind: number }>): { root: Root; inserted: boolean } {
  for (;;) {
    const m = t.mem();
    m.set(key, t.probe);
    if (!v.ref) m.set(v.bytes, t.input);
    const r = t.ex.wtreePut(root.addr, root.pos, root.len, key.length, t.input, v.ref ? v.len : v.bytes.length, v.ref ? 1 : 0, v.ref ? v.pos : 0, maxNodeBytes);
    if (r === PUT_MISS) {
      loadMissing(t, disk!);
      continue;
    }
    expect(r).toBe(PUT_DONE);
    return { root: { addr: t.mem().readUInt32LE(t.result), pos: 0, len: 0 }, inserted: t.mem().readUInt32LE(t.result + 4) === 1 };
  }
}

/** Deletes through wtreeDelete (loading missing clean nodes as put does); returns the new root, or null if absent. */
export function del(t: Instance, root: Root, key: Buffer, maxNodeBytes: number, disk?: Map<number, { body: Buffer; kind: number }>): Root | null {
  for (;;) {
    const m = t.mem();
    m.set(key, t.probe);
    const r = t.ex.wtreeDelete(root.addr, root.pos, root.len, key.length, maxNodeBytes);
    if (r === PUT_MISS) {
      loadMissing(t, disk!);
      continue;
    }
    if (r === DEL_NOT_FOUND) return null;
    expect(r).toBe(PUT_DONE);
    const res = t.mem();
    return { addr: res.readUInt32LE(t.result), pos: res.readDoubleLE(t.result + 8), len: res.readUInt32LE(t.result + 4) };
  }
}

/** A node's records: [key, value] for a leaf, [key, child] for an index (entry 0's key empty). */
export function records(t: Instance, n: number): Array<{ key: Buffer; val?: Val; child?: Root }> {
  const m = t.mem();
  const kind = m.readUInt32LE(n + 4);
  const count = m.readUInt32LE(n + 16);
  const p = m.readUInt32LE(n + 24);
  const prefix = m.subarray(n + 32, n + 32 + p);
  const slots = n + 32 + ((p + 7) & ~7);
  const out: Array<{ key: Buffer; val?: Val; child?: Root }> = [];
  for (let i = 0; i < count; i++) {
    const word = m.readUInt32LE(slots + i * 8);
    const rec = n + m.readUInt32LE(slots + i * 8 + 4);
    const kw = m.readUInt32LE(rec);
    const kl = (kw & ~REF_FLAG) >>> 0;
    const ref = (kw & REF_FLAG) !== 0;
    const keyAt = kind === KIND_INDEX ? rec + 24 : rec + (ref ? 16 : 8);
    const key = Buffer.from(m.subarray(keyAt, keyAt + kl));
    if (!(kind === KIND_INDEX && i === 0)) {
      expect(key.subarray(0, p).equals(prefix)).toBe(true);
      const w = Buffer.alloc(4);
      key.copy(w, 0, p, Math.min(key.length, p + 4));
      expect(word).toBe(w.readUInt32BE(0));
    }
    if (kind === KIND_INDEX) {
      const pos = m.readDoubleLE(rec + 8);
      out.push({ key, child: pos < 0 ? { addr: m.readUInt32LE(rec + 16), pos: 0, len: 0 } : { addr: 0, pos, len: m.readUInt32LE(rec + 4) } });
    } else {
      const vl = m.readUInt32LE(rec + 4);
      out.push({ key, val: ref ? { ref: true, pos: m.readDoubleLE(rec + 8), len: vl } : { ref: false, bytes: Buffer.from(m.subarray(rec + 8 + kl, rec + 8 + kl + vl)) } });
    }
  }
  return out;
}

/**
 * Reads a tree, checking its structure, and counts the references it holds on dirty nodes into
 * `refs` (each dirty index node's records once, however many roots reach it: `seen`). A clean
 * node the cache lacks is loaded from `disk` when given (a node's records are read before its
 * children are visited, so a load evicting it does no harm).
 */
export function readTree(t: Instance, root: Root, refs: Map<number, number>, seen: Set<number>, disk?: Disk): Array<[Buffer, Val]> {
  const out: Array<[Buffer, Val]> = [];
  let leafDepth = -1;
  const visit = (c: Root, depth: number, lo: Buffer | null, hi: Buffer | null, countRefs: boolean): void => {
    let n = c.addr !== 0 ? c.addr : t.ex.cachedNode(c.pos) >>> 0;
    if (n === 0 && disk !== undefined) {
      const e = disk.get(c.pos)!;
      t.mem().set(e.body, t.input);
      expect(t.ex.cacheIngest(c.pos, e.body.length + 9, e.kind, e.body.length)).toBe(0);
      n = t.ex.cachedNode(c.pos) >>> 0;
    }
    expect(n).toBeGreaterThan(0);
    const kind = t.mem().readUInt32LE(n + 4);
    const recs = records(t, n);
    if (kind === KIND_LEAF) {
      if (leafDepth === -1) leafDepth = depth;
      expect(depth).toBe(leafDepth);
      for (const r of recs) {
        if (lo !== null) expect(Buffer.compare(r.key, lo)).toBeGreaterThanOrEqual(0);
        if (hi !== null) expect(Buffer.compare(r.key, hi)).toBe(-1);
        out.push([r.key, r.val!]);
      }
      return;
    }
    expect(kind).toBe(KIND_INDEX);
    const first = c.addr !== 0 && !seen.has(c.addr);
    if (c.addr !== 0) seen.add(c.addr);
    for (let i = 0; i < recs.length; i++) {
      const child = recs[i].child!;
      if (child.addr !== 0 && first && countRefs) refs.set(child.addr, (refs.get(child.addr) ?? 0) + 1);
      const clo = i === 0 ? lo : recs[i].key;
      const chi = i + 1 < recs.length ? recs[i + 1].key : hi;
      if (i > 0 && i + 1 < recs.length) expect(Buffer.compare(recs[i].key, recs[i + 1].key)).toBe(-1);
      visit(child, depth + 1, clo, chi, first && countRefs);
    }
  };
  if (root.addr !== 0) refs.set(root.addr, (refs.get(root.addr) ?? 0) + 1);
  if (root.addr !== 0 || root.pos > 0) visit(root, 0, null, null, true);
  for (let i = 1; i < out.length; i++) expect(Buffer.compare(out[i - 1][0], out[i][0])).toBe(-1);
  return out;
}

export function expectContents(got: Array<[Buffer, Val]>, model: Map<string, Val>): void {
  const want = [...model.entries()].sort((a, b) => Buffer.compare(Buffer.from(a[0], 'hex'), Buffer.from(b[0], 'hex')));
  expect(got.map(([k]) => k.toString('hex'))).toEqual(want.map(([k]) => k));
  for (let i = 0; i < got.length; i++) {
    const [, v] = got[i];
    const w = want[i][1];
    if (w.ref) expect(v).toEqual(w);
    else expect(!v.ref && v.bytes.equals(w.bytes)).toBe(true);
  }
}

/**
 * Every dirty node's count equals the references counted (pre-header 16: node - 16), and the
 * instance's running total of estimates is the sum of theirs (pre-header 8: node - 24): these are
 * all the dirty nodes there are.
 */
export function expectRefs(t: Instance, refs: Map<number, number>): void {
  const m = t.mem();
  let estimates = 0;
  for (const [addr, n] of refs) {
    expect([addr, m.readUInt32LE(addr - 16)]).toEqual([addr, n]);
    estimates += m.readUInt32LE(addr - 24);
  }
  expect(t.ex.dirtyEstimateBytes()).toBe(estimates);
}


export function expectLookups(t: Instance, root: Root, model: Map<string, Val>, disk?: Map<number, { body: Buffer; kind: number }>): void {
  const find = (key: Buffer): number => {
    for (;;) {
      t.mem().set(key, t.probe);
      const r = root.addr !== 0 ? t.ex.cacheFindDirty(root.addr, key.length) : t.ex.cacheFind(root.pos, root.len, key.length);
      if (r !== PUT_MISS) return r;
      loadMissing(t, disk!);
    }
  };
  if (root.addr === 0 && root.pos === 0) return;
  for (const [hexKey, v] of model) {
    const r = find(Buffer.from(hexKey, 'hex'));
    const m = t.mem();
    if (v.ref) {
      expect(r).toBe(2);
      expect([m.readDoubleLE(t.result), m.readUInt32LE(t.result + 8)]).toEqual([v.pos, v.len]);
    } else {
      expect(r).toBe(1);
      const ptr = m.readUInt32LE(t.result);
      expect(Buffer.from(m.subarray(ptr, ptr + m.readUInt32LE(t.result + 4))).equals(v.bytes)).toBe(true);
    }
  }
  for (const absent of [Buffer.from('abz'), Buffer.from([0xff, 0xff, 0xff]), Buffer.from('k9999999')]) {
    if (!model.has(absent.toString('hex'))) expect(find(absent)).toBe(0);
  }
}

export function checkAll(t: Instance, writer: { root: Root; model: Map<string, Val> }, held: Array<{ root: Root; model: Map<string, Val> }>, disk?: Disk): void {
  const refs = new Map<number, number>();
  const seen = new Set<number>();
  expectContents(readTree(t, writer.root, refs, seen, disk), writer.model);
  expectLookups(t, writer.root, writer.model, disk);
  for (const h of held) expectContents(readTree(t, h.root, refs, seen, disk), h.model);
  expectRefs(t, refs);
}


export const keyArb = fc
  .tuple(fc.constantFrom('', 'a', 'ab', 'abcdef', 'z'), fc.array(fc.constantFrom(0, 1, 0x61, 0x62, 0xff), { maxLength: 8 }))
  .map(([s, tail]) => Buffer.concat([Buffer.from(s, 'latin1'), Buffer.from(tail)]));
export const valArb: fc.Arbitrary<Val> = fc.oneof(
  { weight: 5, arbitrary: fc.uint8Array({ maxLength: 120 }).map((b) => ({ ref: false as const, bytes: Buffer.from(b) })) },
  { weight: 1, arbitrary: fc.record({ ref: fc.constant(true as const), pos: fc.integer({ min: 1, max: 2 ** 40 }), len: fc.integer({ min: 129, max: 1 << 20 }) }) },
);

/** A snapshot of `tree` kept in `held`: its root held (if dirty) and its model copied. */
export function holdTree(t: Instance, tree: Tree, held: Tree[]): void {
  if (tree.root.addr !== 0) t.ex.wtreeRetain(tree.root.addr);
  held.push({ root: { ...tree.root }, model: new Map(tree.model) });
}

/** Lets go of snapshot `pick` (modulo how many there are), if there is one. */
export function dropHeld(t: Instance, held: Tree[], pick: number): void {
  if (held.length === 0) return;
  const [h] = held.splice(pick % held.length, 1);
  if (h.root.addr !== 0) t.ex.wtreeRelease(h.root.addr);
}

/**
 * The undo area (asm/wleaf.ts) takes its block for good on the first undoable overwrite: a test
 * comparing the region's use before and after takes it first, with a one-key tree it frees again.
 * Returns the region's use then.
 */
export function takeUndoArea(t: Instance, maxNodeBytes: number): number {
  const first = put(t, { addr: 0, pos: 0, len: 0 }, Buffer.from('k'), { ref: false, bytes: Buffer.from('v') }, maxNodeBytes).root;
  t.mem().set(Buffer.from('k'), t.probe);
  t.mem().set(Buffer.from('w'), t.input);
  expect(t.ex.wtreePutInPlace(first.addr, 1, t.input, 1, 0, 0, maxNodeBytes)).toBe(PUT_DONE);
  t.ex.wtreeSettle();
  t.ex.wtreeRelease(first.addr);
  return t.ex.dirtyBytesInUse();
}

/**
 * After an append: wtreeWritten on `root` (dirty, one reference, which moves to the result), the
 * tree pointed at its written nodes by position. Returns its root then: still dirty, or clean.
 */
export function switchWritten(t: Instance, root: Root): Root {
  t.ex.wtreeWritten(root.addr);
  return switchedRoot(t);
}

/**
 * switchWritten in steps of about `budgetBytes` (asm/wcheckpoint.ts wtreeWrittenStep), with
 * `between()` after every step but the last; returns the root and how many steps it took.
 */
export function switchWrittenInSteps(t: Instance, root: Root, budgetBytes: number, between: () => void): { root: Root; steps: number } {
  t.ex.wtreeWrittenStart(root.addr);
  let steps = 1;
  while (t.ex.wtreeWrittenStep(budgetBytes) !== 0) {
    between();
    steps++;
  }
  return { root: switchedRoot(t), steps };
}

function switchedRoot(t: Instance): Root {
  const m = t.mem();
  const a = m.readUInt32LE(t.result);
  return a !== 0 ? { addr: a, pos: 0, len: 0 } : { addr: 0, pos: m.readDoubleLE(t.result + 8), len: m.readUInt32LE(t.result + 4) };
}

/** asm/slab.ts: the encoder wants more room. */
const ERR_OUT_OF_SPACE = -1;

/** The file: each entry's body and kind by position (as put and del load missing nodes). */
export type Disk = Map<number, { body: Buffer; kind: number }>;

export interface Tree {
  root: Root;
  model: Map<string, Val>;
}

/**
 * Plans and encodes a checkpoint of `frozen` (dirty) for a slab at `start`, the way the store
 * would: the plan area and the output grow until they fit. Returns the slab's entries by position
 * (not yet in `disk`), the plan (for an abandon) and where the slab ends (no entries, when every
 * node the tree reaches by address was written already).
 */
export function encode(t: Instance, frozen: Root, start: number): { entries: Disk; plan: number; planLen: number; end: number } {
  let planCap = 5; // too small at first for any tree of more than one node: the -1 path
  let plan = 0;
  let planLen = -1;
  while (planLen < 0) {
    if (plan !== 0) t.ex.free(plan);
    planCap *= 4;
    plan = t.ex.alloc(planCap) >>> 0;
    planLen = t.ex.wtreePlan(frozen.addr, plan, planCap);
  }
  expect(planLen % 5).toBe(0);
  if (planLen === 0) {
    // Nothing unwritten: the tree's root (a written node, restored or still held) is in the file.
    expect(t.mem().readDoubleLE(frozen.addr + 8)).toBeGreaterThan(0);
    return { entries: new Map(), plan, planLen, end: start };
  }
  const rows = planLen / 5;
  const table = t.ex.alloc(rows * 12) >>> 0;
  let outCap = 64; // and the encoder runs out of room a few times: ERR_OUT_OF_SPACE, then again
  let out = 0;
  let n = ERR_OUT_OF_SPACE;
  while (n === ERR_OUT_OF_SPACE) {
    if (out !== 0) t.ex.free(out);
    outCap *= 8;
    out = t.ex.alloc(outCap) >>> 0;
    n = t.ex.slabEncode(plan, planLen, out, outCap, table, rows, start);
  }
  expect(n).toBeGreaterThan(0);
  const m = t.mem();
  const entries: Disk = new Map();
  for (let i = 0; i < rows; i++) {
    const off = m.readUInt32LE(table + i * 12);
    const len = m.readUInt32LE(table + i * 12 + 4);
    const slab = Buffer.from(m.subarray(out, out + n));
    const { kind, bodyLen } = verifyEntry(slab, off, start + off); // framing and CRC32C
    expect(bodyLen + 9).toBe(len);
    entries.set(start + off, { body: Buffer.from(slab.subarray(off + 9, off + 9 + bodyLen)), kind });
    // The node the record named now holds where it was written.
    const node = m.readUInt32LE(plan + i * 5 + 1);
    expect([m.readDoubleLE(node + 8), m.readUInt32LE(node + 20)]).toEqual([start + off, len]);
  }
  t.ex.free(table);
  t.ex.free(out);
  return { entries, plan, planLen, end: start + n };
}

/** Caches `entries` in `f`, an instance with no dirty region: what a reopen reads of the file. */
export function ingestAll(f: Instance, entries: Disk): void {
  for (const [pos, e] of entries) {
    f.mem().set(e.body, f.input);
    expect(f.ex.cacheIngest(pos, e.body.length + 9, e.kind, e.body.length)).toBe(0);
  }
}
