// The consensus core's vocabulary: branded numbers, values, messages, events, effects, config.
//
// Owns: every type that crosses the boundary of `step`. Nothing here has behaviour.
// Invariants: all unions are tagged by `kind` and handled by exhaustive switches elsewhere;
// payload bytes (`Uint8Array`) are opaque to the core and never mutated by it.
//
// Vocabulary mapping to Arakoon (spec/baardskeerder-and-arakoon.md §B.2, §B.3):
//   Arakoon `n` (ballot, in-memory int)      → `Ballot` = (round, node), persisted before use
//   Arakoon `i` (instance, tlog entry)       → `Instance`
//   store_i / consensus_i                    → `appliedUpTo` / `decidedUpTo`
//   Prepare(n, i)                            → `prepare { ballot, firstUndecided }`
//   Promise(n, i, v option)                  → `promise { ballot, decidedUpTo, accepted[] }` (carries
//                                              the accepted BALLOT of every instance, §C.6)
//   Accept(n, i, v) / Accepted(n, i)         → `accept` / `accepted`
//   Nak(n, (n', i'))                         → `nak { ballot, promised, decidedUpTo }`
//   Vm(master, lease_start) MasterSet value  → `renew` / `renewed` messages, outside the log (as
//                                              Arakoon 2.0's M_MASTERSET/lease extensions)
//   the Nop after a MasterSet                → `commit { decidedUpTo }` (no log instance)
//   LAST_ENTRIES3 catch-up stream            → `fetch` effect + `caughtUp` event
//   Vc(updates, synced)                      → `Value { updates }` (a batch; empty = gap filler)
//   preferred node's DROP_MASTER request     → the master itself sets `handoverTo`, from the
//                                              progress followers report in `renewed`

export type NodeId = number & { readonly __brand: 'NodeId' };
export type Ballot = number & { readonly __brand: 'Ballot' };
export type Instance = number & { readonly __brand: 'Instance' };
export type ClientId = number & { readonly __brand: 'ClientId' };
export type PersistSeq = number & { readonly __brand: 'PersistSeq' };

export const asNodeId = (n: number): NodeId => n as NodeId;
export const asInstance = (n: number): Instance => n as Instance;
export const asClientId = (n: number): ClientId => n as ClientId;

/** Instance numbering starts at 1; 0 means "nothing decided yet". */
export const NO_INSTANCE = 0 as Instance;

/** One client update, opaque to the core. (clientId, requestSeq) identifies it across retries. */
export interface Update {
  readonly clientId: ClientId;
  readonly requestSeq: number;
  readonly payload: Uint8Array;
}

/** A Paxos value: a batch of client updates that is applied atomically. Empty = no-op filler. */
export interface Value {
  readonly updates: readonly Update[];
}

export interface AcceptedEntry {
  readonly instance: Instance;
  readonly ballot: Ballot;
  readonly value: Value;
}

export type Message =
  | { readonly kind: 'prepare'; readonly ballot: Ballot; readonly firstUndecided: Instance }
  | {
      readonly kind: 'promise';
      readonly ballot: Ballot;
      readonly decidedUpTo: Instance;
      /** Every accepted entry at or after the candidate's firstUndecided, with its ballot. */
      readonly accepted: readonly AcceptedEntry[];
    }
  | { readonly kind: 'nak'; readonly ballot: Ballot; readonly promised: Ballot; readonly decidedUpTo: Instance }
  | {
      readonly kind: 'accept';
      readonly ballot: Ballot;
      readonly instance: Instance;
      readonly value: Value;
      readonly decidedUpTo: Instance;
    }
  | { readonly kind: 'accepted'; readonly ballot: Ballot; readonly instance: Instance }
  | { readonly kind: 'renew'; readonly ballot: Ballot; readonly renewalSeq: number; readonly decidedUpTo: Instance }
  /** `decidedUpTo`: the follower's decided index once it has taken the renewal in (preferred-master handover). */
  | { readonly kind: 'renewed'; readonly ballot: Ballot; readonly renewalSeq: number; readonly decidedUpTo: Instance }
  | { readonly kind: 'commit'; readonly ballot: Ballot; readonly decidedUpTo: Instance };

export type Consistency =
  | { readonly kind: 'consistent' }
  | { readonly kind: 'noGuarantees' }
  | { readonly kind: 'atLeast'; readonly instance: Instance };

/** A snapshot of the applied state machine at `instance`, opaque bytes produced by the shell. */
export interface SnapshotOffer {
  readonly instance: Instance;
  readonly data: Uint8Array;
}

