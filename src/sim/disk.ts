// The simulated disk of one node: an append-only journal of persist records with fsync.
//
// Owns: what survives a crash (style.md §3.6 disk model).
//  - A persist effect's records are written at once and become durable when its fsync completes,
//    `fsyncTicks` later, in issue order.
//  - At a crash, written-but-unsynced records survive only as a random prefix; the record after
//    that prefix may be torn, which the journal's CRC detects, so recovery drops it too.
//  - Durable records are never lost or corrupted (the design claims nothing beyond that).
// The durable journal is kept folded (last promised ballot, last entry per instance, highest
// decided index) and collapsed below the state machine's applied index minus a retention count,
// like Arakoon's collapse keeping `segments-to-keep`.

import type { AcceptedEntry, Ballot, Instance, PersistRecord, PersistSeq } from '../consensus/index.js';
import { BALLOT_ZERO, NO_INSTANCE } from '../consensus/index.js';
import type { Prng } from './prng.js';

export class SimDisk {
  promised: Ballot = BALLOT_ZERO;
  readonly entries = new Map<number, AcceptedEntry>();
  decidedUpTo: Instance = NO_INSTANCE;
  /** Lowest instance still held; lower ones were collapsed into the state machine snapshot. */
  firstKept = 1;
  private pending: { seq: PersistSeq; records: readonly PersistRecord[] }[] = [];
  lostRecords = 0;
  tornRecords = 0;

  write(seq: PersistSeq, records: readonly PersistRecord[]): void {
    this.pending.push({ seq, records });
  }

  /** The fsync covering `seq` completed: everything up to it is durable. */
  sync(seq: PersistSeq): void {
    while (this.pending.length > 0 && this.pending[0].seq <= seq) {
      for (const r of this.pending.shift()!.records) this.fold(r);
    }
  }

  crash(prng: Prng): void {
    const unsynced = this.pending.flatMap((p) => p.records);
    this.pending = [];
    const kept = prng.int(0, unsynced.length);
    for (let i = 0; i < kept; i++) this.fold(unsynced[i]);
    this.lostRecords += unsynced.length - kept;
    if (kept < unsynced.length && prng.chance(0.5)) this.tornRecords++;
  }

  private fold(r: PersistRecord): void {
    switch (r.kind) {
      case 'promised':
        if (r.ballot > this.promised) this.promised = r.ballot;
        else if (r.ballot < this.promised) throw new Error('the durable promised ballot went down');
        break;
      case 'accepted':
        if (r.entry.instance >= this.firstKept) this.entries.set(r.entry.instance, r.entry);
        break;
      case 'decided':
        if (r.upTo > this.decidedUpTo) this.decidedUpTo = r.upTo;
        break;
      default: {
        const never: never = r;
        throw new Error(`bad record ${JSON.stringify(never)}`);
      }
    }
  }

  /** Drop entries below `upTo`, which the durable state machine already holds. */
  collapse(upTo: number): void {
    for (let i = this.firstKept; i < upTo; i++) this.entries.delete(i);
    if (upTo > this.firstKept) this.firstKept = upTo;
  }

  /** Decided entries from `from` on, at most `max`, or null when `from` was collapsed away. */
  decidedFrom(from: number, max: number): AcceptedEntry[] | null {
    if (from < this.firstKept) return null;
    const out: AcceptedEntry[] = [];
    for (let i = from; i <= this.decidedUpTo && out.length < max; i++) {
      const e = this.entries.get(i);
      if (e === undefined) break;
      out.push(e);
    }
    return out;
  }
}
