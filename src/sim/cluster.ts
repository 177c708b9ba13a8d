// The deterministic cluster simulation: N replicas running the real consensus core over a
// simulated network, disks and clocks, with clients, faults and checkers.
//
// Owns: the event loop and the shell half of every replica (running effects against the
// simulated world). One thread, no real timers, no awaits: a run is a pure function of its
// options, and `optionsForSeed(seed)` derives those from the seed alone (style.md §3.6).
// Phases: faults for `faultTicks`, then a liveness phase in which faults stop, partitions heal
// and crashed nodes restart; clients stop half-way through it and the cluster must converge.
// Time: global simulated time in microseconds-of-a-tick (1 tick = 1000 µs). Each node's clock
// runs at its own rate in [1, 1 + clockDrift); node ticks are delivered when its clock crosses a
// whole tick.

import {
  holdsLease,
  makeConfig,
  recover,
  step,
  type AcceptedEntry,
  type Config,
  type Effect,
  type Event,
  type MasterMode,
  type Message,
  type PersistSeq,
  type SnapshotOffer,
  type State,
  asClientId,
  asNodeId,
  type Instance,
} from '../consensus/index.js';
import { DurabilityChecker } from './checkers/durability.js';
import { LeaseRespectChecker } from './checkers/lease-respect.js';
import { SafetyChecker, SimViolation } from './checkers/safety.js';
import { isLinearizable, type HistoryOp } from './checkers/linearizability.js';
import { SimClient, type ClientReply, type ClientRequest } from './clients.js';
import { SimDisk } from './disk.js';
import { formatEffect, formatEvent } from './format.js';
import { decodeOp, encodeOp, KvStore } from './kv.js';
import { SimNetwork, type NetworkParams } from './network.js';
import { Prng } from './prng.js';
import { Agenda } from './queue.js';

export const TICK_US = 1000;

export interface SimOptions {
  readonly seed: number;
  readonly voters: number;
  readonly learners: number;
  /** The last `witnesses` voters vote but never campaign. */
  readonly witnesses: number;
  readonly faultTicks: number;
  readonly livenessTicks: number;
  readonly clients: number;
  readonly keys: number;
  readonly leaseTicks: number;
  /** The drift bound the core is told about. */
  readonly driftBound: number;
  /** The real spread of clock rates; must stay below driftBound for the lease argument to hold. */
  readonly clockDrift: number;
  readonly pipelineWindow: number;
  readonly batchMaxUpdates: number;
  /** Election jitter; small values make lease-timing bugs visible instead of masked. */
  readonly electionJitterTicks: number;
  readonly network: NetworkParams;
  readonly fsyncMinUs: number;
  readonly fsyncMaxUs: number;
  /** Mean ticks between fault actions; 0 = no faults. */
  readonly faultEveryTicks: number;
  /** Decided entries a disk keeps below its applied index before collapsing them. */
  readonly retainEntries: number;
  readonly masterMode: 'elected' | 'forced' | 'preferred';
  readonly traceDepth: number;
}

export function optionsForSeed(seed: number, overrides: Partial<SimOptions> = {}): SimOptions {
  const p = new Prng(seed).fork('options');
  const leaseTicks = p.pick([16, 24, 40]);
  // One-way delays stay well under the lease (a cluster whose RTT nears its lease cannot keep one).
  const delayMaxUs = Math.min(p.int(2, 6), Math.floor(leaseTicks / 6)) * TICK_US;
  return {
    seed,
    voters: seed % 2 === 0 ? 5 : 3,
    learners: p.chance(0.25) ? 1 : 0,
    witnesses: p.chance(0.2) ? 1 : 0,
    faultTicks: 1500,
    livenessTicks: 900,
    clients: p.int(2, 4),
    keys: p.int(1, 4),
    leaseTicks,
    driftBound: 0.1,
    clockDrift: p.pick([0, 0.02, 0.09]),
    pipelineWindow: p.pick([1, 2, 4, 8]),
    electionJitterTicks: p.pick([2, 4, Math.floor(leaseTicks / 2)]),
    batchMaxUpdates: p.pick([1, 4, 64]),
    network: {
      delayMinUs: Math.floor(TICK_US / 4),
      delayMaxUs,
      tailChance: p.pick([0, 0.005, 0.02]),
      tailMaxUs: leaseTicks * 2 * TICK_US,
      lossChance: p.pick([0, 0.01, 0.05]),
      duplicateChance: p.pick([0, 0.01, 0.03]),
    },
    fsyncMinUs: 100,
    fsyncMaxUs: p.int(1, 5) * TICK_US,
    faultEveryTicks: p.pick([10, 25, 60]),
    retainEntries: p.pick([4, 50]),
    masterMode: p.pick(['elected', 'elected', 'elected', 'elected', 'elected', 'elected', 'preferred', 'preferred', 'forced'] as const),
    traceDepth: 40,
    ...overrides,
  };
}

