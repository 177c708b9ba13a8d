// Quorum arithmetic.
//
// Owns: how many voters make a quorum, and whether a set of voters reaches it. Learners never
// count. A quorum override (Arakoon `[global] quorum`, spec §B.13) may be smaller than a majority;
// `configWarnings` (config.ts) says so loudly, because then two disjoint quorums ("2 realities")
// can both make progress.

import type { NodeId } from './types.js';

export function majority(voterCount: number): number {
  return Math.floor(voterCount / 2) + 1;
}

export function quorumSize(voterCount: number, override: number | null): number {
  return override ?? majority(voterCount);
}

/** Counts the members of `acks` that are voters, so stray learner or stranger acks never count. */
export function countVoters(acks: Iterable<NodeId>, voters: readonly NodeId[]): number {
  let n = 0;
  for (const a of acks) if (voters.includes(a)) n++;
  return n;
}

export function isQuorum(acks: Iterable<NodeId>, voters: readonly NodeId[], override: number | null): boolean {
  return countVoters(acks, voters) >= quorumSize(voters.length, override);
}

/** True when two disjoint sets of voters could each form a quorum. */
export function allowsTwoMajorities(voterCount: number, override: number | null): boolean {
  return 2 * quorumSize(voterCount, override) <= voterCount;
}
