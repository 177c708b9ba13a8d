// Durable-before-dependent-reply checker, run on every send the shell performs.
//
// Owns: the rule that a node vouches only for what its disk already holds durably (fsynced), as
// observed from outside the core: the `send` effects the shell executes and the simulated disk's
// durable (folded) state at that moment. It never reads the core's State, so it catches the bug
// however the core gets it wrong (a missing persist, a send released before `persisted`, a
// persist of the wrong record).
//  - Promise(b): the durable promised ballot is ≥ b. Otherwise a crash right after the send
//    reboots the node with a lower ballot, and it can promise a second, conflicting candidate
//    (spec part C, pitfall 4: "persist the promised and accepted ballot before replying").
//  - Accepted(b, i): the durable promised ballot is ≥ b, and the disk durably holds instance i
//    accepted in ballot b with the value that ballot proposed for i, or i is durably decided
//    (decided index, collapsed into the state machine, or applied): acking a decided instance
//    vouches for the decided value, which the safety checker pins down. Otherwise a crash loses
//    the tail a quorum was counted on, and a new majority may overwrite a chosen value (pitfall
//    2: "fsync before sending Accepted"; pitfall 4).
// Also checked on the way, because the accepted check needs it: a ballot proposes at most one
// value per instance (every Accept(b, i, ·) ever sent carries the same value).
// A violation throws SimViolation, which the runner reports with seed, tick and trace.

import { formatBallot, type AcceptedEntry, type Ballot, type Message, type NodeId } from '../../consensus/index.js';
import { SimViolation, valueKey } from './safety.js';

/** What a node's disk durably holds; SimDisk's folded state satisfies it. */
export interface DurableView {
  readonly promised: Ballot;
  readonly entries: ReadonlyMap<number, AcceptedEntry>;
  readonly decidedUpTo: number;
  /** Lowest instance still held; lower ones were collapsed into the durable state machine. */
  readonly firstKept: number;
}

export class DurabilityChecker {
  /** `ballot:instance` → key of the value that ballot proposed there. */
  private readonly proposed = new Map<string, string>();
  promisesChecked = 0;
  acceptedsChecked = 0;

  /**
   * `node` performs a send of `message`. `durable` is its disk's durable state right now and
   * `appliedUpTo` its durable state machine's applied index.
   */
  onSend(node: number, to: NodeId, message: Message, durable: DurableView, appliedUpTo: number): void {
    switch (message.kind) {
      case 'accept': {
        const k = `${message.ballot}:${message.instance}`;
        const v = valueKey(message.value);
        const seen = this.proposed.get(k);
        if (seen === undefined) this.proposed.set(k, v);
        else if (seen !== v) throw new SimViolation(`ballot ${formatBallot(message.ballot)} proposed two values for instance ${message.instance}`);
        return;
      }
      case 'promise':
        this.promisesChecked++;
        if (durable.promised < message.ballot) {
          throw new SimViolation(
            `durable before reply (pitfall 4): node ${node} sent promise ${formatBallot(message.ballot)} to ${to} ` +
              `but its disk durably holds promised ${formatBallot(durable.promised)}`,
          );
        }
        return;
      case 'accepted': {
        this.acceptedsChecked++;
        const { ballot, instance } = message;
        const what = `node ${node} sent accepted ${formatBallot(ballot)} i=${instance} to ${to}`;
        if (durable.promised < ballot) {
          throw new SimViolation(`durable before reply (pitfall 4): ${what} but its disk durably holds promised ${formatBallot(durable.promised)}`);
        }
        if (instance <= durable.decidedUpTo || instance < durable.firstKept || instance <= appliedUpTo) return;
        const e = durable.entries.get(instance);
        if (e === undefined || e.ballot !== ballot) {
          const held = e === undefined ? 'nothing' : `ballot ${formatBallot(e.ballot)}`;
          throw new SimViolation(`durable before reply (pitfall 2): ${what} but its disk durably holds ${held} there`);
        }
        const want = this.proposed.get(`${ballot}:${instance}`);
        if (want !== undefined && valueKey(e.value) !== want) {
          throw new SimViolation(`durable before reply (pitfall 2): ${what} but its disk holds another value than that ballot proposed`);
        }
        return;
      }
      case 'prepare':
      case 'nak':
      case 'renew':
      case 'renewed':
      case 'commit':
        return;
      default: {
        const never: never = message;
        throw new Error(`unhandled message ${JSON.stringify(never)}`);
      }
    }
  }
}
