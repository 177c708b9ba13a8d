// One adapter per engine, each behind the same small interface, so the worker runs identical
// workloads on all of them. Anchor libraries come from bench/node_modules (`npm run bench:setup`).
// Solifuge comes from dist/, the build `import 'solifuge'` loads (the bench scripts build it
// first): tsx's transform of src/ wraps every closure made at run time in a naming helper (esbuild's
// keepNames), which cost a commit's slab building a few percent (bench/RESULTS.md round 18).
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { open as openSolifuge, type Db, type OpenOptions } from '../dist/index.js';

const requireBench = createRequire(new URL('./package.json', import.meta.url));

export interface Engine {
  name: string;
  /** Writes the pairs in one durable transaction. */
  batch(pairs: Array<[Buffer, Buffer]>): Promise<void>;
  /** One durable single-key commit. */
  put(k: Buffer, v: Buffer): Promise<void>;
  get(k: Buffer): Buffer | undefined | Promise<Buffer | undefined>;
  /** Reads up to `n` entries from `start` on; returns how many. */
  scan(start: Buffer, n: number): number | Promise<number>;
  /** Bytes the store occupies on disk (allocated blocks). */
  diskBytes(): number;
  /**
   * Finishes work the engine deferred after a load, so reads measure the settled store (Solifuge:
   * its checkpoint, which writes the tree the commits logged; the worker times it separately).
   */
  settle?(): Promise<void>;
  /** Offline compaction where the engine has it (size after, allocated bytes). */
  compact?(): Promise<number>;
  close(): Promise<void>;
}

export function allocatedBytes(p: string): number {
  // A file may vanish between readdir and stat (LevelDB deletes compacted tables meanwhile).
  const st = fs.statSync(p, { throwIfNoEntry: false });
  if (st === undefined) return 0;
  if (st.isFile()) return st.blocks * 512;
  let n = 0;
  for (const f of fs.readdirSync(p)) n += allocatedBytes(path.join(p, f));
  return n;
}

export async function openEngine(name: string, dir: string): Promise<Engine> {
  fs.mkdirSync(dir, { recursive: true });
  switch (name) {
    // Not in the default list, to measure what a choice buys: solifuge-nospin, small commits'
    // fdatasync plain on the JS thread instead of polled (OpenOptions.syncSpinUs 0);
    // solifuge-direct, polled direct writes instead of a write and an fdatasync (syncDirect
    // true); solifuge-nopin, the sync thread unpinned and without its keeper (syncCpu 'off').
    case 'solifuge-nospin':
    case 'solifuge-direct':
    case 'solifuge-nopin':
    case 'solifuge': {
      const file = path.join(dir, 'data.db');
      const variants: Record<string, OpenOptions> = {
        'solifuge-nospin': { syncSpinUs: 0 },
        'solifuge-direct': { syncDirect: true },
        'solifuge-nopin': { syncCpu: 'off' },
      };
      const spinOpt = variants[name] ?? {};
      let db: Db = await openSolifuge(file, spinOpt);
      return {
        name,
        batch: (pairs) => db.transaction((tx) => {
          for (const [k, v] of pairs) tx.set(k, v);
        }),
        put: (k, v) => db.set(k, v),
        get: (k) => db.get(k),
        settle: () => db.checkpoint(),
        scan: (start, n) => {
          let c = 0;
          for (const _ of db.range({ gte: start, limit: n })) c++;
          return c;
        },
        diskBytes: () => allocatedBytes(file),
        compact: async () => {
          const out = path.join(dir, 'compacted.db');
          await db.compactTo(out);
          await db.close();
          fs.renameSync(out, file);
          db = await openSolifuge(file, spinOpt);
          return allocatedBytes(file);
        },
        close: () => db.close(),
      };
    }
    case 'lmdb':
    case 'lmdb-flushed': {
      // lmdb-js's default overlappingSync resolves a write's promise once the transaction is
      // committed and visible, and flushes to disk after it, overlapped with the next one (its
      // README, "Overlapping Sync Options"). Our promises resolve once durable, so the
      // like-for-like variant also awaits `db.flushed`, as a caller that needs durability must.
      const flushed = name === 'lmdb-flushed';
      const { open } = requireBench('lmdb') as typeof import('lmdb');
      const db = open({ path: path.join(dir, 'lmdb'), keyEncoding: 'binary', encoding: 'binary', compression: false });
      return {
        name,
        batch: async (pairs) => {
          await db.transaction(() => {
            for (const [k, v] of pairs) db.put(k, v);
          });
          if (flushed) await db.flushed;
        },
        put: async (k, v) => {
          await db.put(k, v);
          if (flushed) await db.flushed;
        },
        get: (k) => db.getBinary(k) as Buffer | undefined,
        scan: (start, n) => {
          let c = 0;
          for (const _ of db.getRange({ start, limit: n })) c++;
          return c;
        },
        diskBytes: () => allocatedBytes(path.join(dir, 'lmdb')),
        close: () => db.close(),
      };
    }
    case 'classic-level': {
      const { ClassicLevel } = requireBench('classic-level') as typeof import('classic-level');
      const db = new ClassicLevel<Buffer, Buffer>(path.join(dir, 'level'), { keyEncoding: 'buffer', valueEncoding: 'buffer' });
      await db.open();
      return {
        name,
        batch: (pairs) => db.batch(pairs.map(([key, value]) => ({ type: 'put' as const, key, value })), { sync: true }),
        put: (k, v) => db.put(k, v, { sync: true }),
        get: (k) => db.getSync(k),
        scan: async (start, n) => {
          const it = db.iterator({ gte: start, limit: n });
          let c = 0;
          for (;;) {
            const rows = await it.nextv(n - c); // returns up to that many
            if (rows.length === 0) break;
            c += rows.length;
          }
          await it.close();
          return c;
        },
        diskBytes: () => allocatedBytes(path.join(dir, 'level')),
        close: () => db.close(),
      };
    }
    case 'better-sqlite3': {
      const Database = requireBench('better-sqlite3') as typeof import('better-sqlite3');
      const db = new Database(path.join(dir, 'sqlite.db'));
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = FULL');
      db.exec('CREATE TABLE IF NOT EXISTS kv (k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID');
      const ins = db.prepare('INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)');
      const sel = db.prepare('SELECT v FROM kv WHERE k = ?').pluck();
      const rng = db.prepare('SELECT k, v FROM kv WHERE k >= ? ORDER BY k LIMIT ?').raw();
      const tx = db.transaction((pairs: Array<[Buffer, Buffer]>) => {
        for (const [k, v] of pairs) ins.run(k, v);
      });
      return {
        name,
        batch: async (pairs) => {
          tx(pairs);
        },
        put: async (k, v) => {
          ins.run(k, v);
        },
        get: (k) => sel.get(k) as Buffer | undefined,
        scan: (start, n) => {
          let c = 0;
          for (const _ of rng.iterate(start, n)) c++;
          return c;
        },
        diskBytes: () => {
          db.pragma('wal_checkpoint(TRUNCATE)');
          return allocatedBytes(path.join(dir, 'sqlite.db')) + (fs.existsSync(path.join(dir, 'sqlite.db-wal')) ? allocatedBytes(path.join(dir, 'sqlite.db-wal')) : 0);
        },
        close: async () => {
          db.close();
        },
      };
    }
    default:
      throw new Error(`unknown engine ${name}`);
  }
}
