//! What `solifuge inspect FILE` reports: both superblocks, the slab list, the tree's shape and the
//! checker's verdict. Opens the file read-only (shared lock, no truncation).
import fs from 'node:fs';
import { crc32c } from '../wasm/crc32c.js';
import { Db } from './db.js';
import { BLOCK_BYTES, SUPERBLOCK_A_POS, SUPERBLOCK_B_POS, decodeSuperblock, type SuperblockRead } from './format.js';
import { FileLog } from './log-file.js';
import { recover, scanSlab } from './recovery.js';
import { DATA_START_POS } from './format.js';
import type { CheckReport } from './check.js';
import type { CommitRecord } from './codec.js';

export interface InspectReport {
  file: string;
  fileBytes: number;
  superblocks: Array<{ pos: number; read: SuperblockRead }>;
  slabs: Array<{ start: number; bytes: number; seq: number; keyCount: number; tag: number | undefined }>;
  slabsOmitted: number;
  tornTailBytes: number;
  /** Online compaction reclaimed [8192, liveStart) (holes); 8192 when it never ran. */
  liveStart: number;
  /** Blocks the file really occupies (st_blocks × 512). */
  allocatedBytes: number;
  lastCommit: CommitRecord | null;
  check: CheckReport;
}

export async function inspect(file: string, opts: { slabsMax?: number } = {}): Promise<InspectReport> {
  const slabsMax = opts.slabsMax ?? 50;
  const log = FileLog.open(file, { readOnly: true });
  let superblocks: InspectReport['superblocks'];
  const slabs: InspectReport['slabs'] = [];
  let omitted = 0;
  let torn = 0;
  let liveStart = DATA_START_POS;
  let allocatedBytes = 0;
  try {
    const crc = (b: Uint8Array, s: number, e: number) => crc32c(b, s, e);
    superblocks = [SUPERBLOCK_A_POS, SUPERBLOCK_B_POS].map((pos) => ({
      pos,
      read: decodeSuperblock(log.read(pos, Math.min(BLOCK_BYTES, Math.max(0, log.end - pos))), crc),
    }));
    const r = recover(log, { repair: false });
    torn = r.tornBytes;
    liveStart = r.sb.liveStart;
    allocatedBytes = fs.fstatSync(log.fd).blocks * 512;
    let pos = r.sb.liveStart;
    let prev: CommitRecord | null | 'reclaimed' = pos > DATA_START_POS ? 'reclaimed' : null;
    while (pos < r.end) {
      const s = scanSlab(log, pos, prev);
      if (!s.ok) break;
      if (slabs.length < slabsMax) {
        slabs.push({ start: pos, bytes: s.end - pos, seq: s.commit.seq, keyCount: s.commit.keyCount, tag: s.commit.tag });
      } else omitted++;
      prev = s.commit;
      pos = s.end;
    }
  } finally {
    log.close();
  }
  const db = await Db.open(file, { readOnly: true });
  try {
    const info = db.fileInfo();
    return {
      file, fileBytes: info.fileBytes + torn, superblocks, slabs, slabsOmitted: omitted, tornTailBytes: torn, liveStart, allocatedBytes,
      lastCommit: info.lastCommit, check: db.check(),
    };
  } finally {
    await db.close();
  }
}
