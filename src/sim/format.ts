// Readable one-line renderings of the core's events, messages and effects, for failure traces
// and the data-driven scenario goldens. Stable output: changing it rewrites the goldens.

import { formatBallot } from '../consensus/index.js';
import type { Effect, Event, Message, PersistRecord, ReplyOutcome, Value } from '../consensus/index.js';

export function formatValue(v: Value, payload: (p: Uint8Array) => string = hex): string {
  if (v.updates.length === 0) return 'noop';
  return '[' + v.updates.map((u) => `c${u.clientId}#${u.requestSeq}:${payload(u.payload)}`).join(' ') + ']';
}

function hex(p: Uint8Array): string {
  return [...p].map((b) => b.toString(16).padStart(2, '0')).join('');
}

export function formatMessage(m: Message, payload?: (p: Uint8Array) => string): string {
  const b = formatBallot;
  switch (m.kind) {
    case 'prepare':
      return `prepare b=${b(m.ballot)} from=${m.firstUndecided}`;
    case 'promise':
      return `promise b=${b(m.ballot)} decided=${m.decidedUpTo} accepted={${m.accepted.map((e) => `${e.instance}@${b(e.ballot)}:${formatValue(e.value, payload)}`).join(', ')}}`;
    case 'nak':
      return `nak b=${b(m.ballot)} promised=${b(m.promised)} decided=${m.decidedUpTo}`;
    case 'accept':
      return `accept b=${b(m.ballot)} i=${m.instance} v=${formatValue(m.value, payload)} decided=${m.decidedUpTo}`;
    case 'accepted':
      return `accepted b=${b(m.ballot)} i=${m.instance}`;
    case 'renew':
      return `renew b=${b(m.ballot)} seq=${m.renewalSeq} decided=${m.decidedUpTo}`;
    case 'renewed':
      return `renewed b=${b(m.ballot)} seq=${m.renewalSeq} decided=${m.decidedUpTo}`;
    case 'commit':
      return `commit b=${b(m.ballot)} decided=${m.decidedUpTo}`;
    default: {
      const never: never = m;
      return `?${JSON.stringify(never)}`;
    }
  }
}

function formatRecord(r: PersistRecord, payload?: (p: Uint8Array) => string): string {
  switch (r.kind) {
    case 'promised':
      return `promised=${formatBallot(r.ballot)}`;
    case 'accepted':
      return `${r.entry.instance}@${formatBallot(r.entry.ballot)}:${formatValue(r.entry.value, payload)}`;
    case 'decided':
      return `decided=${r.upTo}`;
    default: {
      const never: never = r;
      return `?${JSON.stringify(never)}`;
    }
  }
}

export function formatOutcome(o: ReplyOutcome): string {
  switch (o.kind) {
    case 'applied':
      return `applied i=${o.instance}`;
    case 'read':
      return `read at=${o.appliedUpTo}`;
    case 'notMaster':
      return `notMaster hint=${o.masterHint ?? '-'}`;
    case 'inconsistentRead':
      return `inconsistentRead at=${o.appliedUpTo}`;
    case 'noLongerMaster':
    case 'readOnly':
    case 'overloaded':
      return o.kind;
    default: {
      const never: never = o;
      return `?${JSON.stringify(never)}`;
    }
  }
}

export function formatEffect(e: Effect, payload?: (p: Uint8Array) => string): string {
  switch (e.kind) {
    case 'send':
      return `send ->${e.to} ${formatMessage(e.message, payload)}`;
    case 'persist':
      return `persist #${e.seq} ${e.records.map((r) => formatRecord(r, payload)).join(' ')}`;
    case 'apply':
      return `apply i=${e.instance} ${formatValue(e.value, payload)}`;
    case 'reply':
      return `reply c${e.clientId}#${e.requestSeq} ${formatOutcome(e.outcome)}`;
    case 'fetch':
      return `fetch from=${e.from} i=${e.fromInstance}`;
    case 'installSnapshot':
      return `installSnapshot i=${e.instance}`;
    case 'armTimer':
      return `armTimer ${e.timer} at=${e.deadlineTick}`;
    default: {
      const never: never = e;
      return `?${JSON.stringify(never)}`;
    }
  }
}

export function formatEvent(e: Event, payload?: (p: Uint8Array) => string): string {
  switch (e.kind) {
    case 'tick':
      return `tick ${e.nowTicks}`;
    case 'message':
      return `recv <-${e.from} ${formatMessage(e.message, payload)}`;
    case 'clientWrite':
      return `write c${e.clientId}#${e.requestSeq} ${payload ? payload(e.payload) : hex(e.payload)}`;
    case 'clientRead':
      return `read c${e.clientId}#${e.requestSeq} ${e.consistency.kind}${e.consistency.kind === 'atLeast' ? `(${e.consistency.instance})` : ''}`;
    case 'persisted':
      return `persisted #${e.seq}`;
    case 'caughtUp':
      return `caughtUp <-${e.from}${e.snapshot ? ` snapshot@${e.snapshot.instance}` : ''} entries=${e.entries.map((x) => x.instance).join(',') || '-'}`;
    default: {
      const never: never = e;
      return `?${JSON.stringify(never)}`;
    }
  }
}
