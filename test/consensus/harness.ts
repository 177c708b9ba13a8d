// A hand-driven cluster for data-driven consensus scenarios (etcd raft's interaction tests).
//
// Owns: the scenario language and its readable trace. Nothing moves unless a command says so:
// messages wait in one FIFO until `deliver`, fsyncs wait until `persist`, clocks move on `tick`.
// Commands (one per line, `#` starts a comment, lines are echoed into the trace as `> …`):
//   cluster voters=3 [seed=S] [learners=N] [lease=T] [window=W] [batch=B] [quorum=Q] [mode=forced:N|preferred:N,M|readonly] [witnesses=N,M]
//   tick <node|all> [xN]            advance clocks one tick (N times); prints effects
//   campaign <node>                  tick all live nodes until that one starts an election
//   write <node> <client> <text>     client write (payload = text)
//   read <node> <client> [consistent|dirty|atleast:I]
//   deliver [A->B|*->B|A->*] [drop]  deliver (or drop) the queued messages that match, once
//   persist <node|all>               complete every outstanding fsync
//   stabilize                        persist and deliver until nothing moves
//   crash <node> [keep]              lose state and unsynced records (keep: unsynced survive)
//   restart <node>                   recover from the simulated disk, clock back at 0
//   partition A,B | C                drop messages between sides at delivery
//   heal
//   status                           one line per node
// Payloads are shown as text; values as [c<client>#<seq>:<text> …] or noop.

import {
  asClientId,
  asInstance,
  asNodeId,
  formatBallot,
  holdsLease,
  makeConfig,
  recover,
  step,
  type Config,
  type Consistency,
  type Effect,
  type Event,
  type MasterMode,
  type Message,
  type State,
  type Value,
  type Instance,
  type PersistSeq,
} from '../../src/consensus/index.js';
import { SimDisk } from '../../src/sim/disk.js';
import { formatEffect, formatEvent, formatValue } from '../../src/sim/format.js';
import { Prng } from '../../src/sim/prng.js';

const text = (p: Uint8Array): string => new TextDecoder().decode(p);

interface HNode {
  readonly id: number;
  readonly config: Config;
  state: State | null;
  nowTicks: number;
  readonly disk: SimDisk;
  /** Persist seqs written but not yet fsynced. */
  unsynced: PersistSeq[];
  applied: { instance: number; value: Value }[];
  seqByClient: Map<number, number>;
}

export class ScenarioCluster {
  private nodes: HNode[] = [];
  private queue: { from: number; to: number; message: Message }[] = [];
  private sides = new Map<number, number>();
  private readonly out: string[] = [];
  private deferred: (() => void)[] = [];

  run(script: string): string {
    for (const raw of script.split('\n')) {
      const line = raw.trim();
      if (line === '' ) continue;
      if (line.startsWith('#')) {
        this.out.push(line);
        continue;
      }
      this.out.push(`> ${line}`);
      this.command(line.split(/\s+/));
    }
    return this.out.join('\n') + '\n';
  }

  /** Values applied by each node, for assertions in unit tests. */
  appliedTexts(node: number): string[] {
    return this.nodes[node].applied.map((a) => `${a.instance}:${formatValue(a.value, text)}`);
  }

  stateOf(node: number): State | null {
    return this.nodes[node].state;
  }

