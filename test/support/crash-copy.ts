import fs from 'node:fs';
import { open, type Db } from '../../src/index.js';

let copies = 0;

/** Copies a store's file as a crash would leave it (no close) into `dir` and opens the copy. */
export async function crashCopy(db: Db, file: (name: string) => string): Promise<Db> {
  const copy = file(`crash-copy-${copies++}.db`);
  fs.copyFileSync(db.path, copy);
  return open(copy);
}
