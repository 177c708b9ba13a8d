// Learning what is decided, and catching up when the local log cannot say.
//
// Owns: the follower side of the decided index, and the fetch/installSnapshot protocol.
// Invariants:
//  - An entry is marked decided only when the master that reports `decidedUpTo` proposed it: the
//    local entry's ballot equals that master's ballot. A leftover accepted under an older ballot
//    is NEVER assumed decided just because it sits in the log (Arakoon pitfall 1, its
//    `ahead_master_loses_role` test). Anything else is fetched from a node that knows.
//  - Fetched entries are decided values; they overwrite whatever undecided leftover was there.
//  - At most one fetch is outstanding; it is retried after fetchTimeoutTicks.

import { abandonCandidacy } from './election.js';
import { applyDecided } from './replication.js';
import { persist, type StepContext } from './context.js';
import type { AcceptedEntry, Ballot, Instance, NodeId, SnapshotOffer, State } from './types.js';

/** The master with `ballot` says everything up to `upTo` is decided. */
export function learnDecided(state: State, ctx: StepContext, ballot: Ballot, upTo: Instance, from: NodeId): void {
  if (state.role === 'master') return;
  const before = state.decidedUpTo;
  while (state.decidedUpTo < upTo) {
    const next = state.decidedUpTo + 1;
    const e = state.log.get(next);
    if (e === undefined || e.ballot !== ballot) break;
    state.decidedUpTo = next as Instance;
  }
  if (state.decidedUpTo > before) {
    persist(ctx, { kind: 'decided', upTo: state.decidedUpTo });
    applyDecided(state, ctx);
  }
  if (state.decidedUpTo < upTo) maybeFetch(state, ctx, from);
}

export function maybeFetch(state: State, ctx: StepContext, from: NodeId): void {
  if (from === state.config.self) return;
  if (state.fetch !== null && state.nowTicks < state.fetch.sentTick + state.config.fetchTimeoutTicks) return;
  const fromInstance = (state.decidedUpTo + 1) as Instance;
  state.fetch = { from, fromInstance, sentTick: state.nowTicks };
  ctx.effects.push({ kind: 'fetch', from, fromInstance });
}

export function onCaughtUp(
  state: State,
  ctx: StepContext,
  from: NodeId,
  snapshot: SnapshotOffer | null,
  entries: readonly AcceptedEntry[],
): void {
  if (state.fetch !== null && state.fetch.from === from) state.fetch = null;
  // A master's decided index is authoritative and it never asked; stale answers are dropped.
  if (state.role === 'master') return;
  const before = state.decidedUpTo;
  if (snapshot !== null && snapshot.instance > state.decidedUpTo) {
    ctx.effects.push({ kind: 'installSnapshot', instance: snapshot.instance, data: snapshot.data });
    state.decidedUpTo = snapshot.instance;
    state.appliedUpTo = snapshot.instance;
    for (const i of [...state.log.keys()]) if (i <= snapshot.instance) state.log.delete(i);
  }
  for (const e of entries) {
    if (e.instance <= state.decidedUpTo) continue;
    if (e.instance !== state.decidedUpTo + 1) break;
    state.log.set(e.instance, e);
    persist(ctx, { kind: 'accepted', entry: e });
    state.decidedUpTo = e.instance;
  }
  if (state.decidedUpTo > before) {
    persist(ctx, { kind: 'decided', upTo: state.decidedUpTo });
    applyDecided(state, ctx);
    // A candidate whose first undecided instance just got decided would propose stale slots.
    if (state.candidate !== null && state.decidedUpTo >= state.candidate.firstUndecided) abandonCandidacy(state);
  }
}