  private command(w: string[]): void {
    const [cmd, ...args] = w;
    switch (cmd) {
      case 'cluster':
        return this.makeCluster(args);
      case 'tick': {
        const times = args[1]?.startsWith('x') ? Number(args[1].slice(1)) : 1;
        for (let k = 0; k < times; k++) for (const n of this.select(args[0])) this.tick(n);
        return;
      }
      case 'campaign': {
        // Tick every live node in lockstep until this one starts an election. Another node
        // campaigning first is a script error (pick another `seed=`).
        const n = this.nodes[Number(args[0])];
        for (let k = 0; n.state !== null && n.state.role !== 'candidate'; k++) {
          if (k > 1000) throw new Error('campaign: the node never campaigned');
          for (const m of this.select('all')) this.tick(m);
          const other = this.nodes.find((m) => m !== n && m.state?.role === 'candidate');
          if (other !== undefined) throw new Error(`campaign: n${other.id} campaigned before n${n.id}`);
        }
        return;
      }
      case 'write': {
        const n = this.nodes[Number(args[0])];
        const client = Number(args[1]);
        const seq = (n.seqByClient.get(client) ?? 0) + 1;
        for (const m of this.nodes) m.seqByClient.set(client, seq);
        return this.deliverEvent(n, { kind: 'clientWrite', clientId: asClientId(client), requestSeq: seq, payload: new TextEncoder().encode(args.slice(2).join(' ')) });
      }
      case 'read': {
        const n = this.nodes[Number(args[0])];
        const mode = args[2] ?? 'consistent';
        const consistency: Consistency =
          mode === 'dirty' ? { kind: 'noGuarantees' } : mode.startsWith('atleast:') ? { kind: 'atLeast', instance: asInstance(Number(mode.slice(8))) } : { kind: 'consistent' };
        return this.deliverEvent(n, { kind: 'clientRead', clientId: asClientId(Number(args[1])), requestSeq: 0, consistency, payload: new Uint8Array() });
      }
      case 'deliver':
        return this.deliver(args[0] ?? '*->*', args[1] === 'drop');
      case 'persist':
        for (const n of this.select(args[0])) this.persist(n);
        return;
      case 'stabilize':
        return this.stabilize();
      case 'crash':
        return this.crash(this.nodes[Number(args[0])], args[1] === 'keep');
      case 'restart':
        return this.restart(this.nodes[Number(args[0])]);
      case 'partition': {
        this.sides = new Map();
        let side = 0;
        for (const a of args) {
          if (a === '|') side++;
          else for (const id of a.split(',')) this.sides.set(Number(id), side);
        }
        return;
      }
      case 'heal':
        this.sides = new Map();
        return;
      case 'status':
        for (const n of this.nodes) this.out.push(this.status(n));
        return;
      default:
        throw new Error(`unknown scenario command: ${cmd}`);
    }
  }

  private makeCluster(args: string[]): void {
    const kv = new Map(args.map((a) => a.split('=') as [string, string]));
    const voters = Array.from({ length: Number(kv.get('voters') ?? 3) }, (_, i) => asNodeId(i));
    const learners = Array.from({ length: Number(kv.get('learners') ?? 0) }, (_, i) => asNodeId(voters.length + i));
    const modeText = kv.get('mode') ?? 'elected';
    const ids = (s: string) => s.split(',').filter((x) => x !== '').map((x) => asNodeId(Number(x)));
    const mode: MasterMode = modeText.startsWith('forced:')
      ? { kind: 'forced', master: asNodeId(Number(modeText.slice(7))) }
      : modeText.startsWith('preferred:')
        ? { kind: 'preferred', nodes: ids(modeText.slice(10)) }
        : modeText === 'readonly'
          ? { kind: 'readOnly' }
          : { kind: 'elected' };
    const lease = Number(kv.get('lease') ?? 10);
    this.nodes = [...voters, ...learners].map((self) => ({
      id: self,
      config: makeConfig({
        self,
        voters,
        learners,
        witnesses: ids(kv.get('witnesses') ?? ''),
        masterMode: mode,
        leaseTicks: lease,
        renewIntervalTicks: Math.max(1, Math.floor(lease / 4)),
        electionJitterTicks: lease,
        candidacyTimeoutTicks: lease,
        resendTicks: lease,
        pipelineWindow: Number(kv.get('window') ?? 4),
        batchMaxUpdates: Number(kv.get('batch') ?? 8),
        quorumOverride: kv.has('quorum') ? Number(kv.get('quorum')) : null,
        jitterSeed: Number(kv.get('seed') ?? 1),
      }),
      state: null,
      nowTicks: 0,
      disk: new SimDisk(),
      unsynced: [],
      applied: [],
      seqByClient: new Map(),
    }));
    for (const n of this.nodes) this.restart(n, true);
  }

  private select(which: string): HNode[] {
    return which === 'all' ? this.nodes.filter((n) => n.state !== null) : [this.nodes[Number(which)]];
  }

  private tick(n: HNode): void {
    if (n.state === null) return;
    n.nowTicks++;
    this.deliverEvent(n, { kind: 'tick', nowTicks: n.nowTicks }, true);
  }

  private deliverEvent(n: HNode, event: Event, quietIfNothing = false): void {
    if (n.state === null) {
      this.out.push(`  n${n.id} is down: ${formatEvent(event, text)} lost`);
      return;
    }
    const res = step(n.state, event);
    const shown = res.effects.filter((e) => e.kind !== 'armTimer');
    if (quietIfNothing && shown.length === 0) return;
    this.out.push(`n${n.id} ${formatEvent(event, text)}`);
    this.runEffects(n, res.effects);
    for (const d of this.deferred.splice(0)) d();
  }

