// Lease-respect checkers, run on every message a node receives and every send it performs.
//
// Owns: the two follower-side lease rules of spec part C, pitfall 3 ("Followers wait ≥ lease ×
// (1 + drift bound) from their own receipt time. A restarted node must not promise for one full
// lease"), observed from outside the core: deliveries, `send` effects and each node's own clock.
// The master's lease is only safe if no quorum can elect someone else while it lasts; these rules
// are the follower half of that argument, which the overlapping-leases check in safety.ts sees
// only when the timing happens to line up, and not at all when the margin is merely thin.
//
// What counts as a promise: a Promise sent to a candidate, and a Prepare sent by a candidate
// (starting a candidacy is promising one's own ballot, and that self-promise counts towards the
// quorum exactly like the others). Either must be for a ballot the candidate owns.
//
// Clocks: `clockTicks` is the node's own clock as a real number of ticks, read continuously (not
// the whole ticks the core sees), on one time base per node that keeps running while the node is
// down, so elapsed times can be compared across a restart. Rates differ between nodes, so only
// readings of the same node are ever subtracted.
//
//  - Restart quiet period: a node that restarted (after a crash) at clock t sends no promise
//    before t + leaseTicks. It may have acknowledged a renewal just before it crashed and has
//    forgotten it, so it must assume a lease is live (Arakoon 84f6fbf4, incubaid#483).
//    Exempt: (1) promises to the master whose ballot it has acknowledged (accepted or renewed)
//    since the restart: acking ballot b after the restart proves its durable promise was ≤ b, so
//    it had acknowledged no renewal above b, and masters below b lost their lease when b was
//    elected; (2) a promise for a ballot no higher than one it vouched for before the crash (a
//    resent promise, e.g. to a prepare that was delayed in the network): it grants nothing new.
//  - No promise while a lease may be live: a node that acknowledged (sent `renewed` for) a renewal
//    from master M, received at clock r, sends no promise to anyone but M before
//    r + leaseTicks × (1 + driftBound). M counts its lease from when it sent the renewal (earlier
//    in real time) on a clock whose rate may differ by the drift bound; waiting exactly one lease
//    is not enough (Arakoon ded76783: slaves that gave up after half a lease). This survives the
//    node's crashes: the checker remembers the renewal even when the node does not.
//    The rule lapses when the node accepts a value under a higher ballot of another master: that
//    master was elected by a quorum meeting M's renewal quorum in a node that (by this same rule)
//    waited M's lease out first.
// A violation throws SimViolation, which the runner reports with seed, tick and trace.

import { ballotNode, formatBallot, type Ballot, type Message, type NodeId } from '../../consensus/index.js';
import { SimViolation } from './safety.js';

interface Acknowledged {
  readonly master: number;
  readonly ballot: Ballot;
  readonly receivedClockTicks: number;
}

interface Restart {
  readonly clockTicks: number;
  /** The highest ballot acknowledged since the restart, if any. */
  followed: Ballot | null;
  /** The highest ballot vouched for (promise, accepted, renewed) before the crash. */
  readonly vouchedBefore: Ballot | null;
}

interface NodeView {
  /** The last restart after a crash, or null before any crash. */
  restart: Restart | null;
  /** The highest ballot this node ever vouched for (promise, accepted, renewed), any incarnation. */
  vouched: Ballot | null;
  /** The latest renewal this node acknowledged, or null. */
  acknowledged: Acknowledged | null;
  /** `from:ballot:seq` → the earliest clock reading at which this renewal arrived. */
  readonly renewReceipts: Map<string, number>;
}

export class LeaseRespectChecker {
  private readonly views = new Map<number, NodeView>();
  private readonly respectTicks: number;
  promisesChecked = 0;

  constructor(
    private readonly leaseTicks: number,
    driftBound: number,
  ) {
    this.respectTicks = leaseTicks * (1 + driftBound);
  }

  private view(node: number): NodeView {
    let v = this.views.get(node);
    if (v === undefined) {
      v = { restart: null, vouched: null, acknowledged: null, renewReceipts: new Map() };
      this.views.set(node, v);
    }
    return v;
  }