export interface SimStats {
  steps: number;
  ticksSimulated: number;
  messagesSent: number;
  messagesDropped: number;
  messagesDuplicated: number;
  messagesPartitioned: number;
  crashes: number;
  partitions: number;
  unsyncedRecordsLost: number;
  tornRecords: number;
  elections: number;
  /** Preferred-master mode: times a non-preferred master started making way for a preferred one. */
  handovers: number;
  fetches: number;
  snapshotsInstalled: number;
  decidedInstances: number;
  clientOpsOk: number;
  clientOpsGaveUp: number;
  /** Master-side: client write received → reply effect, in round trips of the mean node RTT. */
  commitLatencyRttMedian: number;
  commitLatencyRttP90: number;
  /** Client-side write latency (includes the client hops) in ticks, median. */
  clientWriteLatencyTicksMedian: number;
}

export interface SimReport {
  readonly ok: boolean;
  readonly seed: number;
  readonly options: SimOptions;
  readonly failure: { readonly message: string; readonly tick: number; readonly trace: readonly string[] } | null;
  readonly stats: SimStats;
}

type Item =
  | { kind: 'nodeTick'; node: number; incarnation: number; nowTicks: number }
  | { kind: 'deliver'; to: number; from: number; message: Message }
  | { kind: 'fsync'; node: number; incarnation: number; seq: PersistSeq }
  | { kind: 'clientToNode'; node: number; req: ClientRequest }
  | { kind: 'nodeToClient'; client: number; reply: ClientReply }
  | { kind: 'clientTimer'; client: number; seq: number; attempt: number; retry: boolean }
  | { kind: 'clientStart'; client: number }
  | { kind: 'fetchRequest'; to: number; from: number; fromInstance: Instance }
  | { kind: 'fetchReply'; to: number; from: number; snapshot: SnapshotOffer | null; entries: readonly AcceptedEntry[] }
  | { kind: 'fault' }
  | { kind: 'restart'; node: number }
  | { kind: 'heal' }
  | { kind: 'faultsEnd' }
  | { kind: 'clientsStop' };

interface SimNode {
  readonly id: number;
  readonly config: Config;
  readonly rate: number;
  bootUs: number;
  incarnation: number;
  state: State | null;
  readonly disk: SimDisk;
  store: KvStore;
  lastFsyncUs: number;
  /** Latest attempt per client, to route replies and serve reads. */
  readonly clientAttempts: Map<number, ClientRequest>;
  /** When each pending write arrived here, for master-side commit latency. */
  readonly writeArrivalUs: Map<string, number>;
  wasMaster: boolean;
  wasHandingOver: boolean;
}

interface TraceEntry {
  readonly atUs: number;
  readonly node: number;
  readonly event: Event | string;
  readonly effects: readonly Effect[];
}

