// Phase 2 and the lease: proposing, accepting, deciding, applying, renewing.
//
// Owns: the steady state of Multi-Paxos with a stable master (design §3).
// Invariants:
//  - An acceptor takes (ballot, instance, value) only if ballot ≥ promised, and persists it (and
//    the raised ballot) before `accepted` leaves.
//  - The master decides instance i when a quorum of voters, itself included once durable, has
//    accepted i in its ballot; decided instances are applied strictly in instance order, each once.
//  - At most pipelineWindow instances are proposed and undecided at a time (election re-proposals
//    excepted); client updates queue meanwhile and leave as one batch per instance.
//  - Renewals are messages, not log instances: an idle cluster's log does not grow.
//  - Preferred-master mode: a non-preferred master that sees a healthy, caught-up preferred node
//    makes way by letting its lease run out (handoverTarget); it never shortens anyone's lease.

import { AssertionError, assert } from './assert.js';
import { armTimer, persist, send, sendAfterDurable, type StepContext } from './context.js';
import { adoptBallot, followMaster, isVoter, stepDown } from './election.js';
import { learnDecided } from './catchup.js';
import { holdsLease } from './lease.js';
import { isQuorum } from './quorum.js';
import type { Ballot, Instance, Message, NodeId, State, Update, Value } from './types.js';

/** A preferred node within this many instances of the master counts as caught up (Arakoon: txid within 5). */
export const HANDOVER_LAG_INSTANCES = 5;

function others(state: State): NodeId[] {
  const c = state.config;
  return [...c.voters, ...c.learners].filter((n) => n !== c.self);
}

/** Propose `value` at the master's next instance. */
export function propose(state: State, ctx: StepContext, value: Value): void {
  const m = state.master;
  assert(m !== null && state.role === 'master', 'propose outside master role');
  const instance = m.nextInstance;
  m.nextInstance = (instance + 1) as Instance;
  const entry = { instance, ballot: m.ballot, value };
  state.log.set(instance, entry);
  persist(ctx, { kind: 'accepted', entry });
  m.inFlight.set(instance, { value, acks: new Set(), chosen: false, lastSentTick: state.nowTicks });
  for (const n of others(state)) {
    send(ctx, n, { kind: 'accept', ballot: m.ballot, instance, value, decidedUpTo: state.decidedUpTo });
  }
  sendAfterDurable(ctx, state.config.self, { kind: 'accepted', ballot: m.ballot, instance });
}

/** Fill the pipeline window from the client queue, one batch per instance. */
export function tryPropose(state: State, ctx: StepContext): void {
  const m = state.master;
  if (m === null) return;
  while (m.queue.length > 0 && m.nextInstance - 1 - state.decidedUpTo < state.config.pipelineWindow) {
    const updates: Update[] = m.queue.splice(0, state.config.batchMaxUpdates);
    propose(state, ctx, { updates });
  }
}

/**
 * The shared start of handling a master's Accept or Renew: nak a ballot below our promise,
 * adopt a higher one, step down from candidacy, and follow that master. False when naked.
 */
function followMasterBallot(state: State, ctx: StepContext, from: NodeId, ballot: Ballot): boolean {
  if (ballot < state.promised) {
    send(ctx, from, { kind: 'nak', ballot, promised: state.promised, decidedUpTo: state.decidedUpTo });
    return false;
  }
  if (ballot > state.promised) adoptBallot(state, ctx, ballot);
  assert(state.role !== 'master', 'two masters share a ballot');
  if (state.role === 'candidate') stepDown(state, ctx);
  followMaster(state, ballot);
  return true;
}

export function onAccept(state: State, ctx: StepContext, from: NodeId, m: Extract<Message, { kind: 'accept' }>): void {
  if (!followMasterBallot(state, ctx, from, m.ballot)) return;
  if (m.instance > state.decidedUpTo) {
    const entry = { instance: m.instance, ballot: m.ballot, value: m.value };
    state.log.set(m.instance, entry);
    persist(ctx, { kind: 'accepted', entry });
  }
  // An instance we already know decided carries the decided value (Paxos), so acking it is safe.
  if (isVoter(state, state.config.self)) sendAfterDurable(ctx, from, { kind: 'accepted', ballot: m.ballot, instance: m.instance });
  learnDecided(state, ctx, m.ballot, m.decidedUpTo, from);
}

