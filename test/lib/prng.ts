// A small deterministic PRNG (xorshift32) for generated test cases, so a failing case can be
// found again from its seed.
export function prng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 0x100000000;
  };
}