export class Simulation {
  readonly opts: SimOptions;
  private readonly agenda = new Agenda<Item>();
  private readonly nodes: SimNode[] = [];
  private readonly clients: SimClient[] = [];
  private readonly network: SimNetwork;
  private readonly checker = new SafetyChecker();
  private readonly durability = new DurabilityChecker();
  private readonly leaseRespect: LeaseRespectChecker;
  private readonly history: HistoryOp[] = [];
  private readonly ackedWrites: { clientId: number; seq: number }[] = [];
  private readonly trace: TraceEntry[] = [];
  private readonly prngFaults: Prng;
  private readonly prngDisk: Prng;
  private readonly prngFsync: Prng;
  private readonly prngClientThink: Prng;
  private nowUs = 0;
  private faultsOn = true;
  /** Armed by a fault: crash the next master that decides, within half a tick (leaves decided-but-unannounced instances). */
  private crashOnDecide = false;
  /** Armed by a fault: crash the next node that vouches (promise/accepted) right after it sends. */
  private crashOnVouch = false;
  private crashAfterStep: SimNode | null = null;
  private readonly endUs: number;
  private readonly faultsEndUs: number;
  private readonly commitLatenciesUs: number[] = [];
  private readonly stats = {
    steps: 0,
    crashes: 0,
    partitions: 0,
    elections: 0,
    handovers: 0,
    fetches: 0,
    snapshotsInstalled: 0,
  };

  constructor(opts: SimOptions) {
    this.opts = opts;
    const root = new Prng(opts.seed);
    this.network = new SimNetwork(opts.network, root.fork('network'));
    this.prngFaults = root.fork('faults');
    this.prngDisk = root.fork('disk');
    this.prngFsync = root.fork('fsync');
    this.prngClientThink = root.fork('client-think');
    this.leaseRespect = new LeaseRespectChecker(opts.leaseTicks, opts.driftBound);
    const clockPrng = root.fork('clocks');
    const total = opts.voters + opts.learners;
    const voters = Array.from({ length: opts.voters }, (_, i) => asNodeId(i));
    const learners = Array.from({ length: opts.learners }, (_, i) => asNodeId(opts.voters + i));
    const mode: MasterMode =
      opts.masterMode === 'forced' ? { kind: 'forced', master: asNodeId(0) } : opts.masterMode === 'preferred' ? { kind: 'preferred', nodes: [asNodeId(0)] } : { kind: 'elected' };
    for (let i = 0; i < total; i++) {
      const config = makeConfig({
        self: asNodeId(i),
        voters,
        learners,
        witnesses: voters.slice(voters.length - opts.witnesses),
        masterMode: mode,
        leaseTicks: opts.leaseTicks,
        driftBound: opts.driftBound,
        pipelineWindow: opts.pipelineWindow,
        batchMaxUpdates: opts.batchMaxUpdates,
        electionJitterTicks: opts.electionJitterTicks,
        jitterSeed: opts.seed,
      });
      this.nodes.push({
        id: i,
        config,
        rate: 1 + clockPrng.float() * opts.clockDrift,
        bootUs: 0,
        incarnation: 0,
        state: null,
        disk: new SimDisk(),
        store: new KvStore(),
        lastFsyncUs: 0,
        clientAttempts: new Map(),
        writeArrivalUs: new Map(),
        wasMaster: false,
        wasHandingOver: false,
      });
    }
    const clientParams = {
      keys: opts.keys,
      attemptTimeoutUs: (opts.leaseTicks + 10) * TICK_US,
      backoffUs: 4 * TICK_US,
      maxWriteAttempts: 30,
      maxReadAttempts: 8,
    };
    const nodeIds = this.nodes.map((n) => n.id);
    for (let c = 0; c < opts.clients; c++) {
      const clientId = 100 + c;
      this.clients.push(
        new SimClient(clientId, nodeIds, clientParams, root.fork(`client-${c}`), {
          send: (to, req) => this.sendClientRequest(to, req),
          timer: (afterUs, cid, seq, attempt, retry) => this.agenda.push(this.nowUs + afterUs, { kind: 'clientTimer', client: cid, seq, attempt, retry }),
        }, this.history),
      );
    }
    this.faultsEndUs = opts.faultTicks * TICK_US;
    this.endUs = (opts.faultTicks + opts.livenessTicks) * TICK_US;
  }

