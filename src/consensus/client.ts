// Client requests as the core sees them: writes to batch, reads to admit or refuse.
//
// Owns: the read modes (spec §B.7) and write admission. Payloads are opaque; the shell decodes
// them and produces results. A write is answered only after its instance is applied here.

import { ballotNode } from './ballot.js';
import { canServeConsistentRead } from './lease.js';
import { tryPropose } from './replication.js';
import type { StepContext } from './context.js';
import type { ClientId, Consistency, NodeId, ReplyOutcome, State } from './types.js';

function reply(ctx: StepContext, clientId: ClientId, requestSeq: number, outcome: ReplyOutcome): void {
  ctx.effects.push({ kind: 'reply', clientId, requestSeq, outcome });
}

/** Who this node believes is master, for the client's next try. */
export function masterHint(state: State): NodeId | null {
  if (state.role === 'master') return state.config.self;
  if (state.knownMaster === null || state.role === 'candidate') return null;
  const n = ballotNode(state.knownMaster);
  return n === state.config.self ? null : n;
}

export function onClientWrite(state: State, ctx: StepContext, clientId: ClientId, requestSeq: number, payload: Uint8Array): void {
  if (state.config.masterMode.kind === 'readOnly') return reply(ctx, clientId, requestSeq, { kind: 'readOnly' });
  const m = state.master;
  if (state.role !== 'master' || m === null) {
    return reply(ctx, clientId, requestSeq, { kind: 'notMaster', masterHint: masterHint(state) });
  }
  if (m.pendingClients.get(clientId) === requestSeq) return; // a retry of what is already queued or in flight
  // Making way for a preferred master: refuse definitely (nothing proposed), pointing at it.
  // Accepting would also keep refreshing the followers' respect windows and delay the election.
  if (m.handoverTo !== null) return reply(ctx, clientId, requestSeq, { kind: 'notMaster', masterHint: m.handoverTo });
  if (m.queue.length >= state.config.queueMaxUpdates) return reply(ctx, clientId, requestSeq, { kind: 'overloaded' });
  m.pendingClients.set(clientId, requestSeq);
  m.queue.push({ clientId, requestSeq, payload });
  tryPropose(state, ctx);
}

export function onClientRead(state: State, ctx: StepContext, clientId: ClientId, requestSeq: number, consistency: Consistency): void {
  const served: ReplyOutcome = { kind: 'read', appliedUpTo: state.appliedUpTo };
  switch (consistency.kind) {
    case 'noGuarantees':
      return reply(ctx, clientId, requestSeq, served);
    case 'atLeast':
      return reply(
        ctx,
        clientId,
        requestSeq,
        state.appliedUpTo >= consistency.instance ? served : { kind: 'inconsistentRead', appliedUpTo: state.appliedUpTo },
      );
    case 'consistent':
      if (state.config.masterMode.kind === 'readOnly' || canServeConsistentRead(state)) return reply(ctx, clientId, requestSeq, served);
      return reply(ctx, clientId, requestSeq, { kind: 'notMaster', masterHint: masterHint(state) });
    default: {
      const never: never = consistency;
      throw new Error(`unhandled consistency ${JSON.stringify(never)}`);
    }
  }
}
