// The sorted-VMA lookups of the address-space plan (binary search instead of a scan of every VMA
// per run): same answers as the plain scans on a random layout, and linear-ish time at 20,000
// VMAs (the 10,000-thread restore's stacks and guard pages).
import t from 'tap';
import { PE_PRESENT, type PagemapRun } from '../src/images/index.js';
import { addAdvice, byStart, firstEndingAfter, presentRuns, vmaHolding, vmasWithPages, type PageRun, type Vma } from '../src/restore/remote-vma.js';
import { splitRuns, vmasHoldingRuns } from '../src/restore/remote-uffd.js';
import { RemoteBatch } from '../src/restore/remote.js';
import { SYS } from '../src/restore/remote-sys.js';

const PAGE = 4096n;
const vma = (start: bigint, end: bigint): Vma => ({ start, end, pgoff: 0n, shmid: 0, prot: 3, flags: 0x22, status: 1 | (1 << 9), madv: 0n });

// Deterministic pseudo-random layout: gaps, adjacent VMAs, runs crossing VMA edges and gaps.
function layout(count: number, seed: number): { vmas: Vma[]; runs: PagemapRun[] } {
  let x = seed;
  const rand = (n: number) => ((x = (x * 1103515245 + 12345) % 2147483648), x % n);
  const vmas: Vma[] = [];
  let at = 0x10000n;
  for (let i = 0; i < count; i++) {
    at += BigInt(rand(3)) * PAGE;
    const end = at + BigInt(1 + rand(8)) * PAGE;
    vmas.push(vma(at, end));
    at = end;
  }
  const runs: PagemapRun[] = [];
  let offset = 0;
  for (let p = 0x10000n; p < at; ) {
    p += BigInt(rand(6)) * PAGE;
    const nrPages = 1 + rand(10);
    runs.push({ vaddr: p, nrPages, flags: rand(5) === 0 ? 0 : PE_PRESENT, pagesOffset: offset } as PagemapRun);
    offset += nrPages * 4096;
    p += BigInt(nrPages) * PAGE;
  }
  // Shuffled VMAs: the lookups must not depend on the caller's order.
  for (let i = vmas.length - 1; i > 0; i--) {
    const j = rand(i + 1);
    [vmas[i], vmas[j]] = [vmas[j]!, vmas[i]!];
  }
  return { vmas, runs };
}

function naivePresentRuns(runs: readonly PagemapRun[], mapped: readonly Vma[]): PageRun[] {
  const vmas = byStart(mapped);
  const out: PageRun[] = [];
  for (const run of runs) {
    if (!(run.flags & PE_PRESENT)) continue;
    const end = run.vaddr + BigInt(run.nrPages) * PAGE;
    for (const v of vmas) {
      const s = run.vaddr > v.start ? run.vaddr : v.start;
      const e = end < v.end ? end : v.end;
      if (s < e) out.push({ start: s, end: e, fileOffset: run.pagesOffset + Number(s - run.vaddr) });
    }
  }
  return out;
}

t.test('binary search edges', async (t) => {
  const sorted = byStart([vma(0x3000n, 0x4000n), vma(0x1000n, 0x2000n), vma(0x2000n, 0x3000n)]);
  t.same(sorted.map((v) => v.start), [0x1000n, 0x2000n, 0x3000n]);
  t.equal(firstEndingAfter(sorted, 0n), 0);
  t.equal(firstEndingAfter(sorted, 0x1fffn), 0);
  t.equal(firstEndingAfter(sorted, 0x2000n), 1, 'a VMA ending at the address does not hold it');
  t.equal(firstEndingAfter(sorted, 0x4000n), 3);
  t.equal(vmaHolding(sorted, 0x2000n, 0x3000n), sorted[1]);
  t.equal(vmaHolding(sorted, 0x2000n, 0x3001n), undefined, 'a range crossing into the next VMA');
  t.equal(vmaHolding([vma(0x5000n, 0x6000n)], 0x1000n, 0x2000n), undefined, 'before every VMA');
});

t.test('same answers as the plain scans', async (t) => {
  for (const seed of [1, 7, 42]) {
    const { vmas, runs } = layout(300, seed);
    const got = presentRuns(runs, vmas);
    t.same(got, naivePresentRuns(runs, vmas), `presentRuns, seed ${seed}`);
    t.ok(got.length > 100, 'the layout has runs inside VMAs');
    const filled = vmasWithPages(vmas, got);
    const naiveFilled = vmas.filter((v) => got.some((r) => r.start < v.end && r.end > v.start));
    t.same([...filled].sort((a, b) => (a.start < b.start ? -1 : 1)), byStart(naiveFilled), `vmasWithPages, seed ${seed}`);
    const some = vmas.filter((_, i) => i % 3 === 0);
    t.same(vmasHoldingRuns(some, got), some.filter((v) => got.some((r) => r.start >= v.start && r.end <= v.end)), `vmasHoldingRuns, seed ${seed}`);
    const split = splitRuns(got, some);
    t.same(split.copy, got.filter((r) => some.some((v) => r.start >= v.start && r.end <= v.end)), `splitRuns copy, seed ${seed}`);
    t.equal(split.copy.length + split.read.length, got.length);
  }
});

t.test('20,000 VMAs plan in well under a second', async (t) => {
  const { vmas, runs } = layout(20_000, 3);
  const t0 = performance.now();
  const got = presentRuns(runs, vmas);
  const filled = vmasWithPages(vmas, got);
  const split = splitRuns(got, vmasHoldingRuns(vmas, got));
  const ms = performance.now() - t0;
  t.ok(filled.size > 10_000 && split.copy.length === got.length, 'every clipped run is inside a VMA');
  // The quadratic scans took seconds here (12 s at 10,000 threads in the restore).
  t.ok(ms < 1500, `took ${ms.toFixed(0)} ms`);
});

t.test('VMAs with few pages are left to preadv', async (t) => {
  const small = vma(0x10000n, 0x20000n);
  const big = vma(0x100000n, 0x400000n);
  const runs: PageRun[] = [
    { start: 0x10000n, end: 0x12000n, fileOffset: 0 },
    { start: 0x100000n, end: 0x180000n, fileOffset: 0x2000 },
    { start: 0x200000n, end: 0x280000n, fileOffset: 0x82000 },
  ];
  t.same(vmasHoldingRuns([small, big], runs), [small, big], 'any bytes by default');
  t.same(vmasHoldingRuns([small, big], runs, 1 << 20), [big], 'two runs of 512 KiB add up to 1 MiB');
  t.same(vmasHoldingRuns([small, big], runs, (1 << 20) + 1), [], 'below the threshold');
});

t.test('madvise bits on both sides of bit 32, none for a VMA without advice', async (t) => {
  const b = new RemoteBatch(0x10000n);
  addAdvice(b, { ...vma(0x1000n, 0x3000n), madv: (1n << 14n) | (1n << 31n) | (1n << 40n) });
  addAdvice(b, vma(0x5000n, 0x6000n));
  const cmds = b.layout()[0]!.commands;
  t.same(cmds.map((c) => [c.nr, Number(c.args[0]), Number(c.args[1]), Number(c.args[2])]), [
    [SYS.madvise, 0x1000, 0x2000, 14],
    [SYS.madvise, 0x1000, 0x2000, 31],
    [SYS.madvise, 0x1000, 0x2000, 40],
  ]);
});