  run(): SimReport {
    try {
      for (const n of this.nodes) this.boot(n);
      for (const c of this.clients) this.agenda.push(this.prngClientThink.int(0, 5 * TICK_US), { kind: 'clientStart', client: c.id });
      if (this.opts.faultEveryTicks > 0) this.scheduleFault();
      this.agenda.push(this.faultsEndUs, { kind: 'faultsEnd' });
      this.agenda.push(this.faultsEndUs + Math.floor((this.opts.livenessTicks * TICK_US) / 2), { kind: 'clientsStop' });
      for (;;) {
        const next = this.agenda.pop();
        if (next === undefined || next.at > this.endUs) break;
        this.nowUs = next.at;
        this.handle(next.item);
      }
      this.nowUs = this.endUs;
      this.finalChecks();
      return this.report(null);
    } catch (e) {
      // Violations, core assertions and any other throw alike end the run with a replayable report.
      if (e instanceof Error) return this.report({ message: `${e.name}: ${e.message}`, tick: this.nowUs / TICK_US, trace: this.formatTrace() });
      throw e;
    }
  }

  // ---- nodes -------------------------------------------------------------------------------

  private scheduleTick(n: SimNode, nowTicks: number): void {
    const at = n.bootUs + Math.ceil((nowTicks * TICK_US) / n.rate);
    this.agenda.push(Math.max(at, this.nowUs), { kind: 'nodeTick', node: n.id, incarnation: n.incarnation, nowTicks });
  }

  /**
   * The node's own clock in (fractional) ticks, on one time base per node that keeps running
   * while it is down: the checkers subtract two readings of the same node. The core's clock is
   * this minus the reading at boot, floored to whole ticks.
   */
  private clockTicks(n: SimNode): number {
    return (this.nowUs * n.rate) / TICK_US;
  }

  private boot(n: SimNode): void {
    this.leaseRespect.onBoot(n.id, this.clockTicks(n), n.incarnation > 0);
    n.bootUs = this.nowUs;
    n.incarnation++;
    n.clientAttempts.clear();
    n.writeArrivalUs.clear();
    n.wasMaster = false;
    n.wasHandingOver = false;
    this.checker.onRestart(n.id, n.store.appliedUpTo);
    const res = recover(
      n.config,
      { promised: n.disk.promised, entries: [...n.disk.entries.values()], decidedUpTo: n.disk.decidedUpTo, appliedUpTo: n.store.appliedUpTo as Instance },
      0,
    );
    n.state = res.state;
    this.record(n, 'boot', res.effects);
    this.runEffects(n, res.effects);
    this.scheduleTick(n, 1);
  }

  private crash(n: SimNode): void {
    if (n.state === null) return;
    this.stats.crashes++;
    n.state = null;
    n.incarnation++;
    n.disk.crash(this.prngDisk);
    this.record(n, 'crash', []);
  }

  private deliver(n: SimNode, event: Event): void {
    if (n.state === null) return;
    this.stats.steps++;
    if (event.kind === 'message') this.leaseRespect.onReceive(n.id, event.from, event.message, this.clockTicks(n));
    const res = step(n.state, event);
    this.record(n, event, res.effects);
    this.runEffects(n, res.effects);
    this.afterStep(n);
    if (this.crashAfterStep === n) {
      // Whatever the node vouched for must already be durable: a crash now loses only the rest.
      this.crashAfterStep = null;
      this.crash(n);
      this.agenda.push(this.nowUs + this.prngFaults.int(TICK_US, 2 * this.opts.leaseTicks * TICK_US), { kind: 'restart', node: n.id });
    }
  }

  private afterStep(n: SimNode): void {
    const s = n.state;
    if (s !== null) {
      const isMaster = s.role === 'master';
      if (isMaster && !n.wasMaster) this.stats.elections++;
      n.wasMaster = isMaster;
      const handingOver = s.master !== null && s.master.handoverTo !== null;
      if (handingOver && !n.wasHandingOver) this.stats.handovers++;
      n.wasHandingOver = handingOver;
    }
    const holders: number[] = [];
    for (const m of this.nodes) if (m.state !== null && holdsLease(m.state)) holders.push(m.id);
    this.checker.checkLeases(holders);
  }

