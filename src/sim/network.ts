// The simulated network between nodes (and between clients and nodes).
//
// Owns: the fate of every packet (style.md §3.6, after TigerBeetle's packet simulator):
// per-packet delay drawn from a base range with a rare long tail (which reorders packets and
// delivers stale ones late), loss, duplication, and partitions that form and heal. A partition is
// an assignment of nodes to sides; packets between different sides are dropped when SENT.
// Client links suffer delay and loss but no partitions (clients sit beside every node).
// Times are in microticks of global simulated time.

import type { Prng } from './prng.js';

export interface NetworkParams {
  readonly delayMinUs: number;
  readonly delayMaxUs: number;
  /** Chance of a long-tail delay, up to `tailMaxUs`. */
  readonly tailChance: number;
  readonly tailMaxUs: number;
  readonly lossChance: number;
  readonly duplicateChance: number;
}

export class SimNetwork {
  /** node → side; absent = side 0. Empty map = fully connected. */
  private sides = new Map<number, number>();
  faultsActive = true;
  sent = 0;
  dropped = 0;
  duplicated = 0;
  partitioned = 0;

  constructor(
    private readonly params: NetworkParams,
    private readonly prng: Prng,
  ) {}

  partition(sides: ReadonlyMap<number, number>): void {
    this.sides = new Map(sides);
  }

  heal(): void {
    this.sides = new Map();
  }

  isPartitioned(): boolean {
    return this.sides.size > 0;
  }

  connected(a: number, b: number): boolean {
    return (this.sides.get(a) ?? 0) === (this.sides.get(b) ?? 0);
  }

  /** Delivery delays (µs) for one packet: [] when lost, two when duplicated. */
  fate(from: number | null, to: number | null): number[] {
    this.sent++;
    if (from !== null && to !== null && !this.connected(from, to)) {
      this.partitioned++;
      return [];
    }
    if (this.faultsActive && this.prng.chance(this.params.lossChance)) {
      this.dropped++;
      return [];
    }
    const out = [this.delay()];
    if (this.faultsActive && this.prng.chance(this.params.duplicateChance)) {
      this.duplicated++;
      out.push(this.delay());
    }
    return out;
  }

  private delay(): number {
    const p = this.params;
    if (this.faultsActive && this.prng.chance(p.tailChance)) return this.prng.int(p.delayMaxUs, p.tailMaxUs);
    return this.prng.int(p.delayMinUs, p.delayMaxUs);
  }

  meanDelayUs(): number {
    return (this.params.delayMinUs + this.params.delayMaxUs) / 2;
  }
}
