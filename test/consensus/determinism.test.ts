// Feeding the same event sequence to fresh states gives deep-equal effects (style.md §3.5).
// A seeded driver produces a run of 3 nodes (ticks, client writes, shuffled deliveries, fsyncs);
// the recorded (node, event) sequence is then replayed into brand-new states.

import { describe, expect, it } from 'vitest';
import { asClientId, asNodeId, makeConfig, recover, step, EMPTY_RECOVERED, type Effect, type Event, type State } from '../../src/consensus/index.js';
import { Prng } from '../../src/sim/prng.js';

function fresh(): State[] {
  const voters = [0, 1, 2].map(asNodeId);
  return voters.map((self) => recover(makeConfig({ self, voters, leaseTicks: 12, jitterSeed: 5 }), EMPTY_RECOVERED, 0).state);
}

function drive(seed: number): { log: [number, Event][]; effects: Effect[][] } {
  const prng = new Prng(seed);
  const states = fresh();
  const log: [number, Event][] = [];
  const effects: Effect[][] = [];
  const inbox: [number, Event][] = [];
  const now = [0, 0, 0];
  const feed = (n: number, e: Event) => {
    log.push([n, e]);
    const r = step(states[n], e);
    effects.push([...r.effects]);
    for (const f of r.effects) {
      if (f.kind === 'send') inbox.push([f.to, { kind: 'message', from: asNodeId(n), message: f.message }]);
      if (f.kind === 'persist') inbox.push([n, { kind: 'persisted', seq: f.seq }]);
    }
  };
  for (let k = 0; k < 3000; k++) {
    const r = prng.float();
    if (r < 0.3 || inbox.length === 0) {
      const n = prng.int(0, 2);
      now[n]++;
      feed(n, { kind: 'tick', nowTicks: now[n] });
    } else if (r < 0.35) {
      feed(prng.int(0, 2), { kind: 'clientWrite', clientId: asClientId(1), requestSeq: k, payload: new Uint8Array([k & 255]) });
    } else {
      const [n, e] = inbox.splice(prng.int(0, inbox.length - 1), 1)[0];
      if (e.kind === 'persisted' && e.seq <= states[n].durableSeq) continue;
      if (prng.chance(0.05) && e.kind === 'message') continue; // lost
      feed(n, e);
    }
  }
  return { log, effects };
}

describe('determinism', () => {
  it('replaying the recorded events into fresh states yields identical effects', () => {
    for (const seed of [1, 2, 3]) {
      const { log, effects } = drive(seed);
      expect(effects.flat().some((e) => e.kind === 'apply')).toBe(true);
      const states = fresh();
      const replayed = log.map(([n, e]) => [...step(states[n], e).effects]);
      expect(replayed).toEqual(effects);
    }
  });
});