  private runEffects(n: SimNode, effects: readonly Effect[]): void {
    for (const e of effects) {
      switch (e.kind) {
        case 'send':
          // Checked as the shell performs it: the disk's durable state is what a crash would leave.
          this.durability.onSend(n.id, e.to, e.message, n.disk, n.store.appliedUpTo);
          this.leaseRespect.onSend(n.id, e.to, e.message, this.clockTicks(n));
          if (this.crashOnVouch && this.faultsOn && (e.message.kind === 'accepted' || e.message.kind === 'promise')) {
            this.crashOnVouch = false;
            this.crashAfterStep = n;
          }
          for (const d of this.network.fate(n.id, e.to)) this.agenda.push(this.nowUs + d, { kind: 'deliver', to: e.to, from: n.id, message: e.message });
          break;
        case 'persist': {
          n.disk.write(e.seq, e.records);
          const done = Math.max(n.lastFsyncUs, this.nowUs + this.prngFsync.int(this.opts.fsyncMinUs, this.opts.fsyncMaxUs));
          n.lastFsyncUs = done;
          this.agenda.push(done, { kind: 'fsync', node: n.id, incarnation: n.incarnation, seq: e.seq });
          break;
        }
        case 'apply':
          n.store.apply(e.instance, e.value);
          this.checker.onApply(n.id, e.instance, e.value, n.store.fingerprint());
          n.disk.collapse(n.store.appliedUpTo - this.opts.retainEntries + 1);
          if (this.crashOnDecide && n.state?.role === 'master' && this.faultsOn) {
            // Crash right after applying, before the rest of the step's effects (its commit
            // announcements) happen: the decision is known to the dead master only.
            this.crashOnDecide = false;
            this.crash(n);
            this.agenda.push(this.nowUs + this.prngFaults.int(TICK_US, 2 * this.opts.leaseTicks * TICK_US), { kind: 'restart', node: n.id });
            return;
          }
          break;
        case 'installSnapshot': {
          n.store = KvStore.fromSnapshot(e.data);
          if (n.store.appliedUpTo !== e.instance) throw new SimViolation(`snapshot claims ${e.instance} but holds ${n.store.appliedUpTo}`);
          n.disk.collapse(e.instance + 1);
          this.stats.snapshotsInstalled++;
          this.checker.onSnapshot(n.id, e.instance, n.store.fingerprint());
          break;
        }
        case 'reply':
          this.replyToClient(n, e);
          break;
        case 'fetch':
          this.stats.fetches++;
          for (const d of this.network.fate(n.id, e.from)) {
            this.agenda.push(this.nowUs + d, { kind: 'fetchRequest', to: e.from, from: n.id, fromInstance: e.fromInstance });
          }
          break;
        case 'armTimer':
          break;
        default: {
          const never: never = e;
          throw new Error(`unhandled effect ${JSON.stringify(never)}`);
        }
      }
    }
  }

  private replyToClient(n: SimNode, e: Extract<Effect, { kind: 'reply' }>): void {
    const req = n.clientAttempts.get(e.clientId);
    if (req === undefined || req.requestSeq !== e.requestSeq) return;
    let result: number | null | undefined;
    if (e.outcome.kind === 'applied') {
      const r = n.store.resultOf(e.clientId, e.requestSeq);
      result = r.found ? r.result : undefined;
      const key = `${e.clientId}:${e.requestSeq}`;
      const arrived = n.writeArrivalUs.get(key);
      if (arrived !== undefined && this.nowUs >= this.faultsEndUs) this.commitLatenciesUs.push(this.nowUs - arrived);
      n.writeArrivalUs.delete(key);
    } else if (e.outcome.kind === 'read') {
      result = n.store.get(req.op.key);
    }
    const reply: ClientReply = { clientId: e.clientId, requestSeq: e.requestSeq, attempt: req.attempt, outcome: e.outcome, result };
    for (const d of this.network.fate(null, null)) this.agenda.push(this.nowUs + d, { kind: 'nodeToClient', client: e.clientId, reply });
  }

