// Builds the native addon (native/zerocopy.cc) during `npm install`, offline.
//
// node-gyp would otherwise download Node's headers; we point it at the headers that the Node
// installation ships (toolchain.md §2.1): npm_config_nodedir when npm provides it, else the
// prefix two levels above process.execPath when it has include/node/common.gypi.
// The addon is optional: on a non-Linux system, or when the build fails, the engine falls back
// to plain fs calls, so a failed build warns and exits 0 unless SOLIFUGE_NATIVE_REQUIRED=1.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);

if (process.platform !== 'linux') {
  console.log('solifuge: native addon skipped (not Linux); using the JavaScript fallback');
  process.exit(0);
}

function findNodeDir() {
  const fromNpm = process.env.npm_config_nodedir;
  if (fromNpm && existsSync(path.join(fromNpm, 'include', 'node', 'common.gypi'))) return fromNpm;
  const prefix = path.resolve(path.dirname(process.execPath), '..');
  if (existsSync(path.join(prefix, 'include', 'node', 'common.gypi'))) return prefix;
  return undefined;
}

function findNodeGyp() {
  try {
    return require.resolve('node-gyp/bin/node-gyp.js', { paths: [root] });
  } catch {
    return process.env.npm_config_node_gyp;
  }
}

const gyp = findNodeGyp();
if (!gyp) {
  console.warn('solifuge: node-gyp not found; native addon not built (JavaScript fallback in use)');
  process.exit(process.env.SOLIFUGE_NATIVE_REQUIRED === '1' ? 1 : 0);
}
const args = [gyp, 'rebuild'];
const nodeDir = findNodeDir();
if (nodeDir) args.push(`--nodedir=${nodeDir}`);
const result = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit' });
if (result.status !== 0) {
  console.warn('solifuge: native addon build failed; the JavaScript fallback will be used');
  process.exit(process.env.SOLIFUGE_NATIVE_REQUIRED === '1' ? 1 : 0);
}
