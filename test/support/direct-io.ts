import fs from 'node:fs';
import path from 'node:path';
import { addon } from '../../src/native/addon.js';

/**
 * Whether `dir`'s file system takes O_DIRECT writes through the addon (tmpfs before Linux 6.6
 * does not): where it does not, the engine falls back to fdatasync, and a test counting direct
 * writes would find none.
 */
export function directIoWorks(dir: string): boolean {
  if (addon?.directWriteStart === undefined || addon.fdatasyncFinish === undefined) return false;
  const file = path.join(dir, `direct-io-probe-${process.pid}`);
  fs.writeFileSync(file, Buffer.alloc(4096));
  let fd = -1;
  try {
    fd = fs.openSync(file, fs.constants.O_WRONLY | fs.constants.O_DIRECT | fs.constants.O_DSYNC);
    addon.directWriteStart(fd, Buffer.alloc(1), 0, 0);
    return addon.fdatasyncFinish() === 0;
  } catch {
    return false;
  } finally {
    if (fd >= 0) fs.closeSync(fd);
    fs.rmSync(file, { force: true });
  }
}