export function onAccepted(state: State, ctx: StepContext, from: NodeId, msg: Extract<Message, { kind: 'accepted' }>): void {
  const m = state.master;
  if (m === null || msg.ballot !== m.ballot || !isVoter(state, from)) return;
  const f = m.inFlight.get(msg.instance);
  if (f === undefined) return; // already applied
  f.acks.add(from);
  if (f.chosen || !isQuorum(f.acks, state.config.voters, state.config.quorumOverride)) return;
  f.chosen = true;
  const before = state.decidedUpTo;
  for (let next = m.inFlight.get(state.decidedUpTo + 1); next?.chosen === true; next = m.inFlight.get(state.decidedUpTo + 1)) {
    state.decidedUpTo = (state.decidedUpTo + 1) as Instance;
  }
  if (state.decidedUpTo === before) return;
  persist(ctx, { kind: 'decided', upTo: state.decidedUpTo });
  applyDecided(state, ctx);
  for (const n of others(state)) send(ctx, n, { kind: 'commit', ballot: m.ballot, decidedUpTo: state.decidedUpTo });
  tryPropose(state, ctx);
}

/** Apply every decided, unapplied instance in order; answer the master's local clients. */
export function applyDecided(state: State, ctx: StepContext): void {
  while (state.appliedUpTo < state.decidedUpTo) {
    const instance = (state.appliedUpTo + 1) as Instance;
    const entry = state.log.get(instance);
    if (entry === undefined) throw new AssertionError(`decided instance ${instance} has no entry`);
    ctx.effects.push({ kind: 'apply', instance, value: entry.value });
    state.appliedUpTo = instance;
    state.log.delete(instance);
    const m = state.master;
    if (m === null) continue;
    m.inFlight.delete(instance);
    for (const u of entry.value.updates) {
      if (m.pendingClients.get(u.clientId) !== u.requestSeq) continue;
      m.pendingClients.delete(u.clientId);
      ctx.effects.push({ kind: 'reply', clientId: u.clientId, requestSeq: u.requestSeq, outcome: { kind: 'applied', instance } });
    }
  }
}

export function sendRenewal(state: State, ctx: StepContext): void {
  const m = state.master;
  assert(m !== null, 'renewal outside master role');
  const c = state.config;
  m.renewalSeq += 1;
  m.renewals.set(m.renewalSeq, { sentTick: state.nowTicks, acks: new Set([c.self]) });
  // Keep only recent renewals: an ack for an old one could not extend the lease further anyway.
  for (const seq of m.renewals.keys()) if (seq <= m.renewalSeq - 8) m.renewals.delete(seq);
  m.nextRenewTick = state.nowTicks + c.renewIntervalTicks;
  armTimer(ctx, 'renewal', m.nextRenewTick);
  state.lastRenewalTick = state.nowTicks;
  for (const v of c.voters) {
    if (v !== c.self) send(ctx, v, { kind: 'renew', ballot: m.ballot, renewalSeq: m.renewalSeq, decidedUpTo: state.decidedUpTo });
  }
  for (const l of c.learners) send(ctx, l, { kind: 'commit', ballot: m.ballot, decidedUpTo: state.decidedUpTo });
  onRenewalAck(state, m.renewalSeq);
}

function onRenewalAck(state: State, seq: number): void {
  const m = state.master;
  if (m === null) return;
  const r = m.renewals.get(seq);
  if (r === undefined || !isQuorum(r.acks, state.config.voters, state.config.quorumOverride)) return;
  m.leaseUntilTick = Math.max(m.leaseUntilTick, r.sentTick + state.config.leaseTicks);
}

