// Phase 1: candidacy, promises, naks, becoming master and stepping down.
//
// Owns: the rules that make a master (design §3, spec §C.3–§C.6).
// Invariants:
//  - A node promises ballot b only if b > promised, the candidate is not behind it (its first
//    undecided instance is above our decided index; otherwise Nak with our decided index so it
//    catches up), and we are not respecting another master's lease (lease.ts).
//  - The promised ballot is persisted before the promise leaves (sendAfterDurable).
//  - A promise carries every accepted entry from the candidate's first undecided instance, each
//    with the ballot it was accepted in; the new master re-proposes, per instance, the value with
//    the HIGHEST ballot (not Arakoon's plurality, pitfall 6), and fills holes with no-ops.
//  - A promise grants no lease; the new master's lease starts with its first acknowledged renewal.

import { assert } from './assert.js';
import { ballotNode, ballotRound, makeBallot } from './ballot.js';
import { armTimer, persist, send, sendAfterDurable, type StepContext } from './context.js';
import { drawJitter } from './jitter.js';
import { isRespectingLease, respectTicks } from './lease.js';
import { isQuorum } from './quorum.js';
import { propose, sendRenewal } from './replication.js';
import { maybeFetch } from './catchup.js';
import type { AcceptedEntry, Ballot, Instance, Message, NodeId, State } from './types.js';

const NOOP = { updates: [] } as const;

export function isVoter(state: State, node: NodeId): boolean {
  return state.config.voters.includes(node);
}

/** May this node ever start an election, given its role and the master mode? */
export function canCampaign(state: State): boolean {
  const c = state.config;
  if (!isVoter(state, c.self) || c.witnesses.includes(c.self)) return false;
  const mode = c.masterMode;
  switch (mode.kind) {
    case 'elected':
    case 'preferred':
      return true;
    case 'forced':
      return mode.master === c.self;
    case 'readOnly':
      return false;
    default:
      return assertNever(mode);
  }
}

function assertNever(x: never): never {
  throw new Error(`unhandled master mode ${JSON.stringify(x)}`);
}

/** Extra wait for non-preferred nodes, so a preferred node normally wins (spec §B.13). */
function preferenceDelayTicks(state: State): number {
  const mode = state.config.masterMode;
  if (mode.kind === 'preferred' && !mode.nodes.includes(state.config.self)) return state.config.leaseTicks;
  return 0;
}

/** Re-arm the election deadline from the last sign of life of the master we follow. */
export function scheduleElection(state: State): void {
  state.electionDeadlineTick =
    state.lastRenewalTick + respectTicks(state.config) + preferenceDelayTicks(state) + drawJitter(state, state.config.electionJitterTicks);
}

/** We heard from the master (or candidate) holding `ballot`: respect it from now. */
export function followMaster(state: State, ballot: Ballot): void {
  state.knownMaster = ballot;
  state.lastRenewalTick = state.nowTicks;
  scheduleElection(state);
}

/** Raise `promised` to `ballot` (which must be higher) durably, leaving any master/candidate role. */
/**
 * We promised `ballot`'s candidate. A promise grants no lease, so it starts no respect window:
 * only a master's renewals do. Otherwise a failed candidate would keep its promisers locked for a
 * lease after every attempt, and candidates splitting a 5-node vote would livelock (seed 108).
 * Give the candidate a candidacy's time before campaigning ourselves.
 */
function followCandidate(state: State, ballot: Ballot): void {
  state.knownMaster = ballot;
  const wait = state.config.candidacyTimeoutTicks + drawJitter(state, state.config.electionJitterTicks);
  state.electionDeadlineTick = Math.max(state.electionDeadlineTick, state.nowTicks + wait);
}

export function adoptBallot(state: State, ctx: StepContext, ballot: Ballot): void {
  assert(ballot > state.promised, 'adoptBallot must raise the ballot');
  stepDown(state, ctx);
  state.promised = ballot;
  state.maxRoundSeen = Math.max(state.maxRoundSeen, ballotRound(ballot));
  persist(ctx, { kind: 'promised', ballot });
}

export function stepDown(state: State, ctx: StepContext): void {
  const m = state.master;
  if (m !== null) {
    // In-flight writes may still be decided by the next master: the answer is ambiguous.
    for (const [clientId, requestSeq] of m.pendingClients) {
      ctx.effects.push({ kind: 'reply', clientId, requestSeq, outcome: { kind: 'noLongerMaster' } });
    }
    state.master = null;
  }
  state.candidate = null;
  if (state.role === 'master' || state.role === 'candidate') {
    state.role = 'follower';
    scheduleElection(state);
  }
}

export function abandonCandidacy(state: State): void {
  state.candidate = null;
  state.role = 'follower';
  // Retry soon: the nodes that promised us respect us (same node), the others outbid us anyway.
  state.electionDeadlineTick = state.nowTicks + 1 + drawJitter(state, state.config.electionJitterTicks);
}

function acceptedFrom(state: State, first: Instance): AcceptedEntry[] {
  const out: AcceptedEntry[] = [];
  for (const e of state.log.values()) if (e.instance >= first) out.push(e);
  out.sort((a, b) => a.instance - b.instance);
  return out;
}