  private runEffects(n: HNode, effects: readonly Effect[]): void {
    for (const e of effects) {
      if (e.kind === 'armTimer') continue;
      this.out.push(`    ${formatEffect(e, text)}`);
      switch (e.kind) {
        case 'send':
          this.queue.push({ from: n.id, to: e.to, message: e.message });
          break;
        case 'persist':
          n.disk.write(e.seq, e.records);
          n.unsynced.push(e.seq);
          break;
        case 'apply':
          n.applied.push({ instance: e.instance, value: e.value });
          break;
        case 'installSnapshot':
          n.applied = JSON.parse(text(e.data)) as HNode['applied'];
          break;
        case 'fetch': {
          // Served at once from the peer's durable log, but only after this step's effects ran.
          const server = this.nodes[e.from];
          const entries = server.disk.decidedFrom(e.fromInstance, 100) ?? [];
          this.deferred.push(() => this.deliverEvent(n, { kind: 'caughtUp', from: asNodeId(server.id), snapshot: null, entries }));
          break;
        }
        case 'reply':
          break;
        default: {
          const never: never = e;
          throw new Error(String(never));
        }
      }
    }
  }

  private deliver(pattern: string, drop: boolean): void {
    const [f, t] = pattern.split('->');
    const match = (m: { from: number; to: number }) => (f === '*' || Number(f) === m.from) && (t === '*' || Number(t) === m.to);
    const now = this.queue.filter(match);
    this.queue = this.queue.filter((m) => !match(m));
    for (const m of now) {
      const to = this.nodes[m.to];
      if (drop || (this.sides.get(m.from) ?? 0) !== (this.sides.get(m.to) ?? 0)) {
        this.out.push(`  dropped ${m.from}->${m.to} ${m.message.kind}`);
        continue;
      }
      if (to.state === null) continue;
      this.deliverEvent(to, { kind: 'message', from: asNodeId(m.from), message: m.message });
    }
  }

  private persist(n: HNode): void {
    if (n.state === null || n.unsynced.length === 0) return;
    const seq = n.unsynced[n.unsynced.length - 1];
    n.unsynced = [];
    n.disk.sync(seq);
    this.deliverEvent(n, { kind: 'persisted', seq });
  }

  private stabilize(): void {
    for (let round = 0; round < 100; round++) {
      const before = this.queue.length + this.nodes.reduce((s, n) => s + n.unsynced.length, 0);
      if (before === 0) return;
      for (const n of this.nodes) this.persist(n);
      this.deliver('*->*', false);
    }
    throw new Error('stabilize did not settle');
  }

  private crash(n: HNode, keepUnsynced: boolean): void {
    n.state = null;
    // keep: the unsynced writes happened to reach the platter; otherwise all of them are lost.
    const keepAll = { int: (_lo: number, hi: number) => hi, chance: () => false } as unknown as Prng;
    const loseAll = { int: (lo: number) => lo, chance: () => false } as unknown as Prng;
    n.disk.crash(keepUnsynced ? keepAll : loseAll);
    n.unsynced = [];
    this.queue = this.queue.filter((m) => m.to !== n.id);
  }

  private restart(n: HNode, first = false): void {
    n.nowTicks = 0;
    const appliedUpTo = (n.applied.length === 0 ? 0 : n.applied[n.applied.length - 1].instance) as Instance;
    const res = recover(n.config, { promised: n.disk.promised, entries: [...n.disk.entries.values()], decidedUpTo: n.disk.decidedUpTo, appliedUpTo }, 0);
    n.state = res.state;
    const shown = res.effects.filter((e) => e.kind !== 'armTimer');
    if (!first || shown.length > 0) this.out.push(`n${n.id} restart promised=${formatBallot(n.disk.promised)} decided=${n.disk.decidedUpTo} applied=${appliedUpTo}`);
    this.runEffects(n, res.effects);
  }

  private status(n: HNode): string {
    const s = n.state;
    if (s === null) return `  n${n.id} down`;
    const lease = s.master !== null ? ` lease<${s.master.leaseUntilTick}${holdsLease(s) ? '' : '(expired)'}` : '';
    const log = [...s.log.values()].sort((a, b) => a.instance - b.instance).map((e) => `${e.instance}@${formatBallot(e.ballot)}:${formatValue(e.value, text)}`);
    return (
      `  n${n.id} ${s.role} t=${s.nowTicks} promised=${formatBallot(s.promised)} decided=${s.decidedUpTo} applied=${s.appliedUpTo}${lease} ` +
      `log={${log.join(', ')}} store=[${n.applied.map((a) => `${a.instance}:${formatValue(a.value, text)}`).join(' ')}]`
    );
  }
}
