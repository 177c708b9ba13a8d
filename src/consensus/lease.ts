// The master lease, on each node's monotonic clock, counted in ticks.
//
// Owns: the two lease windows and why they cannot overlap (design §3, spec §B.6, pitfall 3).
//  - The master counts its lease from when it SENT the renewal that a quorum then acknowledged:
//    it holds the lease while now < sentTick + leaseTicks. A promise grants no lease.
//  - A follower counts from when it RECEIVED that renewal (later in real time) and will not promise
//    another candidate for respectTicks = ceil(leaseTicks × (1 + driftBound)) + 1 ticks. The drift
//    factor covers clocks running at different rates; the +1 covers tick granularity: the follower
//    recorded floor(receipt time), so up to one tick of real waiting is otherwise missing.
//  - Any quorum that elects a new master meets the quorum that acked the old master's last renewal
//    in at least one node, and that node waited out the old lease before promising.
//  - A restarted node records its boot tick as its last renewal, so it promises nothing for one
//    full respect window ("play dead", Arakoon 84f6fbf4).

import type { Config, State } from './types.js';

export function respectTicks(config: Config): number {
  return Math.ceil(config.leaseTicks * (1 + config.driftBound)) + 1;
}

/** True while this node must not promise a candidate other than the master it follows. */
export function isRespectingLease(state: State): boolean {
  return state.nowTicks < state.lastRenewalTick + respectTicks(state.config);
}

/** True when this node is master and its lease holds now. */
export function holdsLease(state: State): boolean {
  return state.role === 'master' && state.master !== null && state.nowTicks < state.master.leaseUntilTick;
}

/** The master may answer a Consistent read locally: lease holds and the election barrier is applied. */
export function canServeConsistentRead(state: State): boolean {
  return holdsLease(state) && state.master !== null && state.appliedUpTo >= state.master.barrier;
}
