// Safety checkers run after every simulation step.
//
// Owns: the invariants of design §4 as the simulator observes them.
//  - One value per instance: every replica applies the same value at the same instance.
//  - Decided prefixes agree: every replica's state machine after instance i is identical (its
//    fingerprint), whether it got there by applying or by installing a snapshot.
//  - Applies come in order, once each (the KV store asserts it; checked again here per node).
//  - Leases never overlap: at no simulated instant do two nodes both hold a master lease.
// A violation throws SimViolation, which the runner reports with seed, tick and trace.

import type { Instance, Value } from '../../consensus/index.js';

export class SimViolation extends Error {
  override readonly name = 'SimViolation';
}

export function valueKey(v: Value): string {
  let s = '';
  for (const u of v.updates) s += `${u.clientId}:${u.requestSeq}:${u.payload.join('.')};`;
  return s;
}

export class SafetyChecker {
  /** instance → the value first applied there (by any replica), and its key. */
  readonly decided = new Map<number, { key: string; value: Value }>();
  /** instance → state machine fingerprint after applying it. */
  private readonly fingerprints = new Map<number, string>();
  private readonly lastApplied = new Map<number, number>();
  maxDecided = 0;
  leaseChecks = 0;

  onApply(node: number, instance: Instance, value: Value, fingerprint: string): void {
    const last = this.lastApplied.get(node) ?? 0;
    if (instance !== last + 1) throw new SimViolation(`node ${node} applied ${instance} after ${last}`);
    this.lastApplied.set(node, instance);
    const key = valueKey(value);
    const seen = this.decided.get(instance);
    if (seen === undefined) this.decided.set(instance, { key, value });
    else if (seen.key !== key) throw new SimViolation(`instance ${instance}: node ${node} applied ${key || 'noop'} but another replica applied ${seen.key || 'noop'}`);
    this.checkFingerprint(node, instance, fingerprint);
    if (instance > this.maxDecided) this.maxDecided = instance;
  }

  onSnapshot(node: number, instance: Instance, fingerprint: string): void {
    this.lastApplied.set(node, instance);
    this.checkFingerprint(node, instance, fingerprint);
  }

  /** A restarted node resumes from its durable state machine. */
  onRestart(node: number, appliedUpTo: number): void {
    this.lastApplied.set(node, appliedUpTo);
  }

  private checkFingerprint(node: number, instance: number, fp: string): void {
    const seen = this.fingerprints.get(instance);
    if (seen === undefined) this.fingerprints.set(instance, fp);
    else if (seen !== fp) throw new SimViolation(`state machines diverge after instance ${instance}: node ${node} has ${fp}, another had ${seen}`);
  }

  /** `holders`: nodes that hold a master lease right now. */
  checkLeases(holders: readonly number[]): void {
    this.leaseChecks++;
    if (holders.length > 1) throw new SimViolation(`two nodes hold a master lease at once: ${holders.join(', ')}`);
  }
}
