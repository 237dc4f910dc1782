// The page scan: buildRuns (u32 fast path over pagemap words) must pick exactly the pages the
// per-page rule pageIsDumped picks, and merge them into the same runs, for random pagemaps.
// The page write: writePages with a reader into reused buffers writes the same bytes as with a
// reader returning fresh ones, and never holds more than depth + 1 buffers; with a parent
// checkpoint it writes only the pages the parent does not hold as they are.
import t from 'tap';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildRuns, pageIsDumped, startPagesWrite, vmaCanBeLazy, writePages, PE, type PageRun } from '../src/dump/pages.js';
import { VMA, type DumpVma } from '../src/dump/mm.js';

function vma(start: bigint, pages: number, status: number, flags: number): DumpVma {
  return { entry: {}, start, end: start + BigInt(pages) * 4096n, status, flags, path: '', offset: 0n };
}

/** The reference: one BigInt test per page, runs merged across VMAs with equal flags. */
function reference(vmas: DumpVma[], words: Map<bigint, BigUint64Array>, zeroPfn?: bigint): PageRun[] {
  const runs: PageRun[] = [];
  for (const v of vmas) {
    const w = words.get(v.start)!;
    const flags = vmaCanBeLazy(v) ? PE.LAZY | PE.PRESENT : PE.PRESENT;
    for (let i = 0; i < w.length; i++) {
      if (!pageIsDumped(v, w[i]!, zeroPfn)) continue;
      const addr = v.start + BigInt(i) * 4096n;
      const last = runs[runs.length - 1];
      if (last && last.flags === flags && last.vaddr + BigInt(last.nrPages) * 4096n === addr) last.nrPages++;
      else runs.push({ vaddr: addr, nrPages: 1, flags });
    }
  }
  return runs;
}

t.test('fast scan equals the per-page rule', async (t) => {
  let seed = 12345;
  const rnd = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  const zeroPfn = 0x123456789an;
  const kinds: Array<[number, number]> = [
    [VMA.REGULAR | VMA.ANON_PRIVATE, 0x22],
    [VMA.REGULAR | VMA.FILE_PRIVATE, 0x2],
    [VMA.REGULAR | VMA.ANON_PRIVATE | VMA.VDSO, 0x22],
  ];
  for (let round = 0; round < 20; round++) {
    const vmas: DumpVma[] = [];
    const words = new Map<bigint, BigUint64Array>();
    let at = 0x10000000n;
    for (let k = 0; k < 6; k++) {
      const pages = 1 + Math.floor(rnd() * 300);
      const [status, flags] = kinds[Math.floor(rnd() * kinds.length)]!;
      const v = vma(at, pages, status, flags);
      const w = new BigUint64Array(pages);
      for (let i = 0; i < pages; i++) {
        const r = rnd();
        const pfn = r < 0.2 ? zeroPfn : BigInt(Math.floor(rnd() * 2 ** 40));
        w[i] = (r < 0.6 ? 1n << 63n : 0n) | (rnd() < 0.1 ? 1n << 62n : 0n) | (rnd() < 0.3 ? 1n << 61n : 0n) | pfn;
      }
      vmas.push(v);
      words.set(at, w);
      at = v.end + (rnd() < 0.5 ? 0n : 4096n);
    }
    const fast = buildRuns(vmas, (s) => words.get(s)!, zeroPfn);
    t.same(fast, reference(vmas, words, zeroPfn), `round ${round}`);
    t.ok(fast.length > 0, 'some runs');
  }
});

t.test('a VMA of terabytes is scanned a slice at a time; one smaps shows untouched is not scanned', async (t) => {
  const SLICE = 1 << 18;
  const huge = vma(0x7f0000000000n, 4 * SLICE + 5, VMA.REGULAR | VMA.ANON_PRIVATE, 0x22);
  const empty = { ...vma(huge.end + 0x1000n, 1 << 28, VMA.REGULAR | VMA.ANON_PRIVATE, 0x22), touched: false };
  // Present pages (by index in the huge VMA): a run across the first slice's end, and the last page.
  const present = new Set([SLICE - 1, SLICE, 4 * SLICE + 4]);
  const calls: Array<[bigint, number]> = [];
  const runs = buildRuns([huge, empty], (start, pages) => {
    calls.push([start, pages]);
    const first = Number((start - huge.start) / 4096n);
    const w = new BigUint64Array(pages);
    for (let i = 0; i < pages; i++) if (present.has(first + i)) w[i] = (1n << 63n) | BigInt(first + i + 1000);
    return w;
  });
  t.ok(calls.every(([, n]) => n <= SLICE), 'no read of more than a slice');
  t.equal(calls.reduce((n, [, p]) => n + p, 0), 4 * SLICE + 5, 'every page of the huge VMA read once');
  t.notOk(calls.some(([s]) => s >= empty.start), 'the untouched VMA not read');
  t.same(runs, [
    { vaddr: huge.start + BigInt(SLICE - 1) * 4096n, nrPages: 2, flags: PE.LAZY | PE.PRESENT },
    { vaddr: huge.start + BigInt(4 * SLICE + 4) * 4096n, nrPages: 1, flags: PE.LAZY | PE.PRESENT },
  ], 'a run across slices is one run');
});