  private sendClientRequest(to: number, req: ClientRequest): void {
    for (const d of this.network.fate(null, null)) this.agenda.push(this.nowUs + d, { kind: 'clientToNode', node: to, req });
  }

  private serveFetch(server: SimNode, requester: number, fromInstance: number): void {
    if (server.state === null) return;
    let snapshot: SnapshotOffer | null = null;
    let entries = server.disk.decidedFrom(fromInstance, 64);
    if (entries === null) {
      snapshot = { instance: server.store.appliedUpTo as Instance, data: server.store.snapshot() };
      entries = server.disk.decidedFrom(server.store.appliedUpTo + 1, 64) ?? [];
    }
    for (const d of this.network.fate(server.id, requester)) {
      this.agenda.push(this.nowUs + d, { kind: 'fetchReply', to: requester, from: server.id, snapshot, entries });
    }
  }

  // ---- the loop ----------------------------------------------------------------------------

  private handle(item: Item): void {
    switch (item.kind) {
      case 'nodeTick': {
        const n = this.nodes[item.node];
        if (n.state === null || n.incarnation !== item.incarnation) return;
        this.deliver(n, { kind: 'tick', nowTicks: item.nowTicks });
        this.scheduleTick(n, item.nowTicks + 1);
        return;
      }
      case 'deliver':
        return this.deliver(this.nodes[item.to], { kind: 'message', from: asNodeId(item.from), message: item.message });
      case 'fsync': {
        const n = this.nodes[item.node];
        if (n.state === null || n.incarnation !== item.incarnation) return;
        n.disk.sync(item.seq);
        return this.deliver(n, { kind: 'persisted', seq: item.seq });
      }
      case 'clientToNode': {
        const n = this.nodes[item.node];
        if (n.state === null) return;
        const req = item.req;
        n.clientAttempts.set(req.clientId, req);
        if (req.op.kind === 'get') {
          return this.deliver(n, { kind: 'clientRead', clientId: asClientId(req.clientId), requestSeq: req.requestSeq, consistency: { kind: 'consistent' }, payload: encodeOp(req.op) });
        }
        const key = `${req.clientId}:${req.requestSeq}`;
        if (!n.writeArrivalUs.has(key)) n.writeArrivalUs.set(key, this.nowUs);
        return this.deliver(n, { kind: 'clientWrite', clientId: asClientId(req.clientId), requestSeq: req.requestSeq, payload: encodeOp(req.op) });
      }
      case 'nodeToClient': {
        const c = this.client(item.client);
        const wasBusy = c.busy;
        c.onReply(this.nowUs, item.reply);
        if (item.reply.outcome.kind === 'applied' && item.reply.result !== undefined) this.ackedWrites.push({ clientId: item.client, seq: item.reply.requestSeq });
        if (wasBusy && !c.busy) this.scheduleClientStart(c);
        return;
      }
      case 'clientTimer': {
        const c = this.client(item.client);
        const wasBusy = c.busy;
        c.onTimer(this.nowUs, item.seq, item.attempt, item.retry);
        if (wasBusy && !c.busy) this.scheduleClientStart(c);
        return;
      }
      case 'clientStart':
        return this.client(item.client).startNext(this.nowUs);
      case 'fetchRequest':
        return this.serveFetch(this.nodes[item.to], item.from, item.fromInstance);
      case 'fetchReply':
        return this.deliver(this.nodes[item.to], { kind: 'caughtUp', from: asNodeId(item.from), snapshot: item.snapshot, entries: item.entries });
      case 'fault':
        if (!this.faultsOn) return;
        this.injectFault();
        return this.scheduleFault();
      case 'restart': {
        const n = this.nodes[item.node];
        if (n.state === null) this.boot(n);
        return;
      }
      case 'heal':
        this.network.heal();
        return;
      case 'faultsEnd':
        this.faultsOn = false;
        this.network.heal();
        this.network.faultsActive = false;
        for (const n of this.nodes) if (n.state === null) this.boot(n);
        return;
      case 'clientsStop':
        for (const c of this.clients) c.stopped = true;
        return;
      default: {
        const never: never = item;
        throw new Error(`bad item ${JSON.stringify(never)}`);
      }
    }
  }

