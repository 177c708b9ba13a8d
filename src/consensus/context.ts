// The per-step output buffer and the persist-before-send rule.
//
// Owns: how a step accumulates effects. All records persisted during one step go out as ONE
// persist effect (one fsync) at the end of the step. A send that vouches for persisted state
// (promise, accepted, renewed) goes through `sendAfterDurable`: it is held in State until a
// `persisted` event covers every persist issued so far. Holding on the latest seq is conservative
// (it may wait for unrelated records) and never wrong.

import type { Effect, Message, NodeId, PersistRecord, TimerKind } from './types.js';

export interface StepContext {
  readonly effects: Effect[];
  readonly records: PersistRecord[];
  readonly afterDurable: { to: NodeId; message: Message }[];
}

export function newContext(): StepContext {
  return { effects: [], records: [], afterDurable: [] };
}

export function send(ctx: StepContext, to: NodeId, message: Message): void {
  ctx.effects.push({ kind: 'send', to, message });
}

export function persist(ctx: StepContext, record: PersistRecord): void {
  ctx.records.push(record);
}

export function sendAfterDurable(ctx: StepContext, to: NodeId, message: Message): void {
  ctx.afterDurable.push({ to, message });
}

export function armTimer(ctx: StepContext, timer: TimerKind, deadlineTick: number): void {
  ctx.effects.push({ kind: 'armTimer', timer, deadlineTick });
}