export type Event =
  /** The node's monotonic clock now reads `nowTicks`. Ticks may skip values; never go back. */
  | { readonly kind: 'tick'; readonly nowTicks: number }
  | { readonly kind: 'message'; readonly from: NodeId; readonly message: Message }
  | { readonly kind: 'clientWrite'; readonly clientId: ClientId; readonly requestSeq: number; readonly payload: Uint8Array }
  | {
      readonly kind: 'clientRead';
      readonly clientId: ClientId;
      readonly requestSeq: number;
      readonly consistency: Consistency;
      readonly payload: Uint8Array;
    }
  /** Every persist effect with seq ≤ `seq` is durable (fsynced). */
  | { readonly kind: 'persisted'; readonly seq: PersistSeq }
  /** Answer to a `fetch`: decided entries (ascending, from the asked instance on), maybe after a snapshot. */
  | {
      readonly kind: 'caughtUp';
      readonly from: NodeId;
      readonly snapshot: SnapshotOffer | null;
      readonly entries: readonly AcceptedEntry[];
    };

export type PersistRecord =
  | { readonly kind: 'promised'; readonly ballot: Ballot }
  | { readonly kind: 'accepted'; readonly entry: AcceptedEntry }
  | { readonly kind: 'decided'; readonly upTo: Instance };

export type ReplyOutcome =
  /** The write was decided at `instance` and applied; the shell answers with its apply result. */
  | { readonly kind: 'applied'; readonly instance: Instance }
  /** Serve the read from the local state machine now (it reflects `appliedUpTo`). */
  | { readonly kind: 'read'; readonly appliedUpTo: Instance }
  /** Definite: nothing was proposed. Try `masterHint`. */
  | { readonly kind: 'notMaster'; readonly masterHint: NodeId | null }
  /** Ambiguous (Arakoon E_NO_LONGER_MASTER): the write may still be decided by a later master. */
  | { readonly kind: 'noLongerMaster' }
  | { readonly kind: 'inconsistentRead'; readonly appliedUpTo: Instance }
  | { readonly kind: 'readOnly' }
  | { readonly kind: 'overloaded' };

export type TimerKind = 'election' | 'renewal';

export type Effect =
  /**
   * Send a message. Sends are emitted only once what they vouch for is durable: the core itself
   * holds promises/accepteds until the matching `persisted` event, so the shell may send at once.
   */
  | { readonly kind: 'send'; readonly to: NodeId; readonly message: Message }
  /** Append these records and fsync; then feed back `persisted { seq }`. Order matters. */
  | { readonly kind: 'persist'; readonly seq: PersistSeq; readonly records: readonly PersistRecord[] }
  /** Apply a decided value. Emitted exactly once per instance per incarnation, in instance order. */
  | { readonly kind: 'apply'; readonly instance: Instance; readonly value: Value }
  | { readonly kind: 'reply'; readonly clientId: ClientId; readonly requestSeq: number; readonly outcome: ReplyOutcome }
  /** Ask `from` for decided entries starting at `fromInstance` (or a snapshot if it has collapsed them). */
  | { readonly kind: 'fetch'; readonly from: NodeId; readonly fromInstance: Instance }
  /** Replace the state machine by this snapshot; the applied index becomes `instance`. */
  | { readonly kind: 'installSnapshot'; readonly instance: Instance; readonly data: Uint8Array }
  /**
   * Advisory: the core's next candidacy or renewal falls due at `deadlineTick`. The shell must
   * still deliver ticks regularly (at least every renewIntervalTicks; the simulator ticks every
   * unit): follower deadlines move with every renewal and are not re-announced. The core compares
   * deadlines with ≥, so ticks may skip values.
   */
  | { readonly kind: 'armTimer'; readonly timer: TimerKind; readonly deadlineTick: number };

/** Arakoon's master modes (spec §B.13). */
export type MasterMode =
  | { readonly kind: 'elected' }
  | { readonly kind: 'forced'; readonly master: NodeId }
  | { readonly kind: 'preferred'; readonly nodes: readonly NodeId[] }
  | { readonly kind: 'readOnly' };