  private client(id: number): SimClient {
    return this.clients[id - 100];
  }

  private scheduleClientStart(c: SimClient): void {
    this.agenda.push(this.nowUs + this.prngClientThink.int(0, 3 * TICK_US), { kind: 'clientStart', client: c.id });
  }

  // ---- faults ------------------------------------------------------------------------------

  private scheduleFault(): void {
    const p = this.prngFaults;
    const gap = Math.floor(-Math.log(1 - p.float()) * this.opts.faultEveryTicks * TICK_US) + TICK_US;
    this.agenda.push(this.nowUs + gap, { kind: 'fault' });
  }

  private currentMaster(): SimNode | null {
    for (const n of this.nodes) if (n.state !== null && n.state.role === 'master') return n;
    return null;
  }

  private injectFault(): void {
    const p = this.prngFaults;
    const lease = this.opts.leaseTicks * TICK_US;
    const r = p.float();
    const alive = this.nodes.filter((n) => n.state !== null);
    if (r < 0.1) {
      this.crashOnDecide = true;
    } else if (r < 0.2) {
      this.crashOnVouch = true;
    } else if (r < 0.3) {
      // Crash a random node; keep at least one alive so the run is not only downtime.
      if (alive.length <= 1) return;
      const victim = p.pick(alive);
      this.crash(victim);
      this.agenda.push(this.nowUs + p.int(TICK_US, 3 * lease), { kind: 'restart', node: victim.id });
    } else if (r < 0.45) {
      const m = this.currentMaster();
      if (m === null || alive.length <= 1) return;
      this.crash(m);
      this.agenda.push(this.nowUs + p.int(TICK_US, 2 * lease), { kind: 'restart', node: m.id });
    } else if (r < 0.75) {
      // A random two-sided partition.
      const sides = new Map<number, number>();
      for (const n of this.nodes) sides.set(n.id, p.int(0, 1));
      this.stats.partitions++;
      this.network.partition(sides);
      this.agenda.push(this.nowUs + p.int(5 * TICK_US, 4 * lease), { kind: 'heal' });
    } else if (r < 0.9) {
      // Isolate the master from everyone.
      const m = this.currentMaster();
      if (m === null) return;
      this.stats.partitions++;
      this.network.partition(new Map([[m.id, 1]]));
      this.agenda.push(this.nowUs + p.int(lease, 4 * lease), { kind: 'heal' });
    } else {
      this.network.heal();
    }
  }

  // ---- checks and report -------------------------------------------------------------------

  private finalChecks(): void {
    // Liveness: after faults stopped the cluster converged and every client made progress.
    const alive = this.nodes.filter((n) => n.state !== null);
    if (alive.length !== this.nodes.length) throw new SimViolation('a node is still down at the end');
    const maxDecided = this.checker.maxDecided;
    for (const n of this.nodes) {
      if (n.store.appliedUpTo !== maxDecided) throw new SimViolation(`liveness: node ${n.id} applied ${n.store.appliedUpTo} of ${maxDecided} at the end`);
    }
    const fp = this.nodes[0].store.fingerprint();
    for (const n of this.nodes) if (n.store.fingerprint() !== fp) throw new SimViolation(`replicas differ at the end: node ${n.id}`);
    for (const c of this.clients) {
      if (c.busy) throw new SimViolation(`liveness: client ${c.id} still has an operation in flight at the end`);
      if (!c.completedAfterUs.some((t) => t >= this.faultsEndUs)) throw new SimViolation(`liveness: client ${c.id} completed nothing after faults stopped`);
    }
    // No acknowledged write lost: each is in the decided history every replica now shares.
    const decidedWrites = new Set<string>();
    for (const [i, d] of this.checker.decided) {
      if (i > maxDecided) continue;
      for (const u of d.value.updates) decidedWrites.add(`${u.clientId}:${u.requestSeq}`);
    }
    for (const w of this.ackedWrites) {
      if (!decidedWrites.has(`${w.clientId}:${w.seq}`)) throw new SimViolation(`acknowledged write c${w.clientId}#${w.seq} is not in the decided history`);
    }
    // Linearizability per key.
    const byKey = new Map<number, HistoryOp[]>();
    for (const h of this.history) {
      const list = byKey.get(h.key) ?? [];
      list.push(h);
      byKey.set(h.key, list);
    }
    for (const [key, ops] of byKey) {
      const verdict = isLinearizable(ops);
      if (verdict === false) throw new SimViolation(`history of key ${key} is not linearizable (${ops.length} ops)`);
    }
  }

