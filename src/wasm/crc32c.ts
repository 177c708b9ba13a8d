//! CRC32C of JS bytes, computed by the WebAssembly core (asm/crc32c.ts).
//!
//! Bytes are copied into linear memory first (a memcpy at ~10 GB/s, cheap beside the checksum);
//! callers that build data in linear memory can call `core.crc32c(ptr, len)` directly.
import { core, scratch } from './module.js';

export function crc32c(bytes: Uint8Array, start = 0, end = bytes.length): number {
  const len = end - start;
  const { ptr, view } = scratch(len);
  view.set(bytes.subarray(start, end), 0);
  return core.crc32c(ptr, len) >>> 0;
}

/** Extends a running CRC32C (start with 0) by more bytes. */
export function crc32cUpdate(crc: number, bytes: Uint8Array, start = 0, end = bytes.length): number {
  const len = end - start;
  const { ptr, view } = scratch(len);
  view.set(bytes.subarray(start, end), 0);
  return core.crc32cUpdate(crc, ptr, len) >>> 0;
}
