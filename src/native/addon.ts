//! Loads the optional native addon (build/Release/zerocopy.node, built by `npm install`).
//!
//! Owns: finding and loading the addon once, and its typed surface. `addon` is null when the
//! addon is absent (not Linux, build failed) or disabled with SOLIFUGE_NATIVE=0; every caller
//! must have a plain-fs fallback. Native calls return 0/bytes or -errno and never throw on
//! system errors (style.md §3.4); wrappers turn negative results into typed errors.
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

export interface NativeAddon {
  /** flock(2) on fd: 0 or -errno (-EWOULDBLOCK when held elsewhere and nonBlocking). */
  flock(fd: number, exclusive: boolean, nonBlocking: boolean): number;
  funlock(fd: number): number;
}

function loadAddon(): NativeAddon | null {
  if (process.env.SOLIFUGE_NATIVE === '0') return null;
  if (process.platform !== 'linux') return null;
  const require = createRequire(import.meta.url);
  // src/native/addon.ts and dist/native/addon.js both sit two levels below the package root.
  const file = fileURLToPath(new URL('../../build/Release/zerocopy.node', import.meta.url));
  try {
    return require(file) as NativeAddon;
  } catch {
    return null;
  }
}

export const addon: NativeAddon | null = loadAddon();
