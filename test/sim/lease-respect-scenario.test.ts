// Targeted lease-timing scenarios: one acceptor, run by the real core, with every effect it emits
// judged by the simulator's durability and lease-respect checkers.
//
// Why: random seeds reach the edge of a lease window only by chance (a prepare must arrive in
// the few ticks between one lease and lease × (1 + drift bound) after a renewal), so a bug in the
// acceptor's respect window alone is caught by only a tenth of the seeds. Here a candidate's
// prepare is swept over every tick of that edge, after a renewal and after a restart, and the
// acceptor must (a) never promise early (the checkers throw) and (b) promise once the window has
// passed (so the sweep proves something: an acceptor that never promises would pass (a)).
// The acceptor is a witness, so it never campaigns: only its promises are under test here; its
// own candidacies are covered by the seed suites.
import { describe, expect, it } from 'vitest';
import {
  EMPTY_RECOVERED,
  asInstance,
  asNodeId,
  makeBallot,
  makeConfig,
  recover,
  step,
  type Effect,
  type Event,
  type Message,
  type NodeId,
  type State,
} from '../../src/consensus/index.js';
import { DurabilityChecker } from '../../src/sim/checkers/durability.js';
import { LeaseRespectChecker } from '../../src/sim/checkers/lease-respect.js';
import { SimDisk } from '../../src/sim/disk.js';

const LEASE_TICKS = 20;
const DRIFT_BOUND = 0.1;
const master = asNodeId(0);
const acceptor = asNodeId(1);
const candidate = asNodeId(2);
const config = makeConfig({
  self: acceptor,
  voters: [master, acceptor, candidate],
  witnesses: [acceptor],
  leaseTicks: LEASE_TICKS,
  driftBound: DRIFT_BOUND,
  jitterSeed: 1,
});

/** A shell for one node: fsyncs complete at once (after the step), clock = global ticks. */
class OneNode {
  readonly disk = new SimDisk();
  readonly durability = new DurabilityChecker();
  readonly lease = new LeaseRespectChecker(LEASE_TICKS, DRIFT_BOUND);
  /** Global time in ticks; the node's clock reads `nowTicks - bootTicks`. */
  nowTicks = 0;
  private bootTicks = 0;
  private state: State;
  readonly promisedTo: { to: NodeId; atTicks: number }[] = [];

  constructor() {
    this.lease.onBoot(acceptor, 0, false);
    const r = recover(config, EMPTY_RECOVERED, 0);
    this.state = r.state;
    this.run(r.effects);
  }

  private run(effects: readonly Effect[]): void {
    const fsyncs: Event[] = [];
    for (const e of effects) {
      if (e.kind === 'send') {
        this.durability.onSend(acceptor, e.to, e.message, this.disk, 0);
        this.lease.onSend(acceptor, e.to, e.message, this.nowTicks);
        if (e.message.kind === 'promise') this.promisedTo.push({ to: e.to, atTicks: this.nowTicks });
      } else if (e.kind === 'persist') {
        this.disk.write(e.seq, e.records);
        fsyncs.push({ kind: 'persisted', seq: e.seq });
      }
    }
    for (const ev of fsyncs) {
      if (ev.kind === 'persisted') this.disk.sync(ev.seq);
      this.deliver(ev);
    }
  }

  private deliver(ev: Event): void {
    if (ev.kind === 'message') this.lease.onReceive(acceptor, ev.from, ev.message, this.nowTicks);
    this.run(step(this.state, ev).effects);
  }

  tickUntil(globalTicks: number): void {
    while (this.nowTicks < globalTicks) {
      this.nowTicks++;
      this.deliver({ kind: 'tick', nowTicks: this.nowTicks - this.bootTicks });
    }
  }

  receive(from: NodeId, message: Message): void {
    this.deliver({ kind: 'message', from, message });
  }

  /** Crash (unsynced records are lost; here there are none) and restart with the clock at 0. */
  restart(): void {
    this.bootTicks = this.nowTicks;
    this.lease.onBoot(acceptor, this.nowTicks, true);
    const d = this.disk;
    const r = recover(config, { promised: d.promised, entries: [...d.entries.values()], decidedUpTo: d.decidedUpTo, appliedUpTo: asInstance(0) }, 0);
    this.state = r.state;
    this.run(r.effects);
  }
}

const masterBallot = makeBallot(1, master);
const renew: Message = { kind: 'renew', ballot: masterBallot, renewalSeq: 1, decidedUpTo: asInstance(0) };
const prepare = (round: number): Message => ({ kind: 'prepare', ballot: makeBallot(round, candidate), firstUndecided: asInstance(1) });

/** Deliver prepares from the candidate every tick from `fromTicks` on; return when it was first promised. */
function firstPromiseTick(n: OneNode, fromTicks: number, untilTicks: number): number | null {
  for (let t = fromTicks, round = 2; t <= untilTicks; t++, round++) {
    n.tickUntil(t);
    n.receive(candidate, prepare(round));
    const p = n.promisedTo.find((x) => x.to === candidate);
    if (p !== undefined) return p.atTicks;
  }
  return null;
}

describe('an acceptor respects the lease it acknowledged, to the tick', () => {
  it('promises another candidate only after lease × (1 + drift bound) from the renewal, and then does', () => {
    const renewalTicks = 40;
    for (let start = renewalTicks + 1; start <= renewalTicks + 2 * LEASE_TICKS; start++) {
      const n = new OneNode();
      n.tickUntil(renewalTicks);
      n.receive(master, renew);
      expect(n.durability.promisesChecked + n.lease.promisesChecked).toBe(0);
      const at = firstPromiseTick(n, start, renewalTicks + 3 * LEASE_TICKS);
      expect(at).not.toBeNull();
      expect(at! - renewalTicks).toBeGreaterThanOrEqual(LEASE_TICKS * (1 + DRIFT_BOUND));
    }
  });

  it('a restarted acceptor promises nobody for one lease after the restart, and then does', () => {
    for (let start = 1; start <= 2 * LEASE_TICKS; start++) {
      const n = new OneNode();
      n.tickUntil(40);
      n.receive(master, renew);
      n.tickUntil(40 + 2 * LEASE_TICKS); // the acknowledged lease is long over: only the restart rule applies
      n.restart();
      const restartTicks = n.nowTicks;
      const at = firstPromiseTick(n, restartTicks + start, restartTicks + 3 * LEASE_TICKS);
      expect(at).not.toBeNull();
      expect(at! - restartTicks).toBeGreaterThanOrEqual(LEASE_TICKS);
    }
  });

  it('a restarted acceptor still respects a renewal it acknowledged just before crashing', () => {
    const n = new OneNode();
    n.tickUntil(40);
    n.receive(master, renew);
    n.tickUntil(41);
    n.restart();
    const at = firstPromiseTick(n, 42, 40 + 3 * LEASE_TICKS);
    expect(at).not.toBeNull();
    expect(at! - 40).toBeGreaterThanOrEqual(LEASE_TICKS * (1 + DRIFT_BOUND));
  });
});
