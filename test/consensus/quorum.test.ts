// Quorum arithmetic against a naive reference (etcd raft's quorum/quick_test.go idea), plus
// ballot encoding order.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { asNodeId, ballotNode, ballotRound, isQuorum, makeBallot, allowsTwoMajorities } from '../../src/consensus/index.js';

describe('quorum', () => {
  it('isQuorum matches counting distinct voter acks against ⌊n/2⌋+1 or the override', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 9 }), fc.array(fc.integer({ min: 0, max: 12 })), fc.option(fc.integer({ min: 1, max: 9 })), (n, acks, ov) => {
        const voters = Array.from({ length: n }, (_, i) => asNodeId(i));
        const override = ov !== null && ov <= n ? ov : null;
        const distinctVoterAcks = new Set(acks.filter((a) => a < n)).size;
        const need = override ?? Math.floor(n / 2) + 1;
        expect(isQuorum(new Set(acks.map(asNodeId)), voters, override)).toBe(distinctVoterAcks >= need);
      }),
    );
  });

  it('two disjoint quorums exist exactly when 2q ≤ n', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 9 }), fc.integer({ min: 1, max: 9 }), (n, q) => {
        fc.pre(q <= n);
        // Naive: try the split {0..q-1} and {q..2q-1}.
        const naive = 2 * q <= n;
        expect(allowsTwoMajorities(n, q)).toBe(naive);
      }),
    );
    expect(allowsTwoMajorities(3, null)).toBe(false);
    expect(allowsTwoMajorities(4, null)).toBe(false);
  });

  it('ballots order by (round, node) and round-trip', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 1e9 }), fc.integer({ min: 0, max: 255 }), fc.integer({ min: 1, max: 1e9 }), fc.integer({ min: 0, max: 255 }), (r1, n1, r2, n2) => {
        const a = makeBallot(r1, asNodeId(n1));
        const b = makeBallot(r2, asNodeId(n2));
        expect(ballotRound(a)).toBe(r1);
        expect(ballotNode(a)).toBe(n1);
        const lexical = r1 !== r2 ? Math.sign(r1 - r2) : Math.sign(n1 - n2);
        expect(Math.sign(a - b)).toBe(lexical);
      }),
    );
  });
});
