//! Online compaction: give back the space of everything no current root and no pinned snapshot
//! can reach, while reads, writes, snapshots and getWith handlers go on.
//!
//! Design (why holes and not segment files: one file keeps every Outer position valid and
//! recovery unchanged, and fallocate(PUNCH_HOLE) frees blocks on ext4/XFS; `du` shrinks, the file's
//! logical size does not):
//!  1. Checkpoint (so no older change waits in memory), then `boundary` = the log end. Every byte
//!     before it is old.
//!  2. Copy forward, in key order, a small chunk at a time (64 KiB): each chunk is a job in the
//!     writer queue that deletes the chunk's keys and inserts them again in ascending order with
//!     their current values (values stored before the boundary are re-read into new Value
//!     entries), which packs the new leaves full. Copy-on-write copies each touched leaf and its
//!     path, so once the last chunk is done no node or value of the live tree lies before the
//!     boundary. Other writes interleave between chunks. No actions are logged for these changes:
//!     nothing changes logically; a checkpoint every 64 MiB of copies, and one after the last
//!     chunk, makes them durable (a crash before loses only copies, never data).
//!  3. Wait until every snapshot pinned before the last chunk's commit is released (getWith
//!     handlers hold one): their trees may still reach old bytes.
//!  4. In the writer queue: fdatasync, then write *both* superblock copies, each synced, naming a
//!     commit after the boundary and `liveStart = boundary`. Only then can no open of the file ever
//!     read before the boundary, whichever copy it picks.
//!  5. Punch [8192, boundary rounded down to a page) in 64 MiB steps (whole pages: a socket may
//!     still hold pages of a value sendfile already handed to the kernel). A crash at any point
//!     leaves a file that opens to its last commit: before step 4 nothing was punched; after it,
//!     nothing before the boundary is read. A superblock never points into reclaimed space
//!     (Baardskeerder's Flog could: §A.10).
import type { BinKey } from './keys.js';

export interface CompactProgress {
  phase: 'copy' | 'wait' | 'punch' | 'done';
  /** Keys copied forward so far. */
  keysCopied: number;
  /** Keys in the store when compaction started (the copy phase's total, roughly). */
  keysTotal: number;
  /** Snapshots still pinned from before the copy finished (phase 'wait'). */
  pinnedSnapshots: number;
  /** Bytes given back to the file system so far. */
  bytesReclaimed: number;
  /** Bytes to reclaim in all ([8192, boundary)). */
  bytesToReclaim: number;
}

export interface CompactOptions {
  onProgress?: (p: CompactProgress) => void;
  /** Value and key bytes copied forward per chunk (default 64 KiB): bounds each writer pause. */
  chunkBytes?: number;
  /**
   * Share of the event loop the copying may take (default 0.15): after each chunk it rests for
   * chunk time × (1 / loadShare − 1), so concurrent reads and writes keep most of their speed.
   * 1 copies flat out.
   */
  loadShare?: number;
  /** Force a checkpoint after this many copied bytes (default 64 MiB); copies wait in memory until then. */
  checkpointEveryBytes?: number;
}

export interface CompactResult {
  boundary: number;
  keysCopied: number;
  /** Bytes punched; 0 when the file system or the missing addon cannot punch holes. */
  bytesReclaimed: number;
  /** Why nothing was punched, when nothing was. */
  punchSkipped?: string;
  /** Allocated bytes (st_blocks × 512) before and after, less the zeros written ahead of the log. */
  allocatedBytesBefore: number;
  allocatedBytesAfter: number;
}

export interface AutoCompactOptions {
  /**
   * Compact once this share of the in-use file is estimated to be garbage (default 0.5). The live
   * size is estimated as the in-use size right after the last compaction (or at open), so 0.5
   * means "the in-use part has doubled since".
   */
  garbageRatio?: number;
  /** … and is at least this large (default 64 MiB). */
  minFileBytes?: number;
}

export const PUNCH_STEP_BYTES = 64 * 1024 * 1024;

/** The state a copy chunk hands to the next. */
export interface CopyCursor {
  /** Last key copied; the next chunk starts after it. null: start from the first key. */
  afterKey: BinKey | null;
  done: boolean;
  keysCopied: number;
  /** Bytes copied since the last forced checkpoint. */
  bytesSinceCheckpoint: number;
  /** Time the last chunk took on the event loop. */
  chunkMs: number;
}
