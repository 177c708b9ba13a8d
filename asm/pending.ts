// Values not yet in the file, as the writer's leaves name them (step 4 of bench/RESULTS.md round
// 25's plan): a leaf record whose value is kept in a Value entry (REF_FLAG, asm/cache.ts) holds that
// entry's file position, or, while the entry is not appended yet, -(id + 1): the value's id in the
// caller's table of pending values.
//
// Owns: turning an id into a position when a node is written or cached. The table is the caller's
// (JS keeps the bytes and answers reads meanwhile): `count` f64 at `table`, entry id holding
//   >= 0            the Value entry's file position, once it is appended;
//   -(i + 1)        the entry is entry i of the slab being encoded now (an Inner reference,
//                   Baardskeerder's §A.5): its position is the slab's start plus that entry's offset;
//   anything else   not written yet (NaN, say): the node cannot be written, nor cached.
// Must never: read outside the table, or answer a position for an id it cannot resolve.

let tableAt: usize = 0;
let tableCount: u32 = 0;
/** The slab being encoded (asm/slab.ts sets them): its start, its entry table, the rows so far. */
let slabStart: f64 = 0;
let slabRows: usize = 0;
let slabRowsWritten: u32 = 0;

/** Registers the caller's table of pending values' positions (`count` f64 at `table`; 0, 0: none). */
export function pendingTable(table: usize, count: u32): void {
  tableAt = table;
  tableCount = count;
}

/**
 * asm/slab.ts, before it encodes a node: Inner references resolve against the `rowsWritten`
 * entries of the slab at `start` encoded so far (entry table at `rows`: u32 offset first, 12 bytes a
 * row). `rows` 0: no slab (a node cached, not written), so only file positions resolve.
 */
export function pendingSlab(start: f64, rows: usize, rowsWritten: u32): void {
  slabStart = start;
  slabRows = rows;
  slabRowsWritten = rowsWritten;
}

/**
 * The file position for a reference's stored `pos`: itself when >= 0; for -(id + 1), what the
 * table says (a position, or the position of an entry of the slab being encoded); -1 when it
 * cannot be resolved.
 */
export function pendingPosition(pos: f64): f64 {
  if (pos >= 0) return pos;
  const idf = -pos - 1;
  if (!(idf >= 0 && idf < <f64>tableCount) || idf != Math.floor(idf)) return -1;
  const v = load<f64>(tableAt + (<usize>(<u32>idf) << 3));
  if (v >= 0) return v <= 9007199254740991.0 && v == Math.floor(v) ? v : -1; // a whole position, or nothing
  // An Inner reference: only to an entry this slab already holds (values come before the nodes).
  const i = -v - 1;
  if (slabRows == 0 || !(i >= 0 && i < <f64>slabRowsWritten) || i != Math.floor(i)) return -1;
  return slabStart + <f64>load<u32>(slabRows + <usize>(<u32>i) * 12);
}
