import { describe, expect, it } from 'vitest';
import { asNodeId, ConfigError, configWarnings, makeConfig } from '../../src/consensus/index.js';

const ids = (...xs: number[]) => xs.map(asNodeId);

describe('config', () => {
  it('warns when a quorum override allows two realities', () => {
    const c = makeConfig({ self: asNodeId(0), voters: ids(0, 1), quorumOverride: 1 });
    expect(configWarnings(c).join('\n')).toMatch(/two disjoint groups/);
    expect(configWarnings(makeConfig({ self: asNodeId(0), voters: ids(0, 1, 2), quorumOverride: 2 }))).toEqual([]);
    expect(configWarnings(makeConfig({ self: asNodeId(0), voters: ids(0, 1, 2, 3), quorumOverride: 2 })).length).toBe(1);
  });

  it('rejects inconsistent configurations with clear messages', () => {
    expect(() => makeConfig({ self: asNodeId(5), voters: ids(0, 1, 2) })).toThrow(ConfigError);
    expect(() => makeConfig({ self: asNodeId(0), voters: ids(0, 1), learners: ids(1) })).toThrow(/listed twice/);
    expect(() => makeConfig({ self: asNodeId(0), voters: ids(0, 1, 2), quorumOverride: 4 })).toThrow(/quorum/);
    expect(() => makeConfig({ self: asNodeId(0), voters: ids(0, 1, 2), masterMode: { kind: 'forced', master: asNodeId(7) } })).toThrow(/forced master/);
    expect(() => makeConfig({ self: asNodeId(0), voters: ids(0, 1), masterMode: { kind: 'readOnly' } })).toThrow(/single-node/);
    expect(() => makeConfig({ self: asNodeId(0), voters: ids(0, 1, 2), leaseTicks: 20, renewIntervalTicks: 10 })).toThrow(/renewIntervalTicks/);
    expect(() => makeConfig({ self: asNodeId(0), voters: ids(0, 1, 2), witnesses: ids(3) })).toThrow(/witness/);
  });
});
