// Runs a writer child process (tsx script) until SIGKILL: the kill clock starts at its first
// "ack <n>" line, so start-up time does not eat the budget. Returns the last acknowledged n and
// how many lines matched `count` (e.g. finished compactions).
import { spawn } from 'node:child_process';

export function runUntilKilled(
  childScript: string,
  args: string[],
  start: number,
  killAfterMs: number,
  count: RegExp = /^$^/,
): Promise<{ acked: number; counted: number }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['--import', 'tsx', childScript, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let acked = start;
    let counted = 0;
    let buf = '';
    let err = '';
    let timer: NodeJS.Timeout | undefined;
    p.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        const m = /^ack (\d+)$/.exec(line);
        if (m) {
          acked = Number(m[1]);
          timer ??= setTimeout(() => p.kill('SIGKILL'), killAfterMs);
        }
        if (count.test(line)) counted++;
      }
    });
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (signal === 'SIGKILL') resolve({ acked, counted });
      else reject(new Error(`child exited with ${code}: ${err}`));
    });
  });
}
