// Checkpoints of the writer's tree in linear memory (asm/wcheckpoint.ts, the Node plan record of
// asm/slab.ts, asm/cache.ts adopt): its dirty nodes planned, encoded into a slab in the store's
// own instance, then either appended (the published tree refers to the written nodes by position
// and the cache holds them) or abandoned (the nodes are unwritten again). Against a model, with
// snapshots held, restored and dropped, and puts made while a checkpoint is between its encode and
// its append. After every step: the trees read back their models with every reference count
// exact; every node a tree reaches by position is, in the cache, what the file holds there; and
// each appended checkpoint, read from the file alone by a fresh instance, is the tree it wrote.
import fc from 'fast-check';
import { Buffer } from 'node:buffer';
import { describe, expect, it } from 'vitest';
import { instance, type Instance, type Val } from './support/wasm-nodes.js';
import { KIND_INDEX, PUT_DONE, dropHeld, holdTree, PUT_MISS, PUT_NEEDS_SEAL, checkAll, switchWritten, switchWrittenInSteps, takeUndoArea, encode, ingestAll, type Disk, type Tree, del, expectContents, expectLookups, keyArb, put, readTree, records, valArb, type Root } from './support/wasm-tree.js';

/** asm/slab.ts results. */
const ERR_BAD_PLAN = -2;

/** Every node `root` reaches by position is, in `t`'s cache, the node the file holds there. */
function expectCacheIsFile(t: Instance, root: Root, file: Instance): void {
  const visit = (c: Root): void => {
    if (c.addr === 0) {
      const n = t.ex.cachedNode(c.pos) >>> 0;
      const m = file.ex.cachedNode(c.pos) >>> 0;
      expect(n).toBeGreaterThan(0);
      expect(m).toBeGreaterThan(0);
      const a = records(t, n);
      expect(a).toEqual(records(file, m));
      expect(t.mem().readUInt32LE(n + 20)).toBe(file.mem().readUInt32LE(m + 20));
      if (t.mem().readUInt32LE(n + 4) === KIND_INDEX) for (const r of a) visit(r.child!);
      return;
    }
    if (t.mem().readUInt32LE(c.addr + 4) === KIND_INDEX) for (const r of records(t, c.addr)) visit(r.child!);
  };
  if (root.addr !== 0 || root.pos > 0) visit(root);
}

type Change = { t: 'put'; key: Buffer; val: Val } | { t: 'inPlace'; key: Buffer; val: Val } | { t: 'many'; from: number; n: number } | { t: 'del'; pick: number; n: number } | { t: 'restore'; pick: number };
/** stepBytes: 0 switches in one call; else in steps of that budget, every tree read back between them. */
type Op = Change | { t: 'hold' } | { t: 'drop'; pick: number } | { t: 'checkpoint'; append: boolean; during: Change[]; stepBytes: number };
const changeArb: fc.Arbitrary<Change> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ t: fc.constant('put' as const), key: keyArb, val: valArb }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('inPlace' as const), key: keyArb, val: valArb }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('many' as const), from: fc.nat({ max: 3000 }), n: fc.integer({ min: 1, max: 200 }) }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('del' as const), pick: fc.nat(), n: fc.integer({ min: 1, max: 120 }) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('restore' as const), pick: fc.nat() }) },
);
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: changeArb },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('hold' as const) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('drop' as const), pick: fc.nat() }) },
  { weight: 4, arbitrary: fc.record({ t: fc.constant('checkpoint' as const), append: fc.boolean(), during: fc.array(changeArb, { maxLength: 4 }), stepBytes: fc.constantFrom(0, 2048, 16384) }) },
);

