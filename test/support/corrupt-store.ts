import fs from 'node:fs';
import { expect } from 'vitest';
import { open } from '../../src/index.js';

/**
 * Writes a store at `file`: 400 keys (key0000 … key0399, values `value-${i}-` × 4) in 512-byte
 * nodes, all on disk after its close's checkpoint; then flips a bit in the leaf holding key0200,
 * so any read or write whose path meets that leaf finds a corrupt node.
 */
export async function writeCorruptStore(file: string): Promise<string> {
  const db0 = await open(file, { nodeBytesMax: 512 });
  await db0.transaction((tx) => {
    for (let i = 0; i < 400; i++) tx.set(`key${String(i).padStart(4, '0')}`, `value-${i}-`.repeat(4));
  });
  await db0.close(); // a checkpoint: every leaf is on disk
  const bad = fs.readFileSync(file);
  const at = bad.indexOf('value-200-value-200-');
  expect(at).toBeGreaterThan(0);
  bad[at + 3] ^= 0x10;
  fs.writeFileSync(file, bad);
  return file;
}
