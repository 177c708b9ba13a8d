// The consensus core's entry points: `recover` builds a State, `step` advances it by one Event.
//
// Owns: event dispatch, tick-driven timers, and releasing sends held until persistence completes.
// Contract with the shell (the imperative half, src/server or src/sim):
//  - Perform effects in order. `persist` must be made durable and then reported with
//    `persisted { seq }` (seqs complete in order). Sends that vouch for persisted state are held
//    by the core until then, so the shell may perform every `send` at once.
//  - `apply` effects come in instance order, once each; `installSnapshot` replaces the state
//    machine. A `reply` with outcome `read` must be answered from the state machine as it is
//    after all preceding effects.
//  - Time is the `tick` event's `nowTicks` on a monotonic clock; nothing else tells time.
// `step` mutates `state` in place and returns it; it never retains event buffers beyond the
// value objects stored in the log, and never shares mutable state with effects.

import { assert, unreachable } from './assert.js';
import { BALLOT_ZERO } from './ballot.js';
import { onCaughtUp } from './catchup.js';
import { onClientRead, onClientWrite } from './client.js';
import { newContext, send, type StepContext } from './context.js';
import { abandonCandidacy, canCampaign, onNak, onPrepare, onPromise, scheduleElection, startElection } from './election.js';
import { seedJitter } from './jitter.js';
import { applyDecided, masterTick, onAccept, onAccepted, onCommit, onRenew, onRenewed } from './replication.js';
import type { Config, Event, Instance, Message, NodeId, PersistSeq, Recovered, State, StepResult } from './types.js';
import { NO_INSTANCE } from './types.js';

export const EMPTY_RECOVERED: Recovered = { promised: BALLOT_ZERO, entries: [], decidedUpTo: NO_INSTANCE, appliedUpTo: NO_INSTANCE };

/**
 * Build the state of a node that starts (or restarts) with what its disk holds. A restarted node
 * follows nobody and respects that unknown master for one full lease window before promising.
 */
export function recover(config: Config, recovered: Recovered, nowTicks: number): StepResult {
  const log = new Map<number, Recovered['entries'][number]>();
  for (const e of recovered.entries) if (e.instance > recovered.appliedUpTo) log.set(e.instance, e);
  // The decided index is only as good as the entries behind it.
  let decided = Math.max(recovered.appliedUpTo, recovered.decidedUpTo);
  for (let i = recovered.appliedUpTo + 1; i <= decided; i++) {
    if (!log.has(i)) {
      decided = i - 1;
      break;
    }
  }
  const isLearner = config.learners.includes(config.self);
  const state: State = {
    config,
    nowTicks,
    role: isLearner ? 'learner' : 'follower',
    promised: recovered.promised,
    maxRoundSeen: 0,
    log,
    decidedUpTo: decided as Instance,
    appliedUpTo: recovered.appliedUpTo,
    knownMaster: null,
    lastRenewalTick: nowTicks,
    electionDeadlineTick: 0,
    candidate: null,
    master: null,
    fetch: null,
    persistSeq: 0 as PersistSeq,
    durableSeq: 0 as PersistSeq,
    held: [],
    rng: seedJitter(config.jitterSeed, config.self),
  };
  scheduleElection(state);
  const ctx = newContext();
  applyDecided(state, ctx);
  if (canCampaign(state)) ctx.effects.push({ kind: 'armTimer', timer: 'election', deadlineTick: state.electionDeadlineTick });
  return finish(state, ctx);
}

export function step(state: State, event: Event): StepResult {
  const ctx = newContext();
  switch (event.kind) {
    case 'tick':
      assert(event.nowTicks >= state.nowTicks, 'the monotonic clock went back');
      state.nowTicks = event.nowTicks;
      onTick(state, ctx);
      break;
    case 'message':
      onMessage(state, ctx, event.from, event.message);
      break;
    case 'clientWrite':
      onClientWrite(state, ctx, event.clientId, event.requestSeq, event.payload);
      break;
    case 'clientRead':
      onClientRead(state, ctx, event.clientId, event.requestSeq, event.consistency);
      break;
    case 'persisted':
      assert(event.seq <= state.persistSeq, 'persisted a seq never issued');
      if (event.seq > state.durableSeq) state.durableSeq = event.seq;
      break;
    case 'caughtUp':
      onCaughtUp(state, ctx, event.from, event.snapshot, event.entries);
      break;
    default:
      unreachable(event, 'event');
  }
  return finish(state, ctx);
}

function onTick(state: State, ctx: StepContext): void {
  switch (state.role) {
    case 'master':
      masterTick(state, ctx);
      break;
    case 'candidate':
      if (state.candidate !== null && state.nowTicks >= state.candidate.deadlineTick) abandonCandidacy(state);
      break;
    case 'follower':
      if (canCampaign(state) && state.nowTicks >= state.electionDeadlineTick) startElection(state, ctx);
      break;
    case 'learner':
      break;
    default:
      unreachable(state.role, 'role');
  }
}

function onMessage(state: State, ctx: StepContext, from: NodeId, message: Message): void {
  switch (message.kind) {
    case 'prepare':
      return onPrepare(state, ctx, from, message);
    case 'promise':
      return onPromise(state, ctx, from, message);
    case 'nak':
      return onNak(state, ctx, from, message);
    case 'accept':
      return onAccept(state, ctx, from, message);
    case 'accepted':
      return onAccepted(state, ctx, from, message);
    case 'renew':
      return onRenew(state, ctx, from, message);
    case 'renewed':
      return onRenewed(state, from, message);
    case 'commit':
      return onCommit(state, ctx, from, message);
    default:
      unreachable(message, 'message');
  }
}

/**
 * Close the step: one persist effect for all records, then release every held send whose
 * persistence is complete. Sends to self are handled right here, which may persist more.
 */
function finish(state: State, ctx: StepContext): StepResult {
  for (;;) {
    if (ctx.records.length > 0) {
      state.persistSeq = (state.persistSeq + 1) as PersistSeq;
      ctx.effects.push({ kind: 'persist', seq: state.persistSeq, records: ctx.records.splice(0) });
    }
    for (const h of ctx.afterDurable.splice(0)) state.held.push({ afterSeq: state.persistSeq, to: h.to, message: h.message });
    if (state.held.length === 0 || state.held[0].afterSeq > state.durableSeq) break;
    const ready = state.held.filter((h) => h.afterSeq <= state.durableSeq);
    state.held = state.held.filter((h) => h.afterSeq > state.durableSeq);
    for (const h of ready) {
      if (h.to === state.config.self) onMessage(state, ctx, h.to, h.message);
      else send(ctx, h.to, h.message);
    }
  }
  return { state, effects: ctx.effects };
}
