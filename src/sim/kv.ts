// The simulated state machine: a tiny key/value register store with client sessions.
//
// Owns: what a decided value DOES in the simulation, and the payload codec of client ops.
// Invariants:
//  - Values are applied in instance order, exactly once per instance (asserted).
//  - Session dedup: an update whose (clientId, requestSeq) is not newer than the client's last
//    applied one is skipped and keeps its first result, so retried writes apply once.
//  - set and delete return the previous value, which lets the linearizability checker see writes
//    observe state, not only reads.
// Payload layout (5 bytes): op u8 (1 set, 2 delete, 3 get) | key u8 | value u32 LE (set only).

import type { Instance, Value } from '../consensus/index.js';

export type KvOp = { readonly kind: 'set'; readonly key: number; readonly value: number } | { readonly kind: 'delete'; readonly key: number } | { readonly kind: 'get'; readonly key: number };

export function encodeOp(op: KvOp): Uint8Array {
  const b = new Uint8Array(6);
  b[0] = op.kind === 'set' ? 1 : op.kind === 'delete' ? 2 : 3;
  b[1] = op.key;
  if (op.kind === 'set') new DataView(b.buffer).setUint32(2, op.value, true);
  return b;
}

export function decodeOp(b: Uint8Array): KvOp {
  const key = b[1];
  switch (b[0]) {
    case 1:
      return { kind: 'set', key, value: new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(2, true) };
    case 2:
      return { kind: 'delete', key };
    case 3:
      return { kind: 'get', key };
    default:
      throw new Error(`bad op byte ${b[0]}`);
  }
}

interface Session {
  seq: number;
  result: number | null;
}

export class KvStore {
  kv = new Map<number, number>();
  sessions = new Map<number, Session>();
  appliedUpTo = 0;

  apply(instance: Instance, value: Value): void {
    if (instance !== this.appliedUpTo + 1) throw new Error(`apply out of order: ${instance} after ${this.appliedUpTo}`);
    for (const u of value.updates) {
      const s = this.sessions.get(u.clientId);
      if (s !== undefined && u.requestSeq <= s.seq) continue;
      const op = decodeOp(u.payload);
      const prev = this.kv.get(op.key) ?? null;
      if (op.kind === 'set') this.kv.set(op.key, op.value);
      else if (op.kind === 'delete') this.kv.delete(op.key);
      this.sessions.set(u.clientId, { seq: u.requestSeq, result: prev });
    }
    this.appliedUpTo = instance;
  }

  /** The result of the client's write `requestSeq`, if it is the client's latest applied one. */
  resultOf(clientId: number, requestSeq: number): { found: boolean; result: number | null } {
    const s = this.sessions.get(clientId);
    if (s === undefined || s.seq !== requestSeq) return { found: false, result: null };
    return { found: true, result: s.result };
  }

  get(key: number): number | null {
    return this.kv.get(key) ?? null;
  }

  /** Canonical text of the whole state, for cross-replica comparison. */
  fingerprint(): string {
    const kv = [...this.kv].sort((a, b) => a[0] - b[0]).map(([k, v]) => `${k}=${v}`).join(',');
    const ss = [...this.sessions].sort((a, b) => a[0] - b[0]).map(([c, s]) => `${c}:${s.seq}:${s.result}`).join(',');
    return `${this.appliedUpTo}|${kv}|${ss}`;
  }

  snapshot(): Uint8Array {
    return new TextEncoder().encode(JSON.stringify({ kv: [...this.kv], sessions: [...this.sessions], appliedUpTo: this.appliedUpTo }));
  }

  static fromSnapshot(data: Uint8Array): KvStore {
    const o = JSON.parse(new TextDecoder().decode(data)) as { kv: [number, number][]; sessions: [number, Session][]; appliedUpTo: number };
    const s = new KvStore();
    s.kv = new Map(o.kv);
    s.sessions = new Map(o.sessions.map(([c, x]) => [c, { ...x }]));
    s.appliedUpTo = o.appliedUpTo;
    return s;
  }

  clone(): KvStore {
    const s = new KvStore();
    s.kv = new Map(this.kv);
    s.sessions = new Map([...this.sessions].map(([c, x]) => [c, { ...x }]));
    s.appliedUpTo = this.appliedUpTo;
    return s;
  }
}
