// A hostile but checksum-valid file: the root index node's child 0 points back at the root itself.
// Copy-on-write appends children before parents, so every read path may demand that an on-disk
// child lie below its on-disk parent; one that does not is corruption. Before that rule was
// enforced, gets looped forever (in WebAssembly and in JS), range cursors looped with a growing
// stack and check() overflowed the stack.
//
// Each operation runs in a child process killed after CHILD_TIMEOUT_MS: a loop inside one
// synchronous call (or inside WebAssembly) blocks the thread vitest's own timeout runs on, so a
// regression must fail here, not hang the suite.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { open } from '../../src/index.js';
import { crc32c, crc32cUpdate } from '../../src/wasm/crc32c.js';
import { tempDir } from '../support/tmp.js';
import { varintBytesOf } from '../support/reference-codec.js';

const tmp = tempDir('hostile-tree');
afterAll(() => tmp.cleanup());

const CHILD_TIMEOUT_MS = 20_000;
const TEST_TIMEOUT_MS = CHILD_TIMEOUT_MS + 10_000;
const ENTRY_HEADER_BYTES = 9; // u32 CRC, u32 body length, u8 kind
const COMMIT_SLAB_CRC_AT = 55; // codec.ts, commit body
const srcIndex = fileURLToPath(new URL('../../src/index.ts', import.meta.url));

function readVarint(b: Buffer, at: number): [value: number, next: number] {
  let v = 0;
  let m = 1;
  for (let i = at; ; i++) {
    const x = b[i];
    v += (x & 0x7f) * m;
    if (x < 0x80) return [v, i + 1];
    m *= 128;
  }
}


/** Recomputes the CRC of the entry at `pos`; returns where the next entry starts. */
function fixEntryCrc(b: Buffer, pos: number): number {
  const bodyLen = b.readUInt32LE(pos + 4);
  b.writeUInt32LE(crc32c(b, pos + 4, pos + ENTRY_HEADER_BYTES + bodyLen) >>> 0, pos);
  return pos + ENTRY_HEADER_BYTES + bodyLen;
}

let cyclic = '';
let rootPos = 0;

/**
 * A store whose checkpointed root is an index node, then patched: its child 0 refers to the root's
 * own position. The entry CRC, the slab CRC and the commit CRC are all recomputed.
 */
beforeAll(async () => {
  cyclic = tmp.file('cycle.db');
  const db = await open(cyclic, { checkpointIdleMs: 0 });
  // A large value first: positions past 2^14, so the root's position takes as many varint bytes
  // as child 0's and the patch keeps the body's length.
  await db.set('zzzz', Buffer.alloc(20_000, 1));
  await db.transaction((tx) => {
    for (let i = 0; i < 3000; i++) tx.set(`k${String(i).padStart(6, '0')}`, 'x'.repeat(40));
  });
  await db.close();
  const again = await open(cyclic, { readOnly: true });
  expect(again.check().problems).toEqual([]); // sound before the patch
  const c = again.fileInfo().lastCommit;
  await again.close();
  expect(c).not.toBeNull();
  const commit = c!;
  expect(commit.rootKind).toBe(3); // an index root
  rootPos = commit.rootPos;

  const b = fs.readFileSync(cyclic);
  // Index body: count, prefix length, prefix, then child 0's position (entry 0 has no key).
  let o = rootPos + ENTRY_HEADER_BYTES;
  [, o] = readVarint(b, o);
  let prefixLen: number;
  [prefixLen, o] = readVarint(b, o);
  o += prefixLen;
  const child0At = o;
  let child0Pos: number;
  [child0Pos, o] = readVarint(b, o);
  expect(child0Pos).toBeLessThan(rootPos);
  const patch = varintBytesOf(rootPos);
  expect(patch.length).toBe(o - child0At);
  Buffer.from(patch).copy(b, child0At);
  fixEntryCrc(b, rootPos);
  let slabCrc = 0;
  for (let q = commit.slabStart; q < commit.pos; q += ENTRY_HEADER_BYTES + b.readUInt32LE(q + 4)) slabCrc = crc32cUpdate(slabCrc, b, q, q + 4);
  b.writeUInt32LE(slabCrc >>> 0, commit.pos + ENTRY_HEADER_BYTES + COMMIT_SLAB_CRC_AT);
  fixEntryCrc(b, commit.pos);
  fs.writeFileSync(cyclic, b);
}, TEST_TIMEOUT_MS);

