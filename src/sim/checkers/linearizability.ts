// A linearizability checker for per-key register histories (Wing & Gong search with Lowe's
// memoisation, the algorithm Porcupine uses).
//
// Owns: deciding whether invoke/return pairs on ONE key could have happened in some sequential
// order consistent with real time. Keys are independent registers, so the history is checked per
// key, which keeps the search small.
// Ops whose outcome is unknown (the client gave up) have return time +∞: they may take effect at
// any moment after their invocation, or never. Reads that never returned are left out.

export type RegisterOp =
  | { readonly kind: 'set'; readonly value: number }
  | { readonly kind: 'delete' }
  | { readonly kind: 'get' };

export interface HistoryOp {
  readonly clientId: number;
  readonly key: number;
  readonly op: RegisterOp;
  readonly invokeUs: number;
  /** +∞ when the outcome is unknown. */
  returnUs: number;
  /** The value seen: prior value for set/delete, current value for get. Undefined if unknown. */
  result: number | null | undefined;
}

interface Node {
  readonly isCall: boolean;
  readonly id: number;
  readonly time: number;
  prev: Node | null;
  next: Node | null;
  match: Node | null;
}

type Reg = number | null;

function stepModel(state: Reg, h: HistoryOp): { ok: boolean; next: Reg } {
  const known = h.result !== undefined;
  switch (h.op.kind) {
    case 'set':
      return { ok: !known || h.result === state, next: h.op.value };
    case 'delete':
      return { ok: !known || h.result === state, next: null };
    case 'get':
      return { ok: !known || h.result === state, next: state };
    default: {
      const never: never = h.op;
      throw new Error(`bad op ${JSON.stringify(never)}`);
    }
  }
}

/** True when the single-key history is linearizable from an initially absent value. */
export function isLinearizable(history: readonly HistoryOp[], budget = 2_000_000): boolean | 'unknown' {
  const ops = history.filter((h) => !(h.op.kind === 'get' && h.returnUs === Infinity));
  const n = ops.length;
  if (n === 0) return true;
  const events: Node[] = [];
  for (let i = 0; i < n; i++) {
    const call: Node = { isCall: true, id: i, time: ops[i].invokeUs, prev: null, next: null, match: null };
    const ret: Node = { isCall: false, id: i, time: ops[i].returnUs, prev: null, next: null, match: null };
    call.match = ret;
    events.push(call, ret);
  }
  // Calls before returns at equal times: the more permissive reading of a tie.
  events.sort((a, b) => a.time - b.time || (a.isCall === b.isCall ? a.id - b.id : a.isCall ? -1 : 1));
  const head: Node = { isCall: false, id: -1, time: -Infinity, prev: null, next: null, match: null };
  let prev = head;
  for (const e of events) {
    prev.next = e;
    e.prev = prev;
    prev = e;
  }
  const completed = ops.filter((h) => h.returnUs !== Infinity).length;
  const lin = new Uint8Array(n);
  let linCompleted = 0;
  const cache = new Set<string>();
  const stack: { call: Node; state: Reg }[] = [];
  let state: Reg = null;
  let entry: Node | null = head.next;
  let steps = 0;

  const lift = (call: Node): void => {
    call.prev!.next = call.next;
    if (call.next) call.next.prev = call.prev;
    const ret = call.match!;
    ret.prev!.next = ret.next;
    if (ret.next) ret.next.prev = ret.prev;
  };
  const unlift = (call: Node): void => {
    const ret = call.match!;
    ret.prev!.next = ret;
    if (ret.next) ret.next.prev = ret;
    call.prev!.next = call;
    if (call.next) call.next.prev = call;
  };

  for (;;) {
    if (linCompleted === completed) return true;
    if (++steps > budget) return 'unknown';
    if (entry === null) return false;
    if (entry.isCall) {
      const h = ops[entry.id];
      const r = stepModel(state, h);
      if (r.ok) {
        lin[entry.id] = 1;
        const key = `${lin.join('')}|${r.next}`;
        if (!cache.has(key)) {
          cache.add(key);
          stack.push({ call: entry, state });
          state = r.next;
          if (h.returnUs !== Infinity) linCompleted++;
          lift(entry);
          entry = head.next;
          continue;
        }
        lin[entry.id] = 0;
      }
      entry = entry.next;
    } else {
      // A return reached before its call was linearized: undo the latest choice.
      const top = stack.pop();
      if (top === undefined) return false;
      state = top.state;
      lin[top.call.id] = 0;
      if (ops[top.call.id].returnUs !== Infinity) linCompleted--;
      unlift(top.call);
      entry = top.call.next;
    }
  }
}
