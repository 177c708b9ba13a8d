// The `floor` and `floor-awake` engines of the side-by-side bench: the device's own rate for
// durable single commits (bench/floor.c), measured in the same run as the engines, so that a
// single-commit ratio can be read against what the disk allows that day (bench/RESULTS.md round 34).
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** A Solifuge single-key commit of a 16-byte key and a 100-byte value is a 221-byte slab. */
export const FLOOR_RECORD_BYTES = 224;

export const FLOOR_ENGINES = ['floor', 'floor-awake'] as const;
export type FloorEngine = (typeof FLOOR_ENGINES)[number];
export const isFloorEngine = (name: string): name is FloorEngine => (FLOOR_ENGINES as readonly string[]).includes(name);

/**
 * How many times the probe runs; the fastest run is the floor. With spinners on every CPU, 2 of
 * 16 runs here were stuck at one commit per scheduler tick (4 or 8 ms) for the whole run, and
 * another had a p99 of 1.9 ms (round 34): the floor is what the device allows at best, so a
 * run the scheduler spoilt is not it. (This errs towards a faster floor, so a ratio said to be
 * past it is past it.)
 */
const FLOOR_RUNS = 3;

/** Builds bench/floor.c into `dir` and runs it there; returns the worker's commit1 figures. */
export function runFloor(engine: FloorEngine, dir: string, warmupMs: number, budgetMs: number): Record<string, number> {
  fs.mkdirSync(dir, { recursive: true });
  const source = fileURLToPath(new URL('./floor.c', import.meta.url));
  const binary = path.join(dir, 'floor');
  execFileSync('cc', ['-O2', '-pthread', source, '-o', binary], { stdio: ['ignore', 'ignore', 'inherit'] });
  const awake = engine === 'floor-awake' ? '1' : '0';
  let best: { opsPerSec: number; p50us: number; p99us: number; meanUs: number } | null = null;
  for (let i = 0; i < FLOOR_RUNS; i++) {
    const line = execFileSync(binary, [path.join(dir, 'floor.log'), String(FLOOR_RECORD_BYTES), String(warmupMs), String(budgetMs), awake], { encoding: 'utf8' });
    const r = JSON.parse(line) as { opsPerSec: number; p50us: number; p99us: number; meanUs: number };
    if (best === null || r.opsPerSec > best.opsPerSec) best = r;
  }
  if (best === null) throw new Error('floor: no run');
  return { commit1: best.opsPerSec, commit1P50us: best.p50us, commit1P99us: best.p99us };
}
