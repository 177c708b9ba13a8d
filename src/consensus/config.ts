// Building and validating the core's Config.
//
// Owns: defaults, validation (clear messages, thrown as ConfigError: an operating error), and the
// warnings an operator must see (quorum override allowing two majorities, spec §B.13).

import { NODE_SLOTS } from './ballot.js';
import { allowsTwoMajorities, quorumSize } from './quorum.js';
import type { Config, NodeId } from './types.js';

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

export type ConfigInput = Pick<Config, 'self' | 'voters'> & Partial<Config>;

export function makeConfig(input: ConfigInput): Config {
  const leaseTicks = input.leaseTicks ?? 50;
  const config: Config = {
    learners: [],
    witnesses: [],
    masterMode: { kind: 'elected' },
    quorumOverride: null,
    driftBound: 0.1,
    renewIntervalTicks: Math.max(1, Math.floor(leaseTicks / 4)),
    electionJitterTicks: Math.max(1, Math.floor(leaseTicks / 2)),
    // A candidacy must outlast a round trip plus an fsync on every clock in the bound.
    candidacyTimeoutTicks: Math.max(2, leaseTicks),
    resendTicks: Math.max(1, Math.floor(leaseTicks / 5)),
    fetchTimeoutTicks: Math.max(2, Math.floor(leaseTicks / 2)),
    pipelineWindow: 4,
    batchMaxUpdates: 64,
    queueMaxUpdates: 4096,
    jitterSeed: 0,
    ...input,
    leaseTicks,
  };
  validateConfig(config);
  return config;
}

export function validateConfig(c: Config): void {
  const fail = (msg: string): never => {
    throw new ConfigError(msg);
  };
  const all: NodeId[] = [...c.voters, ...c.learners];
  if (c.voters.length === 0) fail('the cluster needs at least one voter');
  if (new Set(all).size !== all.length) fail('a node is listed twice (voters and learners must be disjoint)');
  for (const n of all) if (!Number.isInteger(n) || n < 0 || n >= NODE_SLOTS) fail(`node id ${n} is outside [0, ${NODE_SLOTS})`);
  if (!all.includes(c.self)) fail(`self (${c.self}) is neither a voter nor a learner`);
  for (const w of c.witnesses) if (!c.voters.includes(w)) fail(`witness ${w} must be a voter`);
  if (c.quorumOverride !== null && (!Number.isInteger(c.quorumOverride) || c.quorumOverride < 1 || c.quorumOverride > c.voters.length))
    fail(`quorum ${c.quorumOverride} must be in [1, ${c.voters.length}]`);
  if (!(c.leaseTicks >= 4)) fail('leaseTicks must be at least 4');
  if (!(c.driftBound >= 0 && c.driftBound < 1)) fail('driftBound must be in [0, 1)');
  // Renewals must land well inside the lease, or a healthy master loses it between renewals.
  if (!(c.renewIntervalTicks >= 1 && c.renewIntervalTicks * 2 < c.leaseTicks)) fail('renewIntervalTicks must be ≥ 1 and below leaseTicks / 2');
  if (!(c.pipelineWindow >= 1)) fail('pipelineWindow must be ≥ 1');
  if (!(c.batchMaxUpdates >= 1)) fail('batchMaxUpdates must be ≥ 1');
  if (!(c.electionJitterTicks >= 1 && c.candidacyTimeoutTicks >= 1 && c.resendTicks >= 1 && c.fetchTimeoutTicks >= 1))
    fail('timer ticks must be ≥ 1');
  const mode = c.masterMode;
  if (mode.kind === 'forced' && !c.voters.includes(mode.master)) fail(`forced master ${mode.master} is not a voter`);
  if (mode.kind === 'forced' && c.witnesses.includes(mode.master)) fail('a witness cannot be the forced master');
  if (mode.kind === 'preferred') for (const p of mode.nodes) if (!c.voters.includes(p)) fail(`preferred master ${p} is not a voter`);
  if (mode.kind === 'readOnly' && (c.voters.length !== 1 || c.learners.length !== 0)) fail('read-only mode is for single-node clusters');
  if (c.witnesses.length === c.voters.length && mode.kind !== 'readOnly') fail('every voter is a witness: nobody can become master');
}

/** Things that are allowed but dangerous; the shell logs them at start-up. */
export function configWarnings(c: Config): string[] {
  const warnings: string[] = [];
  if (c.quorumOverride !== null && allowsTwoMajorities(c.voters.length, c.quorumOverride)) {
    warnings.push(
      `quorum = ${c.quorumOverride} with ${c.voters.length} voters lets two disjoint groups both make progress ` +
        `(two realities that are never reconciled); the majority is ${quorumSize(c.voters.length, null)}`,
    );
  }
  if (c.voters.length === 2 && c.quorumOverride === null) warnings.push('two voters: both must be up for any write; add a witness');
  return warnings;
}
