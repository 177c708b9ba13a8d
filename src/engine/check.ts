//! The structural checker (bbolt's tx_check, style.md §2): part of the product, used by tests after
//! every commit and by `solifuge inspect`.
//!
//! Verifies, straight from disk (never through the cache): every slab from the first to the last
//! commit (entry CRCs, slab CRC, back links, sequence numbers), then the live tree of the last
//! commit: every node's checksum and kind, keys strictly ascending inside nodes and within the
//! bounds their parents set, all leaves at one depth, every Value entry's length and checksum,
//! and the key count the commit records. Problems come back as data; it throws only for I/O errors.
import type { CommitRecord } from './codec.js';
import { readNode } from './cache.js';
import { readEntry } from './entry.js';
import { DATA_START_POS, ENTRY_HEADER_BYTES, Kind } from './format.js';
import type { FileLog } from './log-file.js';
import { T, ValueRef, type DiskRef } from './node.js';
import { scanSlab } from './recovery.js';

export interface CheckReport {
  ok: boolean;
  problems: string[];
  slabs: number;
  keys: number;
  depth: number;
  leaves: number;
  indexes: number;
  valueEntries: number;
  /** Bytes reachable from the last commit's root (nodes and value entries). */
  liveBytes: number;
  fileBytes: number;
}

const PROBLEMS_MAX = 100;

export function checkStore(log: FileLog, last: CommitRecord | null): CheckReport {
  const r: CheckReport = {
    ok: true, problems: [], slabs: 0, keys: 0, depth: 0, leaves: 0, indexes: 0, valueEntries: 0, liveBytes: 0, fileBytes: log.end,
  };
  const problem = (p: string) => {
    r.ok = false;
    if (r.problems.length < PROBLEMS_MAX) r.problems.push(p);
  };

  // 1. Every slab, in order.
  let pos = DATA_START_POS;
  let prev: CommitRecord | null = null;
  const lastEnd = last === null ? DATA_START_POS : last.pos + last.len;
  while (pos < lastEnd) {
    const s = scanSlab(log, pos, prev);
    if (!s.ok) {
      problem(`slab at ${pos}: ${s.reason} (offset ${s.badPos})`);
      break;
    }
    r.slabs++;
    prev = s.commit;
    pos = s.end;
  }
  if (r.ok && pos !== lastEnd) problem(`slabs end at ${pos}, the last commit ends at ${lastEnd}`);
  if (r.ok && last !== null && prev?.pos !== last.pos) problem('the slab chain does not end at the last commit');

  // 2. The live tree.
  if (last === null || last.rootKind === 0) {
    if (last !== null && last.keyCount !== 0) problem(`empty tree but the commit counts ${last.keyCount} keys`);
    return r;
  }
  let leafDepth = -1;
  const walk = (ref: DiskRef, low: string | undefined, high: string | undefined, depth: number): void => {
    let node;
    try {
      node = readNode(log, ref.pos, ref.len);
    } catch (err) {
      problem(`node at ${ref.pos}: ${(err as Error).message}`);
      return;
    }
    r.liveBytes += ref.len;
    const keys = node.keys;
    for (let i = 0; i < keys.length; i++) {
      if (i > 0 && !(keys[i - 1] < keys[i])) problem(`node at ${ref.pos}: keys out of order at ${i}`);
      if (low !== undefined && keys[i] < low) problem(`node at ${ref.pos}: key ${i} below its parent's bound`);
      if (high !== undefined && keys[i] >= high) problem(`node at ${ref.pos}: key ${i} not below its parent's bound`);
    }
    if (node.t === T.Leaf) {
      r.leaves++;
      if (leafDepth === -1) leafDepth = depth;
      else if (leafDepth !== depth) problem(`leaf at ${ref.pos} at depth ${depth}, others at ${leafDepth}`);
      if (keys.length === 0) problem(`empty leaf at ${ref.pos}`);
      r.keys += keys.length;
      for (const v of node.vals) {
        if (v instanceof ValueRef) {
          r.valueEntries++;
          try {
            readEntry(log, v.pos, ENTRY_HEADER_BYTES + v.len, Kind.Value);
            r.liveBytes += ENTRY_HEADER_BYTES + v.len;
          } catch (err) {
            problem(`value at ${v.pos}: ${(err as Error).message}`);
          }
        }
      }
      return;
    }
    r.indexes++;
    if (node.kids.length < 1 || node.kids.length !== keys.length + 1) problem(`index at ${ref.pos}: ${node.kids.length} children for ${keys.length} separators`);
    for (let i = 0; i < node.kids.length; i++) {
      const kid = node.kids[i] as DiskRef;
      if (kid.pos >= ref.pos) problem(`index at ${ref.pos}: child ${i} at ${kid.pos} is not older than its parent`);
      walk(kid, i === 0 ? low : keys[i - 1], i === keys.length ? high : keys[i], depth + 1);
    }
  };
  if (last.rootKind !== Kind.Leaf && last.rootKind !== Kind.Index) problem(`bad root kind ${last.rootKind}`);
  walk({ pos: last.rootPos, len: last.rootLen } as DiskRef, undefined, undefined, 1);
  r.depth = leafDepth;
  if (r.keys !== last.keyCount) problem(`the tree holds ${r.keys} keys, the commit counts ${last.keyCount}`);
  return r;
}
