// Invariant assertions for the consensus core.
//
// Owns: the one way the core reports a broken invariant (a programmer error, never an operating
// error). Assertions stay on in production (style.md §3.4); nothing may catch `AssertionError`.

export class AssertionError extends Error {
  override readonly name = 'AssertionError';
}

export function assert(condition: boolean, message: string): asserts condition {
  if (!condition) throw new AssertionError(message);
}

export function unreachable(value: never, what: string): never {
  throw new AssertionError(`unhandled ${what}: ${JSON.stringify(value)}`);
}
