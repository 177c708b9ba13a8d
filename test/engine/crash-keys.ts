// Keys and values of crash-batch-child.ts, shared with the test that checks them: key i sits at a
// scrambled place in key order, so every batch touches leaves all over the tree.
export const crashKey = (i: number): string => `${(Math.imul(i, 2654435761) >>> 0).toString(16).padStart(8, '0')}:${i}`;
export const crashValue = (i: number): Buffer => Buffer.alloc(100, i & 0xff);
