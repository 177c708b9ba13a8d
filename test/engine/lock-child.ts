// Child for recovery.test.ts's lock tests: opens FILE writable (with or without the native addon,
// as SOLIFUGE_NATIVE says), prints whether it could, and if so holds the store until its stdin ends.
import { open } from '../../src/index.js';
import { addon } from '../../src/native/addon.js';

const file = process.argv[2];
try {
  const db = await open(file);
  await db.set('child', String(process.pid));
  process.stdout.write(`${JSON.stringify({ addon: addon !== null, opened: true })}\n`);
  process.stdin.resume();
  await new Promise((r) => process.stdin.on('end', r));
  await db.close();
} catch (err) {
  process.stdout.write(`${JSON.stringify({ addon: addon !== null, opened: false, code: (err as { code?: string }).code })}\n`);
}
