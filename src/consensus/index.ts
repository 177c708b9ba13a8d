// Public surface of the consensus core. See step.ts for the shell contract.
export * from './types.js';
export { step, recover, EMPTY_RECOVERED } from './step.js';
export { makeConfig, validateConfig, configWarnings, ConfigError, type ConfigInput } from './config.js';
export { makeBallot, ballotRound, ballotNode, formatBallot, BALLOT_ZERO } from './ballot.js';
export { holdsLease, canServeConsistentRead, respectTicks } from './lease.js';
export { majority, quorumSize, isQuorum, allowsTwoMajorities } from './quorum.js';
export { AssertionError } from './assert.js';
