//! Typed errors of the engine.
//!
//! Operating errors (bad input, a file that is not ours, corruption, a lock held elsewhere) are
//! instances of `SolifugeError` with a stable `code`; where Arakoon has a return code for the same
//! condition (spec/arakoon-client-protocol.md, return codes) it is carried in `arakoonCode`, so the
//! cluster can answer clients without a translation table. Broken invariants are `AssertionError`s
//! (see `assert`), which nobody catches and which stay on in production (style.md §3.4).

export type EngineErrorCode =
  | 'KEY_TOO_LARGE'
  | 'VALUE_TOO_LARGE'
  | 'BAD_ARGUMENT'
  | 'NOT_A_SOLIFUGE_FILE'
  | 'UNSUPPORTED_VERSION'
  | 'CORRUPTION'
  | 'LOCKED'
  | 'CLOSED'
  | 'IO_FAILED'
  | 'COMMIT_TOO_LARGE';

export class SolifugeError extends Error {
  readonly code: EngineErrorCode;
  /** Arakoon's return code for this condition, when there is one. */
  readonly arakoonCode: number | undefined;
  constructor(code: EngineErrorCode, message: string, arakoonCode?: number) {
    super(message);
    this.name = new.target.name;
    this.code = code;
    this.arakoonCode = arakoonCode;
  }
}

// Arakoon return codes used below (spec/arakoon-client-protocol.md §7): 0x26 E_BAD_INPUT,
// 0xff E_UNKNOWN_FAILURE.
const E_UNKNOWN_FAILURE = 0xff;
const E_BAD_INPUT = 0x26;

export class KeyTooLargeError extends SolifugeError {
  constructor(readonly keyBytes: number, readonly maxKeyBytes: number) {
    super('KEY_TOO_LARGE', `key of ${keyBytes} bytes exceeds the limit of ${maxKeyBytes} bytes`, E_BAD_INPUT);
  }
}

export class ValueTooLargeError extends SolifugeError {
  constructor(readonly valueBytes: number, readonly maxValueBytes: number) {
    super('VALUE_TOO_LARGE', `value of ${valueBytes} bytes exceeds the limit of ${maxValueBytes} bytes`, E_BAD_INPUT);
  }
}

export class BadArgumentError extends SolifugeError {
  constructor(message: string) {
    super('BAD_ARGUMENT', message, E_BAD_INPUT);
  }
}

export class NotASolifugeFileError extends SolifugeError {
  constructor(readonly path: string, detail: string) {
    super('NOT_A_SOLIFUGE_FILE', `${path} is not a Solifuge data file: ${detail}`);
  }
}

export class UnsupportedVersionError extends SolifugeError {
  constructor(readonly path: string, readonly version: number, readonly supported: number) {
    super('UNSUPPORTED_VERSION', `${path} has format version ${version}; this build reads versions up to ${supported}`);
  }
}

/** Bytes that fail their checksum or structure. Never served as data. */
export class CorruptionError extends SolifugeError {
  constructor(readonly offset: number, detail: string) {
    super('CORRUPTION', `corruption at offset ${offset}: ${detail}`, E_UNKNOWN_FAILURE);
  }
}

/**
 * An index node whose child is not before it in the file (children are written before their
 * parents): a damaged or hostile file, refused on every descent so that a cycle cannot loop
 * (tree.ts, the rule; wasm-cache.ts, the WebAssembly descent).
 */
export function childNotOlder(parentPos: number, childPos: number): CorruptionError {
  return new CorruptionError(parentPos, `index node refers to a child at ${childPos}, not before it (children are written before their parents)`);
}

export class LockedError extends SolifugeError {
  constructor(readonly lockedPath: string, detail: string) {
    super('LOCKED', `${lockedPath} is already open ${detail}`);
  }
}

export class ClosedError extends SolifugeError {
  constructor(what = 'database') {
    super('CLOSED', `the ${what} is closed`);
  }
}

/** A write or sync failed; the store refuses further writes until reopened (its tail is unknown). */
export class IoFailedError extends SolifugeError {
  constructor(detail: string, override readonly cause?: unknown) {
    super('IO_FAILED', `I/O failed, the store is read-only until reopened: ${detail}`, E_UNKNOWN_FAILURE);
  }
}

/**
 * A batch whose slab would not fit the encoder's linear memory (values adding up to about 1 GiB in
 * one commit): refused whole before anything is written, and the store goes on.
 */
export class CommitTooLargeError extends SolifugeError {
  constructor(detail: string, override readonly cause?: unknown) {
    super('COMMIT_TOO_LARGE', `the commit is too large for one slab, nothing was written: ${detail}`, E_BAD_INPUT);
  }
}

export class AssertionError extends Error {
  constructor(message: string) {
    super(`assertion failed: ${message}`);
    this.name = 'AssertionError';
  }
}

export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new AssertionError(message);
}
