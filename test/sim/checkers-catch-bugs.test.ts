// The simulator's checkers must be able to fail: these runs break an assumption on purpose and
// expect a violation. (Mutations of the core itself are recorded in the issue report.)
import { describe, expect, it } from 'vitest';
import { asClientId, asInstance, asNodeId, makeBallot, type Message, type NodeId, type PersistSeq } from '../../src/consensus/index.js';
import { DurabilityChecker } from '../../src/sim/checkers/durability.js';
import { LeaseRespectChecker } from '../../src/sim/checkers/lease-respect.js';
import { optionsForSeed, runSimulation } from '../../src/sim/cluster.js';
import { SimDisk } from '../../src/sim/disk.js';

describe('the simulator catches broken assumptions', () => {
  it('clocks drifting far beyond the declared bound make two leases overlap', () => {
    // Declared drift bound 0.1, real rate spread 2 (clocks up to 3× apart): some early seed must show the overlap.
    let found: ReturnType<typeof runSimulation> | null = null;
    for (let seed = 1; seed <= 400 && found === null; seed++) {
      const r = runSimulation(optionsForSeed(seed, { clockDrift: 2 }));
      if (!r.ok && /two nodes hold a master lease/.test(r.failure!.message)) found = r;
    }
    expect(found).not.toBeNull();
    expect(found!.failure!.trace.length).toBeGreaterThan(0);
  });

  it('the same seed replays to the same run, trace and figures included', () => {
    const a = runSimulation(optionsForSeed(90, { clockDrift: 0.9 }));
    const b = runSimulation(optionsForSeed(90, { clockDrift: 0.9 }));
    expect(b).toEqual(a);
    const c = runSimulation(optionsForSeed(7));
    expect(runSimulation(optionsForSeed(7))).toEqual(c);
    expect(c.ok).toBe(true);
  });
});

// The durability and lease-respect checkers judge the effect stream and the disk, not the core's
// state, so they are exercised here on hand-made histories that break each rule, next to the same
// history made legal. Mutation results of the core (the four bugs they were written for) are in
// the issue report.
describe('the durability checker fails a reply that vouches for what is not yet durable', () => {
  const b = makeBallot(3, asNodeId(2));
  const promise: Message = { kind: 'promise', ballot: b, decidedUpTo: asInstance(0), accepted: [] };
  const value = { updates: [{ clientId: asClientId(100), requestSeq: 1, payload: new Uint8Array([1]) }] };
  const other = { updates: [{ clientId: asClientId(100), requestSeq: 2, payload: new Uint8Array([2]) }] };
  const entry = { instance: asInstance(1), ballot: b, value };

  it('a promise whose ballot was never persisted (bug 1)', () => {
    const disk = new SimDisk();
    expect(() => new DurabilityChecker().onSend(1, asNodeId(2), promise, disk, 0)).toThrow(/durable before reply \(pitfall 4\).*promise/);
  });

  it('a promise sent after its persist was written but before the fsync completed (bug 2)', () => {
    const disk = new SimDisk();
    const c = new DurabilityChecker();
    disk.write(1 as PersistSeq, [{ kind: 'promised', ballot: b }]);
    expect(() => c.onSend(1, asNodeId(2), promise, disk, 0)).toThrow(/pitfall 4/);
    disk.sync(1 as PersistSeq);
    c.onSend(1, asNodeId(2), promise, disk, 0);
    expect(c.promisesChecked).toBe(2);
  });

  it('an accepted sent before its entry is durable, or for another value than the ballot proposed', () => {
    const disk = new SimDisk();
    const c = new DurabilityChecker();
    c.onSend(2, asNodeId(1), { kind: 'accept', ballot: b, instance: asInstance(1), value, decidedUpTo: asInstance(0) }, new SimDisk(), 0);
    const accepted: Message = { kind: 'accepted', ballot: b, instance: asInstance(1) };
    disk.write(1 as PersistSeq, [{ kind: 'promised', ballot: b }]);
    disk.sync(1 as PersistSeq);
    disk.write(2 as PersistSeq, [{ kind: 'accepted', entry }]);
    expect(() => c.onSend(1, asNodeId(2), accepted, disk, 0)).toThrow(/durable before reply \(pitfall 2\).*holds nothing/);
    disk.sync(2 as PersistSeq);
    c.onSend(1, asNodeId(2), accepted, disk, 0);
    disk.write(3 as PersistSeq, [{ kind: 'accepted', entry: { ...entry, value: other } }]);
    disk.sync(3 as PersistSeq);
    expect(() => c.onSend(1, asNodeId(2), accepted, disk, 0)).toThrow(/another value/);
    // A durably decided instance may be acked without its entry: the ack vouches for the decided value.
    const decided = new SimDisk();
    decided.write(1 as PersistSeq, [{ kind: 'promised', ballot: b }, { kind: 'decided', upTo: asInstance(1) }]);
    decided.sync(1 as PersistSeq);
    c.onSend(1, asNodeId(2), accepted, decided, 0);
    expect(() => c.onSend(2, asNodeId(1), { kind: 'accept', ballot: b, instance: asInstance(1), value: other, decidedUpTo: asInstance(0) }, disk, 0)).toThrow(
      /proposed two values/,
    );
  });
});