  private record(n: SimNode, event: Event | string, effects: readonly Effect[]): void {
    if (this.opts.traceDepth <= 0) return;
    this.trace.push({ atUs: this.nowUs, node: n.id, event, effects });
    if (this.trace.length > this.opts.traceDepth * 2) this.trace.splice(0, this.trace.length - this.opts.traceDepth);
  }

  private formatTrace(): string[] {
    const payload = (p: Uint8Array): string => {
      const op = decodeOp(p);
      return op.kind === 'set' ? `set k${op.key}=${op.value}` : `${op.kind} k${op.key}`;
    };
    return this.trace.slice(-this.opts.traceDepth).map((t) => {
      const ev = typeof t.event === 'string' ? t.event : formatEvent(t.event, payload);
      const effs = t.effects.filter((e) => e.kind !== 'armTimer').map((e) => `    ${formatEffect(e, payload)}`);
      return [`t=${(t.atUs / TICK_US).toFixed(3)} n${t.node} ${ev}`, ...effs].join('\n');
    });
  }

  private report(failure: SimReport['failure']): SimReport {
    const lat = this.commitLatenciesUs.slice().sort((a, b) => a - b);
    const rttUs = 2 * this.network.meanDelayUs();
    const q = (xs: number[], f: number): number => (xs.length === 0 ? NaN : xs[Math.min(xs.length - 1, Math.floor(xs.length * f))]);
    const clientLat = this.clients.flatMap((c) => c.writeLatenciesUs).sort((a, b) => a - b);
    return {
      ok: failure === null,
      seed: this.opts.seed,
      options: this.opts,
      failure,
      stats: {
        steps: this.stats.steps,
        ticksSimulated: Math.round(this.nowUs / TICK_US),
        messagesSent: this.network.sent,
        messagesDropped: this.network.dropped,
        messagesDuplicated: this.network.duplicated,
        messagesPartitioned: this.network.partitioned,
        crashes: this.stats.crashes,
        partitions: this.stats.partitions,
        unsyncedRecordsLost: this.nodes.reduce((s, n) => s + n.disk.lostRecords, 0),
        tornRecords: this.nodes.reduce((s, n) => s + n.disk.tornRecords, 0),
        elections: this.stats.elections,
        handovers: this.stats.handovers,
        fetches: this.stats.fetches,
        snapshotsInstalled: this.stats.snapshotsInstalled,
        decidedInstances: this.checker.maxDecided,
        clientOpsOk: this.clients.reduce((s, c) => s + c.completed, 0),
        clientOpsGaveUp: this.clients.reduce((s, c) => s + c.gaveUp, 0),
        commitLatencyRttMedian: q(lat, 0.5) / rttUs,
        commitLatencyRttP90: q(lat, 0.9) / rttUs,
        clientWriteLatencyTicksMedian: q(clientLat, 0.5) / TICK_US,
      },
    };
  }
}

export function runSimulation(opts: SimOptions): SimReport {
  return new Simulation(opts).run();
}