export interface Config {
  readonly self: NodeId;
  /** Voting members (Arakoon `cluster`), witnesses included. */
  readonly voters: readonly NodeId[];
  /** Non-voting learners: receive accepts and commits, catch up, serve dirty reads. */
  readonly learners: readonly NodeId[];
  /** Voters that vote and log but never campaign (Arakoon `witness = true`). */
  readonly witnesses: readonly NodeId[];
  readonly masterMode: MasterMode;
  /** Quorum override (Arakoon `[global] quorum`); null = majority of voters. */
  readonly quorumOverride: number | null;
  readonly leaseTicks: number;
  /** Clock rate bound: any two clocks' rates differ by a factor below 1 + driftBound. */
  readonly driftBound: number;
  readonly renewIntervalTicks: number;
  readonly electionJitterTicks: number;
  readonly candidacyTimeoutTicks: number;
  readonly resendTicks: number;
  readonly fetchTimeoutTicks: number;
  /** Instances proposed but not yet decided, at most. 1 = Arakoon 1.x (no pipelining). */
  readonly pipelineWindow: number;
  readonly batchMaxUpdates: number;
  readonly queueMaxUpdates: number;
  /** Seed of the core's own jitter generator (the core draws no outside randomness). */
  readonly jitterSeed: number;
}

export type Role = 'follower' | 'candidate' | 'master' | 'learner';

export interface CandidateState {
  readonly ballot: Ballot;
  readonly firstUndecided: Instance;
  readonly startedTick: number;
  readonly deadlineTick: number;
  /** Promises received, own included once it is durable. */
  readonly promises: Map<NodeId, readonly AcceptedEntry[]>;
}

export interface InFlight {
  readonly value: Value;
  readonly acks: Set<NodeId>;
  chosen: boolean;
  lastSentTick: number;
}

export interface Renewal {
  readonly sentTick: number;
  readonly acks: Set<NodeId>;
}

/** What a master last heard from a follower through its renewal acks. */
export interface FollowerProgress {
  /** Master-clock tick at which the renewal this follower last acknowledged was sent. */
  readonly renewalSentTick: number;
  readonly decidedUpTo: Instance;
}

export interface MasterState {
  readonly ballot: Ballot;
  nextInstance: Instance;
  /** Proposed, not yet applied. Keys are instances. */
  readonly inFlight: Map<number, InFlight>;
  /** Client updates waiting for room in the pipeline window. */
  queue: Update[];
  /** Client requests received here and not yet answered: clientId → requestSeq. */
  readonly pendingClients: Map<ClientId, number>;
  /** Consistent reads are served only while nowTicks < leaseUntilTick. */
  leaseUntilTick: number;
  /** When this node became master; it steps down if no renewal is acknowledged for a lease. */
  readonly electedTick: number;
  renewalSeq: number;
  readonly renewals: Map<number, Renewal>;
  nextRenewTick: number;
  /** Highest instance re-proposed at election: reads wait until it is applied (Raft's no-op rule). */
  readonly barrier: Instance;
  /** Per voter, its latest renewal ack (preferred-master handover looks for a healthy, caught-up preferred node). */
  readonly followers: Map<NodeId, FollowerProgress>;
  /** Preferred-master mode: the preferred node this master is making way for, or null. */
  handoverTo: NodeId | null;
}

export interface HeldSend {
  readonly afterSeq: PersistSeq;
  readonly to: NodeId;
  readonly message: Message;
}

export interface FetchState {
  readonly from: NodeId;
  readonly fromInstance: Instance;
  readonly sentTick: number;
}

export interface State {
  readonly config: Config;
  nowTicks: number;
  role: Role;
  /** Highest ballot promised or accepted; durable before any message vouches for it. */
  promised: Ballot;
  /** Highest round seen anywhere, so the next candidacy outbids it. */
  maxRoundSeen: number;
  /** Accepted entries above appliedUpTo, keyed by instance. */
  readonly log: Map<number, AcceptedEntry>;
  decidedUpTo: Instance;
  appliedUpTo: Instance;
  /** Ballot of the master (or candidate) this node last promised or followed; null after boot. */
  knownMaster: Ballot | null;
  /** Local tick of the last renewal/promise/accept from knownMaster (boot tick after a restart). */
  lastRenewalTick: number;
  electionDeadlineTick: number;
  candidate: CandidateState | null;
  master: MasterState | null;
  fetch: FetchState | null;
  persistSeq: PersistSeq;
  durableSeq: PersistSeq;
  held: HeldSend[];
  rng: number;
}

export interface StepResult {
  readonly state: State;
  readonly effects: readonly Effect[];
}

/** What a restarted node recovered from its disk; see `recover` in step.ts. */
export interface Recovered {
  readonly promised: Ballot;
  readonly entries: readonly AcceptedEntry[];
  readonly decidedUpTo: Instance;
  /** The state machine's applied index (stored atomically with its data, design §3). */
  readonly appliedUpTo: Instance;
}