export function onRenew(state: State, ctx: StepContext, from: NodeId, m: Extract<Message, { kind: 'renew' }>): void {
  if (!followMasterBallot(state, ctx, from, m.ballot)) return;
  learnDecided(state, ctx, m.ballot, m.decidedUpTo, from);
  // Acked after learning what the renewal says is decided, so the ack reports how far we are.
  if (isVoter(state, state.config.self)) {
    sendAfterDurable(ctx, from, { kind: 'renewed', ballot: m.ballot, renewalSeq: m.renewalSeq, decidedUpTo: state.decidedUpTo });
  }
}

export function onRenewed(state: State, from: NodeId, msg: Extract<Message, { kind: 'renewed' }>): void {
  const m = state.master;
  if (m === null || msg.ballot !== m.ballot || !isVoter(state, from)) return;
  const r = m.renewals.get(msg.renewalSeq);
  if (r === undefined) return;
  r.acks.add(from);
  const seen = m.followers.get(from);
  if (seen === undefined || r.sentTick >= seen.renewalSentTick) m.followers.set(from, { renewalSentTick: r.sentTick, decidedUpTo: msg.decidedUpTo });
  onRenewalAck(state, msg.renewalSeq);
}

export function onCommit(state: State, ctx: StepContext, from: NodeId, m: Extract<Message, { kind: 'commit' }>): void {
  if (m.ballot < state.promised && state.role !== 'learner') return;
  learnDecided(state, ctx, m.ballot, m.decidedUpTo, from);
}

/** Master housekeeping on a tick: lease expiry, renewals, resending unacknowledged accepts. */
export function masterTick(state: State, ctx: StepContext): void {
  const m = state.master;
  assert(m !== null, 'masterTick outside master role');
  // Without a quorum of renewals for a whole lease, give up the role: the clients get an answer
  // and this node can take part in the next election.
  if (state.nowTicks >= Math.max(m.leaseUntilTick, m.electedTick + state.config.leaseTicks)) {
    stepDown(state, ctx);
    return;
  }
  if (m.handoverTo === null) m.handoverTo = handoverTarget(state);
  // Making way: no more renewals, so the lease runs out and the step-down above follows.
  if (state.nowTicks >= m.nextRenewTick && m.handoverTo === null) sendRenewal(state, ctx);
  const c = state.config;
  for (const [instance, f] of m.inFlight) {
    if (f.chosen || state.nowTicks < f.lastSentTick + c.resendTicks) continue;
    f.lastSentTick = state.nowTicks;
    for (const v of c.voters) {
      if (v === c.self || f.acks.has(v)) continue;
      send(ctx, v, { kind: 'accept', ballot: m.ballot, instance: instance as Instance, value: f.value, decidedUpTo: state.decidedUpTo });
    }
  }
}

/**
 * Preferred-master mode (spec §B.13): a master that is not preferred makes way for a preferred
 * node that is healthy (it acknowledged one of the last two renewals) and caught up (its decided
 * index is within HANDOVER_LAG_INSTANCES of ours). Arakoon's preferred node asks for DROP_MASTER;
 * here the master sees the same facts in the renewal acks and acts itself.
 * Making way is safe by construction: the master only stops renewing and refuses new writes, so
 * its lease runs out and it steps down (masterTick); every follower then still waits its full
 * respect window before promising anyone, and the preferred node campaigns a lease before the
 * non-preferred ones (preferenceDelayTicks), so it normally wins. It waits a lease after its
 * election first, so a preferred node that keeps failing cannot make the master flap quickly.
 */
function handoverTarget(state: State): NodeId | null {
  const m = state.master;
  const c = state.config;
  const mode = c.masterMode;
  if (m === null || mode.kind !== 'preferred' || mode.nodes.includes(c.self)) return null;
  if (!holdsLease(state) || state.nowTicks < m.electedTick + c.leaseTicks) return null;
  for (const p of mode.nodes) {
    if (c.witnesses.includes(p)) continue;
    const f = m.followers.get(p);
    if (f === undefined || f.renewalSentTick < state.nowTicks - 2 * c.renewIntervalTicks) continue;
    if (f.decidedUpTo + HANDOVER_LAG_INSTANCES >= state.decidedUpTo) return p;
  }
  return null;
}
