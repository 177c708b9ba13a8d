//! Opening a data file: pick the superblock, verify the last commit, cut a torn tail.
//!
//! Rules (design.md §2; spec/baardskeerder-and-arakoon.md §A.9 for what Baardskeerder got wrong):
//! - The valid superblock copy with the higher counter wins. No magic in either copy: not our file.
//! - The commit the superblock names lies in the durable region: if it fails its checksum, that
//!   is corruption (CorruptionError with its offset), never a reason to silently roll back.
//! - From the superblock's `dataEnd` we scan slab by slab: every entry's CRC, then the commit's
//!   slab CRC, its `slabStart`, its back link and its sequence number. The first slab that fails
//!   ends the scan.
//! - What follows the last valid commit is a torn tail (a crash mid-append) *only if no valid
//!   commit after the damage proves the damaged bytes durable*. A commit proves it when it was
//!   appended with every byte before its slab already durable (`afterDurable`, commit versions 1
//!   and 2): the damage then hit bytes an fdatasync had covered, acknowledged data may sit behind
//!   it, and we refuse to open (CorruptionError), unless the caller asked for `repair`. A commit
//!   appended while bytes before it were not yet durable (versions 3 and 4: `durable: false`, the
//!   store's or a transaction's) proves nothing: after a power cut it can survive an earlier slab
//!   that did not, and neither was acknowledged as durable, so the damage is a torn tail. (A
//!   durable store never appends a slab while one before it is unsynced; background checkpoints
//!   sync theirs before the next batch appends: db.ts runBackgroundCheckpoint.)
//!   power-loss.test.ts checks all of it under simulated power cuts.
//! - Limit: damage inside the *last* slab after the superblock's durable mark cannot be told from a
//!   torn append, so it is cut like one (the earlier commits stay exact). The superblock is rewritten
//!   every `superblockIntervalBytes` and on close, which moves the mark forward.
//! - A writable open truncates the torn tail and fdatasyncs, so new slabs never follow garbage.
import { Buffer } from 'node:buffer';
import { crc32c, crc32cUpdate } from '../wasm/crc32c.js';
import { COMMIT_BODY_BYTES, decodeActionsBody, decodeCommitBody, type Action, type CommitRecord } from './codec.js';
import { readEntry, verifyEntry } from './entry.js';
import { CorruptionError, NotASolifugeFileError, UnsupportedVersionError } from './errors.js';
import {
  BLOCK_BYTES, DATA_START_POS, FORMAT_VERSION, ENTRY_BODY_BYTES_MAX, ENTRY_HEADER_BYTES, Kind, SUPERBLOCK_A_POS, SUPERBLOCK_B_POS,
  decodeSuperblock, isKind, readU32, type Superblock,
} from './format.js';
import type { FileLog } from './log-file.js';

export interface Recovered {
  sb: Superblock;
  /** Position of the superblock copy that won. */
  sbPos: number;
  lastCommit: CommitRecord | null;
  /** End of the last valid slab: where the next slab goes. */
  end: number;
  /** Bytes after `end` that were (or, read-only, would be) cut off. */
  tornBytes: number;
  /** Slabs found beyond the superblock's dataEnd. */
  slabsScanned: number;
}

const crc = (b: Uint8Array, s: number, e: number) => crc32c(b, s, e);

export function readSuperblocks(log: FileLog): { sb: Superblock; sbPos: number } {
  if (log.end < DATA_START_POS) {
    throw new NotASolifugeFileError(log.path, `only ${log.end} bytes, smaller than the two superblocks`);
  }
  const a = decodeSuperblock(log.read(SUPERBLOCK_A_POS, BLOCK_BYTES), crc);
  const b = decodeSuperblock(log.read(SUPERBLOCK_B_POS, BLOCK_BYTES), crc);
  if (a.kind === 'foreign' && b.kind === 'foreign') throw new NotASolifugeFileError(log.path, 'no superblock magic');
  for (const x of [a, b]) if (x.kind === 'badVersion') throw new UnsupportedVersionError(log.path, x.version, FORMAT_VERSION);
  const valid: Array<{ sb: Superblock; sbPos: number }> = [];
  if (a.kind === 'valid') valid.push({ sb: a.sb, sbPos: SUPERBLOCK_A_POS });
  if (b.kind === 'valid') valid.push({ sb: b.sb, sbPos: SUPERBLOCK_B_POS });
  if (valid.length === 0) throw new CorruptionError(SUPERBLOCK_A_POS, 'both superblock copies fail their checksum');
  valid.sort((x, y) => y.sb.counter - x.sb.counter);
  return valid[0];
}

