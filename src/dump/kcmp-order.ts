// Finding which known kernel object (mm, fd table, fs, sighand, open file description) a task's
// object is, by a search instead of one kcmp per known object. kcmp(2) orders objects (0 same, 1
// first lower, 2 first higher) by a fixed bijection of their addresses, so the known objects are
// kept sorted by that order and each round compares with PIVOTS evenly spaced members of the
// interval still open. Comparing with every known object made a tree dump O(tasks^2) (tree-4000:
// 4,000 kcmp per kind for the last task). crr runs kcmp itself (native kcmp: a syscall, no
// round trip), so rounds are cheap and few pivots pay: 3 a round, 18 kcmp for 4,096 objects
// where 64 a round (when each round was a batch injected into the task) took ~80. More than one
// pivot lets a round catch an inconsistent order (a later pivot answering against an earlier).
import { native } from '../actors/native.js';
import { StageError } from '../errors.js';

/** Members compared per search and round: 3 narrow the interval to a quarter. */
export const PIVOTS = 3;

/** kcmp(2) results: the member's object is the new one, lower than it, or higher. */
const SAME = 0;
const LOWER = 1;
const HIGHER = 2;

/** Objects of one kind sorted by kcmp order, each with what it stands for (a task, an fd; an id). */
export class KcmpSorted<M> {
  readonly members: M[] = [];
}

/** One object being looked up in a KcmpSorted list. */
export class KcmpSearch<M> {
  private lo = 0;
  private hi: number;
  private asked: number[] = [];
  found: M | undefined;

  constructor(readonly list: KcmpSorted<M>) {
    this.hi = list.members.length;
  }

  get done(): boolean {
    return this.found !== undefined || this.lo >= this.hi;
  }

  /** The members to compare with in this round (kcmp(member, new object)). */
  pivots(): M[] {
    const n = this.hi - this.lo;
    this.asked =
      n <= PIVOTS
        ? Array.from({ length: n }, (_, i) => this.lo + i)
        : Array.from({ length: PIVOTS }, (_, i) => this.lo + Math.floor(((i + 1) * n) / (PIVOTS + 1)));
    return this.asked.map((i) => this.list.members[i]!);
  }

  /** Narrows the interval by this round's kcmp results, in pivots() order. */
  answer(results: ReadonlyArray<number>, describe: () => string): void {
    let lo = this.lo;
    let hi = this.hi;
    results.forEach((r, k) => {
      const at = this.asked[k]!;
      if (r === SAME) this.found = this.list.members[at];
      else if (r === LOWER) lo = Math.max(lo, at + 1);
      else if (r === HIGHER) hi = Math.min(hi, at);
      else throw new Error(`kcmp gave ${r} for ${describe()}`);
    });
    if (this.found === undefined && lo > hi) throw new Error(`kcmp order is inconsistent for ${describe()}`);
    this.lo = lo;
    this.hi = hi;
  }

  /** Adds the object not found to the list, where its order puts it. */
  insert(member: M): void {
    if (!this.done || this.found !== undefined) throw new Error('internal: insert before the search ended, or of a known object');
    this.list.members.splice(this.lo, 0, member);
  }
}

/**
 * Runs searches to their end: each round asks `compare` for every pending search's pivots at
 * once, answering kcmp codes in the same order.
 */
export async function runSearches<M>(searches: Array<KcmpSearch<M>>, compare: (pairs: Array<{ search: number; member: M }>) => Promise<number[]>, describe: (search: number) => string): Promise<void> {
  for (;;) {
    const pending = searches.map((s, i) => [s, i] as const).filter(([s]) => !s.done);
    if (!pending.length) return;
    const asks = pending.map(([s, i]) => ({ i, members: s.pivots() }));
    const pairs = asks.flatMap((a) => a.members.map((member) => ({ search: a.i, member })));
    const codes = await compare(pairs);
    let at = 0;
    for (const a of asks) {
      searches[a.i]!.answer(codes.slice(at, at + a.members.length), () => describe(a.i));
      at += a.members.length;
    }
  }
}

/**
 * kcmp(2) of each [pid1, pid2, type, idx1, idx2] (PIDs as crr sees them), run by crr itself: codes
 * 0-3; a failed kcmp is an error naming the task `pid` it was for.
 */
export function kcmpCodes(comparisons: ReadonlyArray<readonly [number, number, number, number, number]>, pid: number): number[] {
  const results = native.kcmp(Int32Array.from(comparisons.flat()));
  return Array.from(results, (r) => {
    if (r < 0) throw new StageError({ stage: 'dump', pid, syscall: 'kcmp', errno: -r, message: 'cannot compare kernel objects with kcmp' });
    return r;
  });
}
