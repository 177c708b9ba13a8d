// The simulator's seeded PRNG: xoshiro128** over u32 halves, seeded through splitmix32.
//
// Owns: every random draw of a simulation. Never Math.random. Each component takes its own
// sub-stream (`fork(label)`), so changing how one component draws leaves the others' draws alone
// (style.md §3.6).

function splitmix32(state: number): [number, number] {
  const s = (state + 0x9e3779b9) >>> 0;
  let z = s;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
  return [s, (z ^ (z >>> 16)) >>> 0];
}

function hashLabel(label: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < label.length; i++) h = Math.imul(h ^ label.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

export class Prng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  private readonly seed: number;

  constructor(seed: number) {
    this.seed = seed;
    let s = seed >>> 0;
    let x: number;
    [s, x] = splitmix32(s ^ Math.floor(seed / 2 ** 32));
    this.a = x;
    [s, x] = splitmix32(s);
    this.b = x;
    [s, x] = splitmix32(s);
    this.c = x;
    [s, x] = splitmix32(s);
    this.d = x | 1;
  }

  /** A uniform u32. */
  nextU32(): number {
    const result = Math.imul(rotl(Math.imul(this.b, 5) >>> 0, 7), 9) >>> 0;
    const t = (this.b << 9) >>> 0;
    this.c ^= this.a;
    this.d ^= this.b;
    this.b ^= this.c;
    this.a ^= this.d;
    this.c ^= t;
    this.d = rotl(this.d, 11);
    this.a >>>= 0;
    this.b >>>= 0;
    this.c >>>= 0;
    this.d >>>= 0;
    return result;
  }

  /** Uniform in [0, 1). */
  float(): number {
    return this.nextU32() / 2 ** 32;
  }

  /** Uniform integer in [lo, hi] inclusive. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.float() * (hi - lo + 1));
  }

  chance(p: number): boolean {
    return this.float() < p;
  }

  pick<T>(xs: readonly T[]): T {
    if (xs.length === 0) throw new Error('pick from empty list');
    return xs[this.int(0, xs.length - 1)];
  }

  shuffle<T>(xs: T[]): T[] {
    for (let i = xs.length - 1; i > 0; i--) {
      const j = this.int(0, i);
      [xs[i], xs[j]] = [xs[j], xs[i]];
    }
    return xs;
  }

  /** An independent stream derived from this one's seed material and a label. */
  fork(label: string): Prng {
    // Depends only on the seed and the label, never on how much this stream has drawn.
    return new Prng(((hashLabel(label) ^ (this.seed >>> 0)) >>> 0) + (hashLabel(`${label}#${this.seed}`) % 2 ** 20) * 2 ** 32);
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}