interface Outcome {
  threw?: { name: string; code?: string; offset?: number; message: string };
  report?: { ok: boolean; problems: string[] };
  done?: boolean;
}

/**
 * Runs `body` (statements over `db`, opened on `file` with `opts`) in a child process, which
 * prints what happened; null if it was killed for taking too long.
 */
function inChild(file: string, opts: object, body: string): Outcome | null {
  const script = `
    import { open } from ${JSON.stringify(srcIndex)};
    const db = await open(${JSON.stringify(file)}, ${JSON.stringify(opts)});
    let out;
    try {
      ${body}
      out = { done: true };
    } catch (e) {
      out = { threw: { name: e.name, code: e.code, offset: e.offset, message: String(e.message).slice(0, 300) } };
    }
    process.stdout.write(JSON.stringify(out) + '\\n');
    process.exit(0);
  `;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    encoding: 'utf8',
    timeout: CHILD_TIMEOUT_MS,
    killSignal: 'SIGKILL',
  });
  if (r.signal !== null || r.error !== undefined) return null;
  const line = r.stdout.trim().split('\n').pop() ?? '';
  if (!line.startsWith('{')) throw new Error(`child failed (status ${r.status}): ${r.stderr.slice(0, 2000)}`);
  return JSON.parse(line) as Outcome;
}

function expectCorruption(o: Outcome | null): void {
  expect(o, 'the operation did not end within the time limit').not.toBeNull();
  expect(o!.threw?.name).toBe('CorruptionError');
  expect(o!.threw?.code).toBe('CORRUPTION');
  expect(o!.threw?.offset).toBe(rootPos);
}

const reads: Array<[string, string]> = [
  ['get (string key)', `db.get('k000000');`],
  ['get (Buffer key)', `db.get(Buffer.from('k000000'));`],
  ['exists', `db.exists('k000000');`],
  ['range', `for (const e of db.range()) void e;`],
  ['range, reverse', `for (const e of db.range({ reverse: true })) void e;`],
  ['keys', `for (const k of db.keys()) void k;`],
  ['keys, reverse', `for (const k of db.keys({ reverse: true })) void k;`],
];

describe.each([
  ['the WebAssembly cache', {}],
  ['the least cache (cacheBytes: 0, taken as 4 MiB)', { cacheBytes: 0 }],
])('a root index node that is its own child, read with %s', (_label, cacheOpts) => {
  const opts = { readOnly: true, ...cacheOpts };

  it.each(reads)('%s ends with CorruptionError at the root', (_op, body) => {
    expectCorruption(inChild(cyclic, opts, body));
  }, TEST_TIMEOUT_MS);

  it('check() reports the child as data and does not follow it', () => {
    const o = inChild(cyclic, opts, `const r = db.check(); process.stdout.write(JSON.stringify({ report: { ok: r.ok, problems: r.problems } }) + '\\n'); process.exit(0);`);
    expect(o, 'check() did not end within the time limit').not.toBeNull();
    expect(o!.threw).toBeUndefined();
    expect(o!.report?.ok).toBe(false);
    expect(o!.report?.problems.some((p) => p.includes(`at ${rootPos}`) && p.includes('not older than its parent'))).toBe(true);
  }, TEST_TIMEOUT_MS);

  it('a write through child 0 fails with CorruptionError', () => {
    const copy = tmp.file(`write-${Object.keys(cacheOpts).length}.db`);
    fs.copyFileSync(cyclic, copy);
    expectCorruption(inChild(copy, cacheOpts, `await db.set('k000000', 'y');`));
    expectCorruption(inChild(copy, cacheOpts, `await db.delete('k000001');`));
  }, 2 * TEST_TIMEOUT_MS);
});