export function loadCommit(log: FileLog, pos: number, len: number): CommitRecord {
  const e = readEntry(log, pos, len, Kind.Commit);
  return decodeCommitBody(e.buf, ENTRY_HEADER_BYTES, ENTRY_HEADER_BYTES + e.bodyLen, pos, len);
}

export type SlabScan =
  | { ok: true; commit: CommitRecord; end: number; actions: Action[] | null }
  | { ok: false; badPos: number; reason: string };

/**
 * Validates the slab starting at `start`, chained after `prev`; decodes its actions if asked.
 * `prev === 'reclaimed'`: the slab is the first after space online compaction gave back, so its
 * back link points into reclaimed space and is not followed.
 */
export function scanSlab(log: FileLog, start: number, prev: CommitRecord | null | 'reclaimed', wantActions = false): SlabScan {
  let actions: Action[] | null = null;
  let actionEntries = 0;
  let pos = start;
  let slabCrc = 0;
  const header = Buffer.allocUnsafe(ENTRY_HEADER_BYTES);
  for (;;) {
    if (pos + ENTRY_HEADER_BYTES > log.end) return { ok: false, badPos: pos, reason: 'slab cut short' };
    log.readInto(header, 0, ENTRY_HEADER_BYTES, pos);
    const bodyLen = readU32(header, 4);
    const kind = header[8];
    if (!isKind(kind)) return { ok: false, badPos: pos, reason: `unknown entry kind ${kind}` };
    if (bodyLen > log.end - pos - ENTRY_HEADER_BYTES) return { ok: false, badPos: pos, reason: 'entry runs past the end' };
    if (bodyLen > ENTRY_BODY_BYTES_MAX) return { ok: false, badPos: pos, reason: `entry length ${bodyLen} beyond any this engine writes` };
    const len = ENTRY_HEADER_BYTES + bodyLen;
    const buf = log.read(pos, len);
    try {
      verifyEntry(buf, 0, pos);
    } catch (err) {
      return { ok: false, badPos: pos, reason: (err as Error).message };
    }
    if (kind === Kind.Commit) {
      let c: CommitRecord;
      try {
        c = decodeCommitBody(buf, ENTRY_HEADER_BYTES, len, pos, len);
      } catch (err) {
        return { ok: false, badPos: pos, reason: (err as Error).message };
      }
      if (c.slabStart !== start) return { ok: false, badPos: pos, reason: 'commit names another slab start' };
      if (prev === 'reclaimed') {
        if (c.prevCommitPos >= start) return { ok: false, badPos: pos, reason: 'commit links forward' };
      } else {
        if (c.prevCommitPos !== (prev?.pos ?? 0)) return { ok: false, badPos: pos, reason: 'commit does not link to the previous one' };
        if (c.seq !== (prev?.seq ?? 0) + 1) return { ok: false, badPos: pos, reason: `commit sequence ${c.seq} out of order` };
      }
      if (c.slabCrc !== slabCrc) return { ok: false, badPos: start, reason: 'slab checksum mismatch' };
      if (actionEntries !== 1) return { ok: false, badPos: pos, reason: `slab has ${actionEntries} actions entries` };
      return { ok: true, commit: c, end: pos + len, actions };
    }
    if (kind === Kind.Actions) {
      actionEntries++;
      if (wantActions) {
        try {
          actions = decodeActionsBody(buf, ENTRY_HEADER_BYTES, len, pos);
        } catch (err) {
          return { ok: false, badPos: pos, reason: (err as Error).message };
        }
      }
    }
    slabCrc = crc32cUpdate(slabCrc, buf, 0, 4); // the entry's own CRC (format: codec.ts, commit body)
    pos += len;
  }
}

/**
 * Looks for a checksum-valid commit entry at or after `from` (a commit's header is fixed) that
 * could continue this file's chain after `last`: a later sequence number, a back link at or
 * after `last`, a slab that starts at or after `from - 1` and scans cleanly up to the commit.
 * The chain conditions keep bytes that merely look like a commit (a Solifuge file stored as a
 * value, say) from turning a torn tail into a refusal to open. Only a commit appended after
 * durable bytes (`afterDurable`) counts: see the rules above.
 */
