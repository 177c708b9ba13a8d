// Ballots: totally ordered, unique per node, encoded as one safe integer.
//
// Owns: the (round, node) encoding. A ballot is round × NODE_SLOTS + node, so numeric order is
// (round, node) order and two nodes can never produce the same ballot (Arakoon pitfall 4: its
// `update_n` position-modulo-N ballots collided after restarts; spec §C.4).
// Invariant: node ids are in [0, NODE_SLOTS); rounds stay below 2^40 (safe-integer range).

import { AssertionError } from './assert.js';
import type { Ballot, NodeId } from './types.js';

export const NODE_SLOTS = 256;
const ROUND_MAX = 2 ** 40;

/** The ballot nobody holds: every real ballot is above it. */
export const BALLOT_ZERO = 0 as Ballot;

export function makeBallot(round: number, node: NodeId): Ballot {
  if (!(Number.isInteger(round) && round >= 1 && round < ROUND_MAX)) throw new AssertionError(`ballot round out of range: ${round}`);
  if (!(Number.isInteger(node) && node >= 0 && node < NODE_SLOTS)) throw new AssertionError(`node id out of range: ${node}`);
  return (round * NODE_SLOTS + node) as Ballot;
}

export function ballotRound(b: Ballot): number {
  return Math.floor(b / NODE_SLOTS);
}

export function ballotNode(b: Ballot): NodeId {
  return (b % NODE_SLOTS) as NodeId;
}

export function formatBallot(b: Ballot): string {
  return b === BALLOT_ZERO ? '0' : `${ballotRound(b)}.${ballotNode(b)}`;
}
