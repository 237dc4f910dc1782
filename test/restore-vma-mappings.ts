// addMappings (src/restore/remote-vma.ts): runs of adjacent private anonymous VMAs that differ
// only in protection (thread stacks and guards) become one mmap + madvise and an mprotect per
// VMA whose protection differs; anything else keeps its own mmap.
import t from 'tap';
import { RemoteBatch } from '../src/restore/remote.js';
import { MAP_GROWSDOWN, SYS } from '../src/restore/remote-sys.js';
import { addMappings, VMA_FILE_PRIVATE, type Vma } from '../src/restore/remote-vma.js';

const SCRATCH = 0x7f0000000000n;
const vma = (start: bigint, end: bigint, prot: number, more: Partial<Vma> = {}): Vma => ({ start, end, pgoff: 0n, shmid: 0, prot, flags: 0x22, status: 0x201, madv: 1n << 15n, ...more });
const page = 0x1000n;
const layout = (b: RemoteBatch) => b.layout().flatMap((s) => s.commands).map((c) => [c.nr, Number(c.args[0]), Number(c.args[1]), Number(c.args[2])]);

t.test('stacks and guards: one mmap and madvise, mprotect where the protection differs', async (t) => {
  const vmas: Vma[] = [];
  for (let i = 0n; i < 3n; i++) {
    const base = 0x10000n + i * 17n * page;
    vmas.push(vma(base, base + page, 0), vma(base + page, base + 17n * page, 3));
  }
  const b = new RemoteBatch(SCRATCH);
  addMappings(b, [...vmas].reverse(), { fdOf: () => undefined, writable: () => false });
  const end = 0x10000 + 3 * 17 * 0x1000;
  t.same(layout(b), [
    [SYS.mmap, 0x10000, end - 0x10000, 0],
    [SYS.madvise, 0x10000, end - 0x10000, 15],
    [SYS.mprotect, 0x11000, 0x10000, 3],
    [SYS.mprotect, 0x22000, 0x10000, 3],
    [SYS.mprotect, 0x33000, 0x10000, 3],
  ]);
});

t.test('a run with a PROT_NONE reservation is mapped without PROT_WRITE, the writable parts made so after', async (t) => {
  // A heap's used part (rw, with pages) before a reservation of a TiB: one rw mmap of it all
  // would be charged in full against the commit limit and fail with ENOMEM.
  const used = vma(0x10000n, 0x20000n, 3);
  const reserved = vma(0x20000n, 0x20000n + (1n << 40n), 0);
  const b = new RemoteBatch(SCRATCH);
  addMappings(b, [used, reserved], { fdOf: () => undefined, writable: (v) => v === used });
  t.same(layout(b), [
    [SYS.mmap, 0x10000, Number(reserved.end - used.start), 0],
    [SYS.madvise, 0x10000, Number(reserved.end - used.start), 15],
    [SYS.mprotect, 0x10000, 0x10000, 3],
  ]);
});

t.test('writable-for-the-fill counts as the mapped protection', async (t) => {
  const a = vma(0x10000n, 0x11000n, 1);
  const c = vma(0x11000n, 0x12000n, 3);
  const b = new RemoteBatch(SCRATCH);
  addMappings(b, [a, c], { fdOf: () => undefined, writable: (v) => v === a });
  t.same(layout(b).map((x) => x[0]), [SYS.mmap, SYS.madvise, SYS.mmap, SYS.madvise], 'both mapped rw: the kernel would merge them, so two mmaps');
});

t.test('VMAs that differ in more than protection, or are not plain anonymous, keep their own mmap', async (t) => {
  const cases: Array<[string, Vma, Vma, (v: Vma) => number | undefined]> = [
    ['other advice', vma(0x10000n, 0x11000n, 0), vma(0x11000n, 0x12000n, 3, { madv: 0n }), () => undefined],
    ['a gap', vma(0x10000n, 0x11000n, 0), vma(0x12000n, 0x13000n, 3), () => undefined],
    ['a stack', vma(0x10000n, 0x11000n, 0), vma(0x11000n, 0x12000n, 3, { flags: 0x22 | MAP_GROWSDOWN }), () => undefined],
    ['file-backed', vma(0x10000n, 0x11000n, 1, { status: VMA_FILE_PRIVATE | 1, flags: 2 }), vma(0x11000n, 0x12000n, 3, { status: VMA_FILE_PRIVATE | 1, flags: 2 }), () => 9],
  ];
  for (const [name, x, y, fdOf] of cases) {
    const b = new RemoteBatch(SCRATCH);
    addMappings(b, [x, y], { fdOf, writable: () => false });
    const mmaps = layout(b).filter((c) => c[0] === SYS.mmap);
    t.equal(mmaps.length, 2, name);
    t.notOk(layout(b).some((c) => c[0] === SYS.mprotect), `${name}: no mprotect`);
  }
});
