// Simulated clients: each runs one operation at a time against the cluster and retries.
//
// Owns: client behaviour and the recorded history (invoke/return pairs) the linearizability
// checker reads. A write keeps its requestSeq across retries, so the state machine's sessions
// apply it at most once; after `maxWriteAttempts` the client gives up and the write's outcome is
// unknown (return time +∞). Consistent reads that fail are simply not recorded.
// Clients follow `notMaster` hints and otherwise try nodes at random.

import type { ReplyOutcome } from '../consensus/index.js';
import type { HistoryOp, RegisterOp } from './checkers/linearizability.js';
import type { KvOp } from './kv.js';
import type { Prng } from './prng.js';

export interface ClientRequest {
  readonly clientId: number;
  readonly requestSeq: number;
  readonly attempt: number;
  readonly op: KvOp;
}

export interface ClientReply {
  readonly clientId: number;
  readonly requestSeq: number;
  readonly attempt: number;
  readonly outcome: ReplyOutcome;
  /** For applied writes and reads: the value seen. Undefined when the node could not tell. */
  readonly result: number | null | undefined;
}

export interface ClientEnv {
  send(to: number, req: ClientRequest): void;
  timer(afterUs: number, clientId: number, requestSeq: number, attempt: number, retry: boolean): void;
}

interface Current {
  readonly seq: number;
  readonly op: KvOp;
  readonly record: HistoryOp;
  attempt: number;
}

export interface ClientParams {
  readonly keys: number;
  readonly attemptTimeoutUs: number;
  readonly backoffUs: number;
  readonly maxWriteAttempts: number;
  readonly maxReadAttempts: number;
}

export class SimClient {
  private seq = 0;
  private current: Current | null = null;
  private hint: number | null = null;
  stopped = false;
  completed = 0;
  completedAfterUs: number[] = [];
  gaveUp = 0;
  readonly writeLatenciesUs: number[] = [];

  constructor(
    readonly id: number,
    private readonly nodes: readonly number[],
    private readonly params: ClientParams,
    private readonly prng: Prng,
    private readonly env: ClientEnv,
    readonly history: HistoryOp[],
  ) {}

  get busy(): boolean {
    return this.current !== null;
  }

  /** Start the next operation if idle. */
  startNext(nowUs: number): void {
    if (this.current !== null || this.stopped) return;
    const key = this.prng.int(0, this.params.keys - 1);
    const r = this.prng.float();
    this.seq += 1;
    const op: KvOp = r < 0.45 ? { kind: 'set', key, value: this.id * 1_000_000 + this.seq } : r < 0.55 ? { kind: 'delete', key } : { kind: 'get', key };
    const reg: RegisterOp = op.kind === 'set' ? { kind: 'set', value: op.value } : op.kind === 'delete' ? { kind: 'delete' } : { kind: 'get' };
    const record: HistoryOp = { clientId: this.id, key, op: reg, invokeUs: nowUs, returnUs: Infinity, result: undefined };
    this.current = { seq: this.seq, op, record, attempt: 0 };
    this.attempt(nowUs);
  }

  private attempt(nowUs: number): void {
    const c = this.current!;
    c.attempt += 1;
    const limit = c.op.kind === 'get' ? this.params.maxReadAttempts : this.params.maxWriteAttempts;
    if (c.attempt > limit) {
      this.finish(nowUs, false);
      return;
    }
    const to = this.hint ?? this.prng.pick(this.nodes);
    this.env.send(to, { clientId: this.id, requestSeq: c.seq, attempt: c.attempt, op: c.op });
    this.env.timer(this.params.attemptTimeoutUs, this.id, c.seq, c.attempt, false);
  }

  onTimer(nowUs: number, requestSeq: number, attempt: number, retry: boolean): void {
    const c = this.current;
    if (c === null || c.seq !== requestSeq || c.attempt !== attempt) return;
    // A timeout means the node we tried is unreachable: forget any hint pointing at it.
    if (!retry) this.hint = null;
    this.attempt(nowUs);
  }

  onReply(nowUs: number, reply: ClientReply): void {
    const c = this.current;
    if (c === null || c.seq !== reply.requestSeq || c.attempt !== reply.attempt) return;
    const o = reply.outcome;
    switch (o.kind) {
      case 'applied':
      case 'read':
        if (reply.result === undefined) return this.retrySoon(null);
        c.record.result = reply.result;
        c.record.returnUs = nowUs;
        if (c.op.kind !== 'get') this.writeLatenciesUs.push(nowUs - c.record.invokeUs);
        this.finish(nowUs, true);
        return;
      case 'notMaster':
        return this.retrySoon(o.masterHint);
      case 'noLongerMaster':
      case 'inconsistentRead':
      case 'overloaded':
      case 'readOnly':
        return this.retrySoon(null);
      default: {
        const never: never = o;
        throw new Error(`bad outcome ${JSON.stringify(never)}`);
      }
    }
  }

  private retrySoon(hint: number | null): void {
    const c = this.current!;
    this.hint = hint;
    // Retry after a short backoff (at once with a hint); the next attempt number makes the
    // pending timeout of this attempt stale.
    this.env.timer(hint === null ? this.params.backoffUs : Math.max(1, this.params.backoffUs >> 2), this.id, c.seq, c.attempt, true);
  }

  private finish(nowUs: number, ok: boolean): void {
    const c = this.current!;
    if (ok) {
      this.completed++;
      this.completedAfterUs.push(nowUs);
    } else {
      this.gaveUp++;
      // Unknown outcome: a write may yet take effect; a read is dropped from the history.
    }
    if (ok || c.op.kind !== 'get') this.history.push(c.record);
    this.current = null;
  }
}