  /** `node` booted at `clockTicks`; `afterCrash` is false for the first boot of a fresh cluster. */
  onBoot(node: number, clockTicks: number, afterCrash: boolean): void {
    const v = this.view(node);
    v.renewReceipts.clear();
    if (afterCrash) v.restart = { clockTicks, followed: null, vouchedBefore: v.vouched };
  }

  /** `node` received `message` from `from` at `clockTicks`. */
  onReceive(node: number, from: NodeId, message: Message, clockTicks: number): void {
    if (message.kind !== 'renew') return;
    const receipts = this.view(node).renewReceipts;
    const k = `${from}:${message.ballot}:${message.renewalSeq}`;
    if (!receipts.has(k)) receipts.set(k, clockTicks);
    // A master sends a handful of renewals per lease: keep memory bounded.
    if (receipts.size > 256) receipts.delete(receipts.keys().next().value as string);
  }

  /** `node` sends `message` to `to` at `clockTicks`. */
  onSend(node: number, to: NodeId, message: Message, clockTicks: number): void {
    const v = this.view(node);
    if ((message.kind === 'renewed' || message.kind === 'accepted') && v.restart !== null) {
      if (v.restart.followed === null || message.ballot > v.restart.followed) v.restart.followed = message.ballot;
    }
    const vouches = message.kind === 'renewed' || message.kind === 'accepted' || message.kind === 'promise';
    if (vouches && (v.vouched === null || message.ballot > v.vouched)) v.vouched = message.ballot;
    switch (message.kind) {
      case 'renewed': {
        const r = v.renewReceipts.get(`${to}:${message.ballot}:${message.renewalSeq}`);
        if (r === undefined) throw new SimViolation(`node ${node} acknowledged a renewal ${formatBallot(message.ballot)}#${message.renewalSeq} it never received`);
        const a = v.acknowledged;
        if (a === null || message.ballot > a.ballot || (message.ballot === a.ballot && r > a.receivedClockTicks)) {
          v.acknowledged = { master: to, ballot: message.ballot, receivedClockTicks: r };
        }
        return;
      }
      case 'accepted':
        if (v.acknowledged !== null && message.ballot > v.acknowledged.ballot && ballotNode(message.ballot) !== v.acknowledged.master) v.acknowledged = null;
        return;
      case 'promise':
        return this.checkPromise(node, v, to, message.ballot, `promise ${formatBallot(message.ballot)} to ${to}`, clockTicks);
      case 'prepare':
        // Sent once per other voter, all with the same ballot: checking each is redundant, not wrong.
        return this.checkPromise(node, v, node as NodeId, message.ballot, `its own candidacy ${formatBallot(message.ballot)}`, clockTicks);
      case 'nak':
      case 'accept':
      case 'renew':
      case 'commit':
        return;
      default: {
        const never: never = message;
        throw new Error(`unhandled message ${JSON.stringify(never)}`);
      }
    }
  }

  private checkPromise(node: number, v: NodeView, candidate: NodeId, ballot: Ballot, what: string, clockTicks: number): void {
    this.promisesChecked++;
    if (ballotNode(ballot) !== candidate) throw new SimViolation(`node ${node} sent ${what}, a ballot that node does not own`);
    const restart = v.restart;
    const followsCandidate = restart?.followed != null && ballotNode(restart.followed) === candidate;
    const resent = restart?.vouchedBefore != null && ballot <= restart.vouchedBefore;
    if (restart !== null && !followsCandidate && !resent) {
      const since = clockTicks - restart.clockTicks;
      if (since < this.leaseTicks) {
        throw new SimViolation(
          `restart quiet period (pitfall 3): node ${node} sent ${what} ${since.toFixed(3)} ticks after restarting, before one lease (${this.leaseTicks})`,
        );
      }
    }
    const a = v.acknowledged;
    if (a === null || a.master === candidate) return;
    const since = clockTicks - a.receivedClockTicks;
    if (since < this.respectTicks) {
      throw new SimViolation(
        `lease may be live (pitfall 3): node ${node} sent ${what} ${since.toFixed(3)} ticks after acknowledging a renewal from master ${a.master} ` +
          `(${formatBallot(a.ballot)}), before lease × (1 + drift bound) = ${this.respectTicks.toFixed(3)}`,
      );
    }
  }
}
