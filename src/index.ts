//! Solifuge: the embedded engine's public surface. `import { open } from 'solifuge'`.
export { open, Db, Snapshot, Transaction, DEFAULTS } from './engine/db.js';
export type { OpenOptions, RangeOptions, TransactionOptions, Reader } from './engine/db.js';
export type { CheckReport } from './engine/check.js';
export {
  SolifugeError, KeyTooLargeError, ValueTooLargeError, BadArgumentError, NotASolifugeFileError,
  UnsupportedVersionError, CorruptionError, LockedError, ClosedError, IoFailedError, CommitTooLargeError,
} from './engine/errors.js';
export type { KeyInput, ValueInput } from './engine/keys.js';
export type { ValueSource, SendValueOptions, SendValueResult } from './engine/get-with.js';
export { ZeroCopyError } from './native/send-file.js';
export type { CompactOptions, CompactProgress, CompactResult, AutoCompactOptions } from './engine/compaction.js';
