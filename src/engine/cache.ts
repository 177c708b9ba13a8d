//! Decoded nodes read straight from the file: the structural check's walk (check.ts), compaction's
//! postcondition (db.ts) and the tools that inspect a file. The store itself reads and writes its
//! tree in WebAssembly memory (store-tree.ts); nothing here is cached.
import { decodeIndexBody, decodeLeafBody } from './codec.js';
import { readNodeEntry } from './entry.js';
import { ENTRY_HEADER_BYTES, Kind } from './format.js';
import type { FileLog } from './log-file.js';
import type { TreeNode } from './node.js';

/** Reads, verifies and decodes the node entry at `pos`. */
export function readNode(log: FileLog, pos: number, len: number): TreeNode {
  const e = readNodeEntry(log, pos, len);
  const node: TreeNode =
    e.kind === Kind.Leaf ? decodeLeafBody(e.buf, ENTRY_HEADER_BYTES, len, pos) : decodeIndexBody(e.buf, ENTRY_HEADER_BYTES, len, pos);
  node.pos = pos;
  node.len = len;
  return node;
}