export function findCommitAfter(log: FileLog, from: number, last: CommitRecord | null = null): number | null {
  const len = ENTRY_HEADER_BYTES + COMMIT_BODY_BYTES;
  const pattern = Buffer.from([COMMIT_BODY_BYTES, 0, 0, 0, Kind.Commit]);
  const chunkBytes = 4 << 20;
  for (let base = from; base < log.end; base += chunkBytes - len) {
    const n = Math.min(chunkBytes, log.end - base);
    const chunk = log.read(base, n);
    let at = chunk.indexOf(pattern, 4);
    while (at !== -1) {
      const entryOff = at - 4;
      if (entryOff + len <= n) {
        const pos = base + entryOff;
        try {
          verifyEntry(chunk.subarray(entryOff, entryOff + len), 0, pos);
          const c = decodeCommitBody(chunk, entryOff + ENTRY_HEADER_BYTES, entryOff + len, pos, len);
          const continues =
            c.afterDurable &&
            c.seq > (last?.seq ?? 0) &&
            c.prevCommitPos >= (last?.pos ?? 0) &&
            c.slabStart >= from - 1 &&
            c.slabStart <= pos &&
            c.prevCommitPos < c.slabStart;
          if (continues) {
            // And its whole slab must check out where it says it starts.
            const slab = scanSlab(log, c.slabStart, 'reclaimed');
            if (slab.ok && slab.end === pos + len) return pos;
          }
        } catch {
          // not a commit after all
        }
      }
      at = chunk.indexOf(pattern, at + 1);
    }
    if (base + n >= log.end) break;
  }
  return null;
}

export function recover(log: FileLog, opts: { repair: boolean }): Recovered {
  const { sb, sbPos } = readSuperblocks(log);
  // First, as it names the cause: a file cut short of its durable end (its last commit, which
  // lies before that end, is then often cut off too).
  if (sb.dataEnd > log.end) {
    throw new CorruptionError(log.end, `file ends at ${log.end}, before the durable end ${sb.dataEnd} the superblock records`);
  }
  let last: CommitRecord | null = null;
  if (sb.lastCommitPos !== 0) last = loadCommit(log, sb.lastCommitPos, sb.lastCommitLen);
  let pos = sb.dataEnd;
  let slabs = 0;
  while (pos < log.end) {
    const r = scanSlab(log, pos, last);
    if (!r.ok) {
      const later = findCommitAfter(log, pos + 1, last);
      if (later !== null && !opts.repair) {
        throw new CorruptionError(r.badPos, `${r.reason}, and a valid commit follows at ${later}: not a torn tail (open with repair to cut it)`);
      }
      break;
    }
    last = r.commit;
    pos = r.end;
    slabs++;
  }
  return { sb, sbPos, lastCommit: last, end: pos, tornBytes: log.end - pos, slabsScanned: slabs };
}

/**
 * Calls `apply` with the actions of every slab after the checkpoint `last` names, up to the end of
 * `last`'s slab, in order. That rebuilds the tree of the last commit from its checkpoint. The
 * checkpoint's commit is the one whose tree it is: a background checkpoint's slab, which holds
 * that tree, comes later, among the replayed slabs (its actions are none; it is read and checked
 * like the others). Returns how many slabs were replayed, and their bytes less that slab's: the
 * log a checkpoint would spare the next replay.
 */
export function replayAfterCheckpoint(log: FileLog, last: CommitRecord, apply: (actions: Action[]) => void): { slabs: number; logBytes: number } {
  let prev: CommitRecord | null = null;
  let pos = DATA_START_POS;
  if (last.treeCommitPos !== 0) {
    prev = loadCommit(log, last.treeCommitPos, ENTRY_HEADER_BYTES + COMMIT_BODY_BYTES);
    if (prev.seq !== last.treeSeq) throw new CorruptionError(prev.pos, `checkpoint commit has seq ${prev.seq}, expected ${last.treeSeq}`);
    pos = prev.pos + prev.len;
  }
  const end = last.pos + last.len;
  let slabs = 0;
  let logBytes = 0;
  while (pos < end) {
    const s = scanSlab(log, pos, prev, true);
    if (!s.ok) throw new CorruptionError(s.badPos, `replaying commits after the checkpoint: ${s.reason}`);
    apply(s.actions as Action[]);
    const holdsTree = last.rootKind !== 0 && last.rootPos >= pos && last.rootPos < s.commit.pos;
    if (!holdsTree) logBytes += s.end - pos;
    prev = s.commit;
    pos = s.end;
    slabs++;
  }
  if (pos !== end || prev?.pos !== last.pos) throw new CorruptionError(pos, 'replay did not end at the last commit');
  return { slabs, logBytes };
}
