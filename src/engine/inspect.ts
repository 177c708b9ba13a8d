//! What `solifuge inspect FILE` reports: both superblocks, the slab list, the tree's shape and the
//! checker's verdict. Opens the file read-only (shared lock, no truncation).
//!
//! A file recovery refuses (corruption inside the committed region, a file cut short of the
//! durable end its superblock names, a foreign file or version) is still reported: what could be
//! read before the refusal (the file's size, both superblocks, the slabs scanned), and the
//! refusal itself in `failure`, with the offset it names. Only errors that say nothing about the
//! file's contents (it is missing, unreadable, or locked by a writer) are thrown.
import fs from 'node:fs';
import { crc32c } from '../wasm/crc32c.js';
import { Db } from './db.js';
import { CorruptionError, NotASolifugeFileError, UnsupportedVersionError } from './errors.js';
import { BLOCK_BYTES, SUPERBLOCK_A_POS, SUPERBLOCK_B_POS, decodeSuperblock, type SuperblockRead } from './format.js';
import { FileLog } from './log-file.js';
import { recover, scanSlab } from './recovery.js';
import { DATA_START_POS } from './format.js';
import type { CheckReport } from './check.js';
import type { CommitRecord } from './codec.js';

/** Why recovery or the read-only open refused the file. */
export interface InspectFailure {
  code: 'CORRUPTION' | 'NOT_A_SOLIFUGE_FILE' | 'UNSUPPORTED_VERSION';
  message: string;
  /** The file offset the problem was found at (corruption only). */
  offset: number | undefined;
}

export interface InspectReport {
  file: string;
  /** The file's size on disk. */
  fileBytes: number;
  superblocks: Array<{ pos: number; read: SuperblockRead }>;
  /** keyCount: live keys after the slab's commit; null where the commit does not record it (versions 2 and 4). */
  slabs: Array<{ start: number; bytes: number; seq: number; keyCount: number | null; tag: number | undefined }>;
  slabsOmitted: number;
  tornTailBytes: number;
  /** Online compaction reclaimed [8192, liveStart) (holes); 8192 when it never ran. */
  liveStart: number;
  /** Blocks the file really occupies (st_blocks × 512). */
  allocatedBytes: number;
  /** null when recovery or the open refused the file: `failure` says why. */
  lastCommit: CommitRecord | null;
  /** null when recovery or the open refused the file: `failure` says why. */
  check: CheckReport | null;
  failure: InspectFailure | null;
}

/** The file-content errors that become a report's `failure`; anything else is rethrown. */
function asFailure(err: unknown): InspectFailure {
  if (err instanceof CorruptionError) return { code: 'CORRUPTION', message: err.message, offset: err.offset };
  if (err instanceof NotASolifugeFileError) return { code: 'NOT_A_SOLIFUGE_FILE', message: err.message, offset: undefined };
  if (err instanceof UnsupportedVersionError) return { code: 'UNSUPPORTED_VERSION', message: err.message, offset: undefined };
  throw err;
}

export async function inspect(file: string, opts: { slabsMax?: number } = {}): Promise<InspectReport> {
  const slabsMax = opts.slabsMax ?? 50;
  const log = FileLog.open(file, { readOnly: true });
  const report: InspectReport = {
    file, fileBytes: log.end, superblocks: [], slabs: [], slabsOmitted: 0, tornTailBytes: 0, liveStart: DATA_START_POS,
    allocatedBytes: 0, lastCommit: null, check: null, failure: null,
  };
  try {
    const crc = (b: Uint8Array, s: number, e: number) => crc32c(b, s, e);
    report.allocatedBytes = fs.fstatSync(log.fd).blocks * 512;
    report.superblocks = [SUPERBLOCK_A_POS, SUPERBLOCK_B_POS].map((pos) => ({
      pos,
      read: decodeSuperblock(log.read(pos, Math.min(BLOCK_BYTES, Math.max(0, log.end - pos))), crc),
    }));
    let r: ReturnType<typeof recover>;
    try {
      r = recover(log, { repair: false });
    } catch (err) {
      report.failure = asFailure(err);
      return report;
    }
    report.tornTailBytes = r.tornBytes;
    report.liveStart = r.sb.liveStart;
    let pos = r.sb.liveStart;
    let prev: CommitRecord | null | 'reclaimed' = pos > DATA_START_POS ? 'reclaimed' : null;
    while (pos < r.end) {
      const s = scanSlab(log, pos, prev);
      if (!s.ok) break;
      if (report.slabs.length < slabsMax) {
        report.slabs.push({ start: pos, bytes: s.end - pos, seq: s.commit.seq, keyCount: s.commit.keyCount, tag: s.commit.tag });
      } else report.slabsOmitted++;
      prev = s.commit;
      pos = s.end;
    }
  } finally {
    log.close();
  }
  let db: Db;
  try {
    db = await Db.open(file, { readOnly: true });
  } catch (err) {
    report.failure = asFailure(err);
    return report;
  }
  try {
    report.lastCommit = db.fileInfo().lastCommit;
    report.check = db.check();
    return report;
  } finally {
    await db.close();
  }
}
