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

/** Builds bench/floor.c into `dir` and runs it there; returns the worker's commit1 figures. */
export function runFloor(engine: FloorEngine, dir: string, warmupMs: number, budgetMs: number): Record<string, number> {
  fs.mkdirSync(dir, { recursive: true });
  const source = fileURLToPath(new URL('./floor.c', import.meta.url));
  const binary = path.join(dir, 'floor');
  execFileSync('cc', ['-O2', '-pthread', source, '-o', binary], { stdio: ['ignore', 'ignore', 'inherit'] });
  const awake = engine === 'floor-awake' ? '1' : '0';
  const line = execFileSync(binary, [path.join(dir, 'floor.log'), String(FLOOR_RECORD_BYTES), String(warmupMs), String(budgetMs), awake], { encoding: 'utf8' });
  const r = JSON.parse(line) as { opsPerSec: number; p50us: number; p99us: number; meanUs: number };
  return { commit1: r.opsPerSec, commit1P50us: r.p50us, commit1P99us: r.p99us };
}