export function startElection(state: State, ctx: StepContext): void {
  const c = state.config;
  stepDown(state, ctx);
  const round = Math.max(ballotRound(state.promised), state.maxRoundSeen) + 1;
  const ballot = makeBallot(round, c.self);
  state.promised = ballot;
  state.maxRoundSeen = round;
  persist(ctx, { kind: 'promised', ballot });
  state.knownMaster = ballot;
  const firstUndecided = (state.decidedUpTo + 1) as Instance;
  const deadlineTick = state.nowTicks + c.candidacyTimeoutTicks + drawJitter(state, c.electionJitterTicks);
  state.candidate = { ballot, firstUndecided, startedTick: state.nowTicks, deadlineTick, promises: new Map() };
  state.role = 'candidate';
  armTimer(ctx, 'election', deadlineTick);
  for (const v of c.voters) if (v !== c.self) send(ctx, v, { kind: 'prepare', ballot, firstUndecided });
  // Our own promise counts only once our promised ballot is durable.
  sendAfterDurable(ctx, c.self, {
    kind: 'promise',
    ballot,
    decidedUpTo: state.decidedUpTo,
    accepted: acceptedFrom(state, firstUndecided),
  });
}

function nak(state: State, ctx: StepContext, to: NodeId, ballot: Ballot): void {
  send(ctx, to, { kind: 'nak', ballot, promised: state.promised, decidedUpTo: state.decidedUpTo });
}

export function onPrepare(state: State, ctx: StepContext, from: NodeId, m: Extract<Message, { kind: 'prepare' }>): void {
  const c = state.config;
  if (!isVoter(state, c.self) || !isVoter(state, from) || from === c.self) return;
  state.maxRoundSeen = Math.max(state.maxRoundSeen, ballotRound(m.ballot));
  if (m.ballot < state.promised) return nak(state, ctx, from, m.ballot);
  if (m.ballot > state.promised) {
    // Forced mode: only the forced master may ever be promised (spec §B.13).
    if (c.masterMode.kind === 'forced' && from !== c.masterMode.master) return nak(state, ctx, from, m.ballot);
    // Lease respect: no promise to anyone but the master we follow while its lease may hold.
    // After a restart knownMaster is null, so we promise nobody for one window.
    // Our own candidacy never held a lease, so we respect ourselves only while master (a master
    // that promises steps down, so its lease dies with the promise anyway; this avoids churn).
    const followed = state.knownMaster === null ? null : ballotNode(state.knownMaster);
    const selfExempt = followed === c.self && state.role !== 'master';
    if (isRespectingLease(state) && followed !== from && !selfExempt) return;
    // A candidate behind us must catch up first (pitfall 5): it would propose in decided slots.
    if (state.decidedUpTo >= m.firstUndecided) return nak(state, ctx, from, m.ballot);
    adoptBallot(state, ctx, m.ballot);
    followCandidate(state, m.ballot);
  } else if (ballotNode(m.ballot) !== from) {
    return; // equal ballot from a node that does not own it: malformed, ignore
  }
  sendAfterDurable(ctx, from, {
    kind: 'promise',
    ballot: m.ballot,
    decidedUpTo: state.decidedUpTo,
    accepted: acceptedFrom(state, m.firstUndecided),
  });
}

export function onPromise(state: State, ctx: StepContext, from: NodeId, m: Extract<Message, { kind: 'promise' }>): void {
  const cand = state.candidate;
  if (cand === null || m.ballot !== cand.ballot || !isVoter(state, from)) return;
  assert(m.decidedUpTo < cand.firstUndecided, 'a promiser is never ahead of the candidate');
  cand.promises.set(from, m.accepted);
  if (isQuorum(cand.promises.keys(), state.config.voters, state.config.quorumOverride)) becomeMaster(state, ctx);
}

export function onNak(state: State, ctx: StepContext, from: NodeId, m: Extract<Message, { kind: 'nak' }>): void {
  state.maxRoundSeen = Math.max(state.maxRoundSeen, ballotRound(m.promised));
  const cand = state.candidate;
  if (cand !== null && m.ballot === cand.ballot) {
    if (m.decidedUpTo >= cand.firstUndecided) {
      abandonCandidacy(state);
      maybeFetch(state, ctx, from);
    } else if (m.promised > cand.ballot) {
      abandonCandidacy(state);
    }
    return;
  }
  const master = state.master;
  if (master !== null && m.ballot === master.ballot && m.promised > master.ballot) {
    // Someone promised higher. Re-elect at once with a higher round: our followers exempt us from
    // their lease respect (we are the master they follow), so this is quick and safe.
    startElection(state, ctx);
    return;
  }
  if (m.decidedUpTo > state.decidedUpTo && state.role !== 'master') maybeFetch(state, ctx, from);
}

export function becomeMaster(state: State, ctx: StepContext): void {
  const cand = state.candidate;
  assert(cand !== null, 'becomeMaster without candidacy');
  assert(state.decidedUpTo + 1 === cand.firstUndecided, 'decided index moved during candidacy');
  // Per instance, the value accepted in the highest ballot (textbook Paxos, pitfall 6).
  const best = new Map<number, AcceptedEntry>();
  let maxInstance = state.decidedUpTo as number;
  for (const entries of cand.promises.values()) {
    for (const e of entries) {
      if (e.instance < cand.firstUndecided) continue;
      const cur = best.get(e.instance);
      if (cur === undefined || e.ballot > cur.ballot) best.set(e.instance, e);
      if (e.instance > maxInstance) maxInstance = e.instance;
    }
  }
  state.role = 'master';
  state.candidate = null;
  state.fetch = null;
  state.master = {
    ballot: cand.ballot,
    nextInstance: cand.firstUndecided,
    inFlight: new Map(),
    queue: [],
    pendingClients: new Map(),
    // No lease yet: it starts with the first renewal a quorum acknowledges (sent just below).
    leaseUntilTick: 0,
    electedTick: state.nowTicks,
    renewalSeq: 0,
    renewals: new Map(),
    nextRenewTick: state.nowTicks,
    barrier: maxInstance as Instance,
    followers: new Map(),
    handoverTo: null,
  };
  for (let i = cand.firstUndecided as number; i <= maxInstance; i++) {
    propose(state, ctx, best.get(i)?.value ?? NOOP);
  }
  sendRenewal(state, ctx);
}