describe('the lease-respect checker fails a promise that a live lease forbids', () => {
  // Lease 20 ticks, drift bound 0.1: a follower must wait 22 ticks after a renewal it acknowledged.
  const master = asNodeId(0);
  const follower = 1;
  const candidate = asNodeId(2);
  const masterBallot = makeBallot(4, master);
  const renew: Message = { kind: 'renew', ballot: masterBallot, renewalSeq: 7, decidedUpTo: asInstance(0) };
  const renewed: Message = { kind: 'renewed', ballot: masterBallot, renewalSeq: 7, decidedUpTo: asInstance(0) };
  const promiseTo = (node: NodeId, round: number): Message => ({ kind: 'promise', ballot: makeBallot(round, node), decidedUpTo: asInstance(0), accepted: [] });
  const prepare: Message = { kind: 'prepare', ballot: makeBallot(5, asNodeId(follower)), firstUndecided: asInstance(1) };

  const afterRenewal = (): LeaseRespectChecker => {
    const c = new LeaseRespectChecker(20, 0.1);
    c.onBoot(follower, 0, false);
    c.onReceive(follower, master, renew, 50);
    c.onSend(follower, master, renewed, 50.5);
    return c;
  };

  it('a promise to another candidate after exactly one lease, without the drift margin (bug 4)', () => {
    expect(() => afterRenewal().onSend(follower, candidate, promiseTo(candidate, 5), 50 + 20.5)).toThrow(/lease may be live \(pitfall 3\)/);
    // Its own candidacy is a promise too.
    expect(() => afterRenewal().onSend(follower, candidate, prepare, 50 + 21)).toThrow(/lease may be live.*own candidacy/);
    // After lease × (1 + drift bound), or to the master it renewed for, it may promise.
    afterRenewal().onSend(follower, candidate, promiseTo(candidate, 5), 50 + 22.01);
    afterRenewal().onSend(follower, master, promiseTo(master, 5), 51);
  });

  it('the renewal is remembered across the follower\'s crash', () => {
    // Restarted 1 tick after the renewal: its quiet period (one lease) ends before the renewal's window.
    const c = afterRenewal();
    c.onBoot(follower, 51, true);
    expect(() => c.onSend(follower, candidate, promiseTo(candidate, 5), 51 + 20.5)).toThrow(/lease may be live/);
  });

  it('a restarted node promising, or campaigning, within one lease of its restart (bug 3)', () => {
    const c = new LeaseRespectChecker(20, 0.1);
    c.onBoot(follower, 0, false);
    c.onSend(follower, candidate, promiseTo(candidate, 1), 30); // before any crash: no quiet period
    c.onBoot(follower, 100, true);
    expect(() => c.onSend(follower, candidate, promiseTo(candidate, 2), 100 + 3)).toThrow(/restart quiet period \(pitfall 3\)/);
    expect(() => c.onSend(follower, candidate, prepare, 100 + 19.9)).toThrow(/restart quiet period.*own candidacy/);
    // Resending the promise it made before the crash grants nothing new.
    c.onSend(follower, candidate, promiseTo(candidate, 1), 100 + 3);
    c.onSend(follower, candidate, promiseTo(candidate, 2), 100 + 20);
  });
});