describe('checkpoints of the writer\'s tree (asm/wcheckpoint.ts)', () => {
  it('writes what a tree holds, hands the written nodes to the cache, and takes an abandoned write back', () => {
    let appended = 0;
    let abandoned = 0;
    let cleanRoots = 0;
    let inPlace = 0;
    let steppedSwitches = 0;
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 6, maxLength: 24 }), fc.constantFrom(256, 512, 4096), (ops, maxNodeBytes) => {
        const t = instance(64 << 20);
        const base = takeUndoArea(t, maxNodeBytes); // in-place sets below may take it
        const disk: Disk = new Map();
        const file = instance(0);
        let fileEnd = 8192;
        const writer: Tree = { root: { addr: 0, pos: 0, len: 0 }, model: new Map() };
        /** Snapshots (and savepoints): roots held, each one reference. */
        const held: Tree[] = [];
        const apply = (c: Change): void => {
          const doPut = (key: Buffer, val: Val): void => {
            writer.root = put(t, writer.root, key, val, maxNodeBytes, disk).root;
            writer.model.set(key.toString('hex'), val);
          };
          if (c.t === 'put') doPut(c.key, c.val);
          else if (c.t === 'inPlace') {
            // A batch of one set in place on the published tree, published (asm/wtree.ts): what
            // it may not change in place (a written node among them) it copies or refuses.
            if (writer.root.addr !== 0) {
              const m = t.mem();
              m.set(c.key, t.probe);
              if (!c.val.ref) m.set(c.val.bytes, t.input);
              const r = t.ex.wtreePutInPlace(writer.root.addr, c.key.length, t.input, c.val.ref ? c.val.len : c.val.bytes.length, c.val.ref ? 1 : 0, c.val.ref ? c.val.pos : 0, maxNodeBytes);
              if (r === PUT_DONE) {
                t.ex.wtreeSettle();
                writer.model.set(c.key.toString('hex'), c.val);
                inPlace++;
                return;
              }
              expect([PUT_NEEDS_SEAL, PUT_MISS]).toContain(r);
            }
            doPut(c.key, c.val);
          }
          else if (c.t === 'many') {
            for (let i = 0; i < c.n; i++) {
              const k = (c.from + i * 7919) % 3001;
              doPut(Buffer.from(`k${String(k).padStart(6, '0')}`), { ref: false, bytes: Buffer.alloc(20 + (k % 40), k & 0xff) });
            }
          } else if (c.t === 'del') {
            const keys = [...writer.model.keys()].sort();
            for (const hexKey of keys.slice(keys.length === 0 ? 0 : c.pick % keys.length).slice(0, c.n)) {
              const r = del(t, writer.root, Buffer.from(hexKey, 'hex'), maxNodeBytes, disk);
              expect(r).not.toBeNull();
              writer.root = r!;
              writer.model.delete(hexKey);
            }
          } else if (held.length > 0) {
            // A savepoint restored: the held reference moves to the writer, whose tree goes.
            const [h] = held.splice(c.pick % held.length, 1);
            if (writer.root.addr !== 0) t.ex.wtreeRelease(writer.root.addr);
            writer.root = h.root;
            writer.model = h.model;
          }
        };
        for (const op of ops) {
          if (op.t === 'hold') holdTree(t, writer, held);
          else if (op.t === 'drop') dropHeld(t, held, op.pick);
          else if (op.t === 'checkpoint') {
            if (writer.root.addr === 0) {
              for (const c of op.during) apply(c);
              continue; // nothing dirty: nothing to write
            }
            // The checkpoint holds the tree it writes; the writer goes on meanwhile (copying).
            const frozen: Tree = { root: { ...writer.root }, model: new Map(writer.model) };
            t.ex.wtreeRetain(frozen.root.addr);
            const e = encode(t, frozen.root, fileEnd);
            for (const c of op.during) apply(c);
            if (op.append) {
              for (const [pos, entry] of e.entries) disk.set(pos, entry);
              ingestAll(file, e.entries);
              fileEnd = e.end;
              const written: Root = { addr: 0, pos: t.mem().readDoubleLE(frozen.root.addr + 8), len: t.mem().readUInt32LE(frozen.root.addr + 20) };
              if (writer.root.addr !== 0 && op.stepBytes > 0) {
                // Readers between the steps see every tree as its model, every count exact (the
                // checkpoint's own hold on the tree it wrote among them).
                const s = switchWrittenInSteps(t, writer.root, op.stepBytes, () => checkAll(t, writer, [...held, frozen]));
                writer.root = s.root;
                if (s.steps > 1) steppedSwitches++;
                if (writer.root.addr === 0) cleanRoots++;
              } else if (writer.root.addr !== 0) {
                writer.root = switchWritten(t, writer.root);
                if (writer.root.addr === 0) cleanRoots++;
              }
              // The file alone holds the tree the checkpoint wrote.
              expectContents(readTree(file, written, new Map(), new Set()), frozen.model);
              expectLookups(file, written, frozen.model);
              expectCacheIsFile(t, writer.root, file);
              appended++;
            } else {
              t.ex.wtreePlanAbandon(e.plan, e.planLen);
              abandoned++;
            }
            t.ex.free(e.plan);
            t.ex.wtreeRelease(frozen.root.addr);
          } else apply(op);
          checkAll(t, writer, held);
        }
        for (const h of held) if (h.root.addr !== 0) t.ex.wtreeRelease(h.root.addr);
        if (writer.root.addr !== 0) t.ex.wtreeRelease(writer.root.addr);
        expect(t.ex.dirtyBytesInUse()).toBe(base);
      }),
      { numRuns: 100 },
    );
    // Every way was taken: appended, abandoned, and a tree left wholly clean by its checkpoint.
    expect(appended).toBeGreaterThan(80);
    expect(abandoned).toBeGreaterThan(80);
    expect(cleanRoots).toBeGreaterThan(15);
    expect(inPlace).toBeGreaterThan(50);
    expect(steppedSwitches).toBeGreaterThan(10); // switches in two steps or more (23-35 in four runs)
  });

  it('never changes a written node in place: a restored snapshot of a written tree is copied as it changes', () => {
    // The snapshot's root written too, or only the nodes below it (the writer had copied its root).
    const cases = (['put', 'inPlace', 'del'] as const).flatMap((change) => (['root', 'below'] as const).map((written) => ({ change, written })));
    for (const { change, written } of cases) {
      const t = instance(64 << 20);
      const file = instance(0);
      const disk: Disk = new Map();
      const key = (i: number) => Buffer.from(`key-${String(i).padStart(4, '0')}`);
      let root: Root = { addr: 0, pos: 0, len: 0 };
      const model = new Map<string, Val>();
      for (let i = 0; i < 300; i++) {
        root = put(t, root, key(i), { ref: false, bytes: Buffer.alloc(30, i) }, 512).root;
        model.set(key(i).toString('hex'), { ref: false, bytes: Buffer.alloc(30, i) });
      }
      // A snapshot holds the tree; a checkpoint writes the writer's; the published tree becomes clean.
      t.ex.wtreeRetain(root.addr);
      const snap = root.addr;
      const snapModel = new Map(model);
      if (written === 'below') root = put(t, root, key(0), { ref: false, bytes: Buffer.alloc(30, 0xdd) }, 512).root;
      const e = encode(t, root, 8192);
      for (const [pos, entry] of e.entries) disk.set(pos, entry);
      ingestAll(file, e.entries);
      t.ex.free(e.plan);
      t.ex.wtreeWritten(root.addr);
      expect(t.mem().readUInt32LE(t.result)).toBe(0);
      const pos = t.mem().readDoubleLE(t.result + 8);
      // The snapshot's nodes are written (all, or all but its root), by address, each with one
      // reference: restored as the writer's tree (a savepoint), a change must copy them all the same.
      expect(t.mem().readDoubleLE(snap + 8) >= 0).toBe(written === 'root');
      let w: Root = { addr: snap, pos: 0, len: 0 };
      model.clear();
      for (const [mk, mv] of snapModel) model.set(mk, mv);
      const k = key(150);
      if (change === 'inPlace') {
        t.mem().set(k, t.probe);
        t.mem().set(Buffer.alloc(30, 0xee), t.input);
        // Refused for a written root (a seal copies it); below an unwritten one, the written nodes
        // on the path are copied, journaled.
        expect(t.ex.wtreePutInPlace(w.addr, k.length, t.input, 30, 0, 0, 512)).toBe(written === 'root' ? PUT_NEEDS_SEAL : PUT_DONE);
        if (written === 'below') {
          t.ex.wtreeSettle();
          model.set(k.toString('hex'), { ref: false, bytes: Buffer.alloc(30, 0xee) });
        }
      } else if (change === 'put') {
        w = put(t, w, k, { ref: false, bytes: Buffer.alloc(30, 0xee) }, 512, disk).root;
        model.set(k.toString('hex'), { ref: false, bytes: Buffer.alloc(30, 0xee) });
      } else {
        w = del(t, w, k, 512, disk)!;
        model.delete(k.toString('hex'));
      }
      expectContents(readTree(t, w, new Map(), new Set()), model);
      // A switch (after some later checkpoint) hands every node still written to the cache as
      // the file holds it: had the change been made in place, the file's older image would win.
      if (w.addr !== 0) w = switchWritten(t, w);
      expectContents(readTree(t, w, new Map(), new Set()), model);
      expectCacheIsFile(t, w, file);
      expectCacheIsFile(t, { addr: 0, pos, len: 0 }, file);
      if (w.addr !== 0) t.ex.wtreeRelease(w.addr);
      expect(t.ex.dirtyBytesInUse()).toBe(0);
    }
  });

  it('plans only the unwritten nodes of a later tree that shares an earlier checkpoint\'s written nodes by address', () => {
    // The store's background checkpoint: an earlier commit's tree is written while later batches
    // change copies of its paths; the later tree still reaches the written nodes by address.
    const t = instance(64 << 20);
    const file = instance(0);
    const key = (i: number) => Buffer.from(`key-${String(i).padStart(4, '0')}`);
    const val = (i: number, v: number): Val => ({ ref: false, bytes: Buffer.alloc(30, v) });
    let root: Root = { addr: 0, pos: 0, len: 0 };
    const model = new Map<string, Val>();
    for (let i = 0; i < 400; i++) {
      root = put(t, root, key(i), val(i, i & 0xff), 512).root;
      model.set(key(i).toString('hex'), val(i, i & 0xff));
    }
    const base = root.addr;
    t.ex.wtreeRetain(base); // the checkpoint's hold; the writer goes on from the same tree
    const changed = [5, 390];
    for (const i of changed) {
      root = put(t, root, key(i), val(i, 0xee), 512).root;
      model.set(key(i).toString('hex'), val(i, 0xee));
    }
    const depth = (() => {
      let d = 1;
      for (let n = root.addr; t.mem().readUInt32LE(n + 4) === KIND_INDEX; d++) n = records(t, n)[0].child!.addr;
      return d;
    })();
    const first = encode(t, { addr: base, pos: 0, len: 0 }, 8192);
    ingestAll(file, first.entries);
    t.ex.free(first.plan);
    t.ex.wtreeWritten(base);
    expect(t.mem().readUInt32LE(t.result)).toBe(0); // the base tree is clean now, all of it written
    // The later tree: only the two copied paths are unwritten (at most 2 × depth nodes, the root
    // shared between them); the rest it reaches by address was written by the first slab.
    const second = encode(t, root, first.end);
    expect(second.planLen / 5).toBeGreaterThan(depth);
    expect(second.planLen / 5).toBeLessThanOrEqual(2 * depth - 1);
    ingestAll(file, second.entries);
    t.ex.free(second.plan);
    root = switchWritten(t, root);
    expect(root.addr).toBe(0);
    // A fresh instance holding both slabs' entries reads the later tree whole.
    expectContents(readTree(file, root, new Map(), new Set()), model);
    expectLookups(file, root, model);
    expect(t.ex.dirtyBytesInUse()).toBe(0);
  });

  it('takes an abandoned checkpoint\'s positions back: a later slab at the same place does not claim its nodes', () => {
    const t = instance(64 << 20);
    const file = instance(0);
    const disk: Disk = new Map();
    const key = (i: number) => Buffer.from(`key-${String(i).padStart(4, '0')}`);
    const val = (i: number): Val => ({ ref: false, bytes: Buffer.alloc(30, i & 0xff) });
    let root: Root = { addr: 0, pos: 0, len: 0 };
    const model = new Map<string, Val>();
    for (let i = 0; i < 300; i++) {
      root = put(t, root, key(i), val(i), 512).root;
      model.set(key(i).toString('hex'), val(i));
    }
    // A savepoint holds the tree; a checkpoint of it is encoded, then its append fails.
    t.ex.wtreeRetain(root.addr);
    const savepoint = { root: { ...root }, model: new Map(model) };
    const a = encode(t, root, 8192);
    t.ex.wtreePlanAbandon(a.plan, a.planLen);
    t.ex.free(a.plan);
    expect(t.mem().readDoubleLE(savepoint.root.addr + 8)).toBe(-1);
    // The writer goes on; the next checkpoint is written where the failed one would have been.
    for (let i = 0; i < 300; i += 2) {
      root = put(t, root, key(i), val(i + 1), 512).root;
      model.set(key(i).toString('hex'), val(i + 1));
    }
    const frozen = root.addr;
    t.ex.wtreeRetain(frozen); // the checkpoint's hold
    const b = encode(t, root, 8192);
    // Meanwhile the savepoint is restored: the writer's tree is the savepoint's again.
    t.ex.wtreeRelease(root.addr);
    root = savepoint.root;
    for (const [pos, entry] of b.entries) disk.set(pos, entry);
    ingestAll(file, b.entries);
    t.ex.free(b.plan);
    t.ex.wtreeWritten(root.addr);
    expect(t.mem().readUInt32LE(t.result)).toBe(root.addr); // its root was not written
    t.ex.wtreeRelease(frozen);
    expectContents(readTree(t, root, new Map(), new Set()), savepoint.model);
    expectCacheIsFile(t, root, file);
    t.ex.wtreeRelease(root.addr);
    expect(t.ex.dirtyBytesInUse()).toBe(0);
  });

  it('writes values not in the file yet where the caller\'s table places them, and caches the positions', () => {
    const t = instance(64 << 20);
    const file = instance(0);
    const key = (i: number) => Buffer.from(`key-${String(i).padStart(4, '0')}`);
    let root: Root = { addr: 0, pos: 0, len: 0 };
    const model = new Map<string, Val>();
    for (let i = 0; i < 300; i++) {
      const v: Val = { ref: false, bytes: Buffer.alloc(20, i) };
      root = put(t, root, key(i), v, 512).root;
      model.set(key(i).toString('hex'), v);
    }
    // Values 0..2 are pending (-(id + 1)) in three leaves; the table says where each goes.
    const pending = [key(10), key(150), key(290)];
    pending.forEach((k, id) => (root = put(t, root, k, { ref: true, pos: -(id + 1), len: 5000 + id }, 512).root));
    const table = t.ex.alloc(5 * 8) >>> 0;
    t.ex.pendingTable(table, 5);
    const setTable = (vals: number[]): void => vals.forEach((v, i) => t.mem().writeDoubleLE(v, table + i * 8));
    const start = 8192;
    // The plan: two Value entries, then the tree's nodes.
    const values = [Buffer.alloc(5000, 1), Buffer.alloc(5002, 3)];
    const planFor = (): { plan: number; planLen: number; rows: number } => {
      const plan = t.ex.alloc(1 << 20) >>> 0;
      let at = plan;
      for (const v of values) {
        t.mem()[at] = 1;
        t.mem().writeUInt32LE(v.length, at + 1);
        t.mem().set(v, at + 5);
        at += 5 + v.length;
      }
      const n = t.ex.wtreePlan(root.addr, at, (1 << 20) - (at - plan));
      expect(n).toBeGreaterThan(0);
      return { plan, planLen: at - plan + n, rows: 2 + n / 5 };
    };
    const out = t.ex.alloc(1 << 20) >>> 0;
    const rowsAt = t.ex.alloc(12 * 1000) >>> 0;
    const enc = (p: { plan: number; planLen: number; rows: number }): number => t.ex.slabEncode(p.plan, p.planLen, out, 1 << 20, rowsAt, p.rows, start);
    // Refused while a value cannot be placed: no entry, an entry not before the node, or none yet.
    const p = planFor();
    for (const bad of [[-1, 123_456, NaN], [-1, 123_456, -(1000 + 1)], [-1, 123_456, 1.5], [-1, -(2.5 + 1), -2]]) {
      setTable(bad);
      expect(enc(p)).toBe(ERR_BAD_PLAN);
      t.ex.wtreePlanAbandon(p.plan + 5 + values[0].length + 5 + values[1].length, p.planLen - (10 + values[0].length + values[1].length));
    }
    // Value 0 is this slab's entry 0, value 1 is in the file already, value 2 is entry 1.
    setTable([-(0 + 1), 123_456, -(1 + 1)]);
    const n = enc(p);
    expect(n).toBeGreaterThan(0);
    const m = t.mem();
    const entryPos = (i: number) => start + m.readUInt32LE(rowsAt + i * 12);
    const placed = [entryPos(0), 123_456, entryPos(1)];
    // The file: every node entry, read back by a fresh instance.
    const disk: Disk = new Map();
    const slab = Buffer.from(m.subarray(out, out + n));
    for (let i = 2; i < p.rows; i++) {
      const off = m.readUInt32LE(rowsAt + i * 12);
      const len = m.readUInt32LE(rowsAt + i * 12 + 4);
      disk.set(start + off, { body: Buffer.from(slab.subarray(off + 9, off + len)), kind: slab[off + 8] });
    }
    ingestAll(file, disk);
    const rootAt = { addr: 0, pos: m.readDoubleLE(root.addr + 8), len: m.readUInt32LE(root.addr + 20) };
    pending.forEach((k, id) => model.set(k.toString('hex'), { ref: true, pos: placed[id], len: 5000 + id }));
    expectContents(readTree(file, rootAt, new Map(), new Set()), model);
    // Until the table holds file positions, the cache takes no node with a pending value: its
    // entries of this slab mean nothing outside the encode.
    let leaf = root.addr;
    while (m.readUInt32LE(leaf + 4) === KIND_INDEX) {
      // The last child whose separator is at most the key (entry 0 has none).
      const recs = records(t, leaf);
      let i = 0;
      while (i + 1 < recs.length && Buffer.compare(recs[i + 1].key, pending[0]) <= 0) i++;
      leaf = recs[i].child!.addr;
    }
    expect(records(t, leaf).some((r) => r.val!.ref)).toBe(true);
    expect(t.ex.cacheAdopt(leaf)).toBe(-1);
    expect(t.ex.cachedNode(m.readDoubleLE(leaf + 8))).toBe(0);
    // Appended: the table holds file positions now, and the cache takes the written nodes with them.
    setTable(placed);
    root = switchWritten(t, root);
    expect(root).toEqual(rootAt);
    expectContents(readTree(t, root, new Map(), new Set()), model);
    expectCacheIsFile(t, root, file);
    expect(t.ex.dirtyBytesInUse()).toBe(0);
  });

  it('refuses a plan naming what is not a node of the writer, or a node whose child is not written; the cache adopts only a written node with clean children', () => {
    const t = instance(64 << 20);
    let root: Root = { addr: 0, pos: 0, len: 0 };
    for (let i = 0; i < 400; i++) root = put(t, root, Buffer.from(`key-${String(i).padStart(4, '0')}`), { ref: false, bytes: Buffer.alloc(30, i) }, 512).root;
    expect(t.mem().readUInt32LE(root.addr + 4)).toBe(KIND_INDEX);
    const plan = t.ex.alloc(64) >>> 0;
    const out = t.ex.alloc(1 << 20) >>> 0;
    const table = t.ex.alloc(1024) >>> 0;
    const encodeOne = (addr: number): number => {
      const m = t.mem();
      m[plan] = 6;
      m.writeUInt32LE(addr, plan + 1);
      return t.ex.slabEncode(plan, 5, out, 1 << 20, table, 1, 8192);
    };
    // Not a node: an address in the cache's input area, one inside a node, one past the region.
    expect(encodeOne(t.input)).toBe(ERR_BAD_PLAN);
    expect(encodeOne(root.addr + 8)).toBe(ERR_BAD_PLAN);
    expect(encodeOne(0xffff_fff0)).toBe(ERR_BAD_PLAN);
    // The root before its children: refused, and it gains no position.
    expect(encodeOne(root.addr)).toBe(ERR_BAD_PLAN);
    expect(t.mem().readDoubleLE(root.addr + 8)).toBe(-1);
    // A leaf alone is fine.
    let leaf = root.addr;
    while (t.mem().readUInt32LE(leaf + 4) === KIND_INDEX) leaf = records(t, leaf)[0].child!.addr;
    expect(encodeOne(leaf)).toBeGreaterThan(0);
    expect(t.mem().readDoubleLE(leaf + 8)).toBe(8192);
    // The cache takes a written node whose children are clean, as the file holds it...
    expect(t.ex.cacheAdopt(leaf)).toBe(0);
    expect(records(t, t.ex.cachedNode(8192) >>> 0)).toEqual(records(t, leaf));
    // ...and no node without a position, or with a child it refers to by address.
    expect(t.ex.cacheAdopt(root.addr)).toBe(-1);
    t.mem().writeDoubleLE(1 << 20, root.addr + 8);
    expect(t.ex.cacheAdopt(root.addr)).toBe(-1);
    expect(t.ex.cachedNode(1 << 20)).toBe(0);
    t.ex.free(plan);
    t.ex.free(out);
    t.ex.free(table);
  });
});