t.test('writePages: reused buffers write the same bytes, at most depth + 1 of them', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'crr-dump-pages-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  // A fake address space: the byte at address a is (a / 4096 * 7 + a) & 255.
  const byteAt = (a: bigint) => Number(((a / 4096n) * 7n + a) & 255n);
  const fill = (iovs: Array<{ addr: bigint; len: number }>, buf: Buffer) => {
    let o = 0;
    for (const { addr, len } of iovs) for (let i = 0; i < len; i++) buf[o++] = byteAt(addr + BigInt(i));
    return o;
  };
  const runs: PageRun[] = [
    { vaddr: 0x10000n, nrPages: 5, flags: PE.PRESENT },
    { vaddr: 0x40000n, nrPages: 9, flags: PE.PRESENT },
  ];
  const fresh = join(dir, 'fresh.img');
  const reused = join(dir, 'reused.img');
  const chunk = 3 * 4096;
  t.equal(await writePages(fresh, runs, (iovs) => {
    const buf = Buffer.alloc(iovs.reduce((n, i) => n + i.len, 0));
    fill(iovs, buf);
    return buf;
  }, chunk, 2), 14 * 4096);
  const seen = new Set<Buffer>();
  t.equal(await writePages(reused, runs, { into: (iovs, buf) => (seen.add(buf), fill(iovs, buf)) }, chunk, 2), 14 * 4096);
  const want = readFileSync(fresh);
  t.equal(want[5 * 4096 + 1], byteAt(0x40001n), 'the second run follows the first in the file');
  t.ok(readFileSync(reused).equals(want), 'same file bytes');
  t.ok(seen.size >= 1 && seen.size <= 3, `buffers used: ${seen.size} (depth 2 allows 3)`);
});

t.test('an incremental dump writes only the pages its parent does not hold as they are', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'crr-pages-parent-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const page = (byte: number) => Buffer.alloc(4096, byte);
  // The task: 4 pages at 0x10000 (lazy-able anonymous memory) and one at 0x20000.
  const memory = new Map<bigint, Buffer>([[0x10000n, page(1)], [0x11000n, page(2)], [0x12000n, page(3)], [0x13000n, page(4)], [0x20000n, page(5)]]);
  const runs: PageRun[] = [
    { vaddr: 0x10000n, nrPages: 4, flags: PE.PRESENT | PE.LAZY },
    { vaddr: 0x20000n, nrPages: 1, flags: PE.PRESENT },
  ];
  // The parent holds 0x10000 as it is, 0x11000 with other bytes, nothing at 0x12000, 0x13000 and 0x20000 as they are (another file).
  const older = join(dir, 'older.img');
  const oldest = join(dir, 'oldest.img');
  writeFileSync(older, Buffer.concat([page(1), page(9)]));
  writeFileSync(oldest, Buffer.concat([page(7), page(4), page(5)]));
  const fds = [openSync(older, 'r'), openSync(oldest, 'r')];
  t.teardown(() => fds.forEach((fd) => closeSync(fd)));
  const parent = {
    pieces: [
      { vaddr: 0x10000n, end: 0x12000n, fd: fds[0]!, offset: 0 },
      { vaddr: 0x13000n, end: 0x14000n, fd: fds[1]!, offset: 4096 },
      { vaddr: 0x20000n, end: 0x21000n, fd: fds[1]!, offset: 8192 },
    ],
  };
  const into = (iovs: Array<{ addr: bigint; len: number }>, buf: Buffer) => {
    let o = 0;
    for (const { addr, len } of iovs) for (let a = 0; a < len; a += 4096) o += memory.get(addr + BigInt(a))!.copy(buf, o);
    return o;
  };
  const path = join(dir, 'pages.img');
  // Chunks of 2 pages: pieces and runs cross chunk bounds.
  const { bytes, runs: pagemap, flushed } = await startPagesWrite(path, runs, { into }, { chunkBytes: 2 * 4096, depth: 2, parent });
  await flushed;
  t.equal(bytes, 2 * 4096, 'two pages written');
  t.ok(readFileSync(path).equals(Buffer.concat([page(2), page(3)])), 'the changed page and the one the parent lacks');
  t.same(pagemap, [
    { vaddr: 0x10000n, nrPages: 1, flags: PE.PARENT },
    { vaddr: 0x11000n, nrPages: 2, flags: PE.PRESENT | PE.LAZY },
    { vaddr: 0x13000n, nrPages: 1, flags: PE.PARENT },
    { vaddr: 0x20000n, nrPages: 1, flags: PE.PARENT },
  ], 'PE_PARENT where the parent holds the page, the dumped flags elsewhere');
});
