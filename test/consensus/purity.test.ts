// The consensus core stays a pure function: no I/O, clock, randomness, timers or awaits anywhere
// in src/consensus (style.md §3.5, TigerBeetle's tidy idea). The scanner is tested on bad
// snippets too, so this test can fail.

import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '..', '..', 'src', 'consensus');

const FORBIDDEN: readonly [string, RegExp][] = [
  ['node: import', /(?:from\s*|import\s*\(\s*|require\s*\(\s*)['"]node:/],
  ['bare node builtin import', /from\s*['"](?:fs|path|os|crypto|timers|perf_hooks|worker_threads|child_process|net)['"]/],
  ['../server import', /['"](?:\.\.\/)+server/],
  ['../engine import', /['"](?:\.\.\/)+engine/],
  ['../sim import', /['"](?:\.\.\/)+sim/],
  ['Date.', /\bDate\./],
  ['new Date', /\bnew\s+Date\b/],
  ['Math.random', /\bMath\.random\b/],
  ['setTimeout', /\bsetTimeout\b/],
  ['setInterval', /\bsetInterval\b/],
  ['setImmediate', /\bsetImmediate\b/],
  ['performance.', /\bperformance\./],
  ['await', /\bawait\b/],
  ['async', /\basync\b/],
  ['process.', /\bprocess\./],
  // `Promise` itself is Paxos vocabulary here; JavaScript promises show up as these instead.
  ['new Promise', /\bnew\s+Promise\b/],
  ['Promise.resolve', /\bPromise\.(?:resolve|all|race)\b/],
  ['.then(', /\.then\(/],
];

export function violations(source: string): string[] {
  return FORBIDDEN.filter(([, re]) => re.test(source)).map(([name]) => name);
}

function files(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? files(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []));
}

describe('consensus purity', () => {
  it('the scanner catches each forbidden construct', () => {
    expect(violations(`import { readFileSync } from 'node:fs';`)).toContain('node: import');
    expect(violations(`import x from '../engine/db.js';`)).toContain('../engine import');
    expect(violations(`import x from '../sim/prng.js';`)).toContain('../sim import');
    expect(violations(`import x from '../server/node.js';`)).toContain('../server import');
    expect(violations(`const t = Date.now();`)).toContain('Date.');
    expect(violations(`const r = Math.random();`)).toContain('Math.random');
    expect(violations(`setTimeout(f, 1)`)).toContain('setTimeout');
    expect(violations(`setInterval(f, 1)`)).toContain('setInterval');
    expect(violations(`performance.now()`)).toContain('performance.');
    expect(violations(`await x`)).toContain('await');
    expect(violations(`process.env.X`)).toContain('process.');
    expect(violations(`function step(node: NodeId) {}`)).toEqual([]);
  });

  it('src/consensus uses none of them', () => {
    const found = files(root).flatMap((f) => violations(readFileSync(f, 'utf8')).map((v) => `${f}: ${v}`));
    expect(files(root).length).toBeGreaterThan(5);
    expect(found).toEqual([]);
  });
});
