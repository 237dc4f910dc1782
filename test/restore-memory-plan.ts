// The address-space plan without a task: VMAs of a real fixture to mmap commands, page runs to
// populate + preadv batches, helper teardown ranges, the vdso base, and prctl_mm_map encoding.
import t from 'tap';
import { openCheckpoint, readPagemap, type PagemapRun } from '../src/images/index.js';
import { RemoteBatch } from '../src/restore/remote.js';
import { AUXV_MAX_WORDS, auxvBytes, commBytes, encodePrctlMmMap, PRCTL_MM_MAP_SIZE } from '../src/restore/remote-mm.js';
import { MAP_FIXED, MAP_GROWSDOWN, PROT_WRITE, SYS } from '../src/restore/remote-sys.js';
import {
  addAdvice,
  addFill,
  addFinalProtection,
  addMmap,
  addPageReads,
  addPopulate,
  helperRangesToUnmap,
  IOV_MAX,
  isKernelMade,
  presentRuns,
  vdsoBase,
  vmaOf,
  vmasWithPages,
  type Vma,
} from '../src/restore/remote-vma.js';
import { SHARED } from './lib/shared-dir.js';

const SCRATCH = 0x10000000n;
const fixture = openCheckpoint(SHARED + 'fixtures/criu-4.2/sleep');
const image = fixture.mm(17288) as Record<string, unknown>;
const vmas = (image['vmas'] as Array<Record<string, unknown>>).map(vmaOf);

t.test('sleep: kernel-made VMAs are skipped, the vdso goes to the start of [vvar]', async (t) => {
  const made = vmas.filter(isKernelMade);
  t.equal(made.length, 3, 'vvar, vdso, vsyscall');
  t.equal(vdsoBase(vmas), 0x7f9356641000n);
});

t.test('sleep: mmap commands', async (t) => {
  const mapped = vmas.filter((v) => !isKernelMade(v));
  const runs = presentRuns(readPagemap(fixture, 17288).runs, mapped);
  const filled = vmasWithPages(mapped, runs);
  const b = new RemoteBatch(SCRATCH);
  for (const v of mapped) addMmap(b, v, { writable: filled.has(v), fd: 900 + v.shmid });
  const cmds = b.layout()[0]!.commands;
  t.equal(cmds.length, mapped.length);
  t.ok(cmds.every((c) => c.nr === SYS.mmap && (Number(c.args[3]) & MAP_FIXED) !== 0), 'all MAP_FIXED');
  const stack = cmds.find((c) => BigInt(c.args[0]!) === 0x7ffe10e9f000n)!;
  t.ok(Number(stack.args[3]) & MAP_GROWSDOWN, 'stack keeps MAP_GROWSDOWN');
  t.equal(Number(stack.args[4]), -1, 'anonymous');
  const text = cmds.find((c) => BigInt(c.args[0]!) === 0x55657d6bf000n)!;
  t.equal(Number(text.args[4]), 901, 'file-backed through the pre-opened fd of file id 1');
  t.equal(BigInt(text.args[5]!), 8192n, 'pgoff in bytes');
  t.equal(Number(text.args[2]) & PROT_WRITE, PROT_WRITE, 'text has dumped pages: writable at first');
  const ro = cmds.find((c) => BigInt(c.args[0]!) === 0x7f93563f1000n)!;
  t.equal(Number(ro.args[2]), 1, 'a read-only file VMA without pages stays read-only');
  t.throws(() => addMmap(new RemoteBatch(SCRATCH), mapped[0]!, { writable: false }), /no pre-opened fd/);
});

const vma = (start: bigint, end: bigint, prot = 3): Vma => ({ start, end, pgoff: 0n, shmid: 0, prot, flags: 0x22, status: 0x201, madv: 0n });
const run = (vaddr: bigint, nrPages: number, pagesOffset: number, flags = 4): PagemapRun => ({ vaddr, nrPages, flags, pagesOffset });

t.test('runs are clipped to mapped VMAs; non-present runs are skipped', async (t) => {
  const got = presentRuns([run(0x1000n, 4, 0), run(0x9000n, 1, 16384, 2)], [vma(0x2000n, 0x4000n)]);
  t.same(got, [{ start: 0x2000n, end: 0x4000n, fileOffset: 4096 }]);
});

t.test('page reads: contiguous file offsets share one preadv, IOV_MAX iovecs at most', async (t) => {
  const runs = [
    { start: 0x1000n, end: 0x3000n, fileOffset: 0 },
    { start: 0x8000n, end: 0x9000n, fileOffset: 8192 },
    { start: 0xa000n, end: 0xb000n, fileOffset: 20480 },
  ];
  const b = new RemoteBatch(SCRATCH);
  const r = addPageReads(b, runs, 7);
  t.same(r, { calls: 2, bytes: 4 * 4096 });
  const [seg] = b.layout();
  const [first, second] = seg!.commands;
  t.same(first!.args.map(Number).slice(0, 5), [7, Number(SCRATCH) + 0x49000, 2, 0, 0]);
  t.equal(seg!.data.readBigUInt64LE(0), 0x1000n);
  t.equal(seg!.data.readBigUInt64LE(8), 0x2000n, 'iov_len');
  t.equal(seg!.data.readBigUInt64LE(16), 0x8000n);
  t.equal(Number(second!.args[3]), 20480, 'a gap in the file starts a new call');
  const many = Array.from({ length: IOV_MAX + 1 }, (_, i) => ({ start: BigInt(i * 0x2000), end: BigInt(i * 0x2000 + 0x1000), fileOffset: i * 4096 }));
  t.equal(addPageReads(new RemoteBatch(SCRATCH), many, 7).calls, 2, 'IOV_MAX + 1 ranges need two calls');
  const p = new RemoteBatch(SCRATCH);
  addPopulate(p, [runs[0]!, { start: 0x3000n, end: 0x4000n, fileOffset: 8192 }]);
  t.same(p.layout()[0]!.commands.map((c) => [c.nr, Number(c.args[1]), Number(c.args[2])]), [[SYS.madvise, 0x3000, 23]], 'adjacent runs: one MADV_POPULATE_WRITE');
});

t.test('madvise bits right after the mmap, final protection only where widened', async (t) => {
  const b = new RemoteBatch(SCRATCH);
  const v = { ...vma(0x1000n, 0x3000n, 1), madv: (1n << 14n) | (1n << 16n) };
  addMmap(b, v, { writable: true });
  addAdvice(b, v);
  addFill(b, [{ start: 0x1000n, end: 0x3000n, fileOffset: 0 }], 7, 'fault');
  addFinalProtection(b, v, true);
  addFinalProtection(b, vma(0x5000n, 0x6000n), false);
  t.same(
    b.layout()[0]!.commands.map((c) => [c.nr, Number(c.args[2])]),
    [[SYS.mmap, 3], [SYS.madvise, 14], [SYS.madvise, 16], [SYS.preadv, 1], [SYS.mprotect, 1]],
    'MADV_HUGEPAGE lands before the pages, so the fill faults in huge pages',
  );
  const p = new RemoteBatch(SCRATCH);
  addFill(p, [{ start: 0x1000n, end: 0x3000n, fileOffset: 0 }], 7, 'populate');
  t.same(p.layout()[0]!.commands.map((c) => c.nr), [SYS.madvise, SYS.preadv], 'populate mode: MADV_POPULATE_WRITE, then preadv');
});

t.test('page reads: no preadv asks for more than MAX_READ_BYTES (read stops at 2 GiB)', async (t) => {
  const GiB = 1n << 30n;
  const big = [{ start: 0x7f0000000000n, end: 0x7f0000000000n + 4n * GiB + 0x3000n, fileOffset: 4096 }];
  const b = new RemoteBatch(SCRATCH);
  const r = addPageReads(b, big, 7);
  t.same(r, { calls: 5, bytes: Number(4n * GiB + 0x3000n) });
  const cmds = b.layout().flatMap((s) => s.commands);
  t.same(cmds.map((c) => Number(c.args[3])), [4096, 4096 + 2 ** 30, 4096 + 2 ** 31, 4096 + 3 * 2 ** 30, 4096 + 2 ** 32], 'file offsets follow each cut');
  t.ok(cmds.every((c) => Number(c.args[2]) === 1), 'one iovec each');
  const small = addPageReads(new RemoteBatch(SCRATCH), [
    { start: 0x1000n, end: 0x3000n, fileOffset: 0 },
    { start: 0x9000n, end: 0xa000n, fileOffset: 8192 },
  ], 7, 8192);
  t.equal(small.calls, 2, 'a follow-on run that would pass the byte cap starts a new call');
});

t.test('helper teardown: all user space but the scratch area, without reading the helper\'s maps', async (t) => {
  const END = 0x7ffffffff000n; // TASK_SIZE with 4-level paging
  t.same(
    helperRangesToUnmap({ start: 0x10000000n, end: 0x10100000n }),
    [
      { start: 0n, end: 0x10000000n },
      { start: 0x10100000n, end: END },
      { start: END, end: 0xfffffffffff000n, tolerate: [22] },
    ],
    'one call on each side of the scratch area; past 47 bits EINVAL is tolerated (no 5-level paging)',
  );
  const atZero = helperRangesToUnmap({ start: 0n, end: 0x100000n });
  t.same(atZero[0], { start: 0x100000n, end: END }, 'a scratch area at 0: nothing below it to unmap');
  for (const r of atZero) t.ok(r.end > r.start, `${r.start.toString(16)}-${r.end.toString(16)} is not empty`);
});

t.test('prctl_mm_map layout, auxv terminator, comm', async (t) => {
  const auxv = auxvBytes(image['mm_saved_auxv'] as bigint[]);
  t.equal(auxv.length, ((image['mm_saved_auxv'] as unknown[]).length + 2) * 8, 'AT_NULL pair added');
  t.equal(auxv.readBigUInt64LE(auxv.length - 16), 0n);
  const buf = encodePrctlMmMap(image, { addr: 0x1234000n, size: auxv.length }, 997);
  t.equal(buf.length, PRCTL_MM_MAP_SIZE);
  t.equal(buf.readBigUInt64LE(0), 0x55657d6bf000n, 'start_code');
  t.equal(buf.readBigUInt64LE(40), 0x5565ae4dd000n, 'brk');
  t.equal(buf.readBigUInt64LE(80), 0x7ffe10ebffe9n, 'env_end');
  t.equal(buf.readBigUInt64LE(88), 0x1234000n, 'auxv pointer');
  t.equal(buf.readUInt32LE(96), auxv.length);
  t.equal(buf.readUInt32LE(100), 997, 'exe_fd');
  t.throws(() => encodePrctlMmMap({}, { addr: 0n, size: 0 }, 3), /mm_start_code/);
  t.equal(commBytes('a-very-long-command-name').length, 16);
});

t.test('auxvBytes: numbers and bigints as u64 words; AT_NULL added only when missing and room is left', async (t) => {
  const words = (buf: Buffer) => Array.from({ length: buf.length / 8 }, (_, i) => buf.readBigUInt64LE(i * 8));
  t.same(words(auxvBytes([6, 4096, 25, 0xffff_ffff_ffff_f000n, 9, -1n])), [6n, 4096n, 25n, 0xffff_ffff_ffff_f000n, 9n, 0xffff_ffff_ffff_ffffn, 0n, 0n]);
  t.same(words(auxvBytes([6n, 4096n, 0n, 0n])), [6n, 4096n, 0n, 0n], 'already terminated');
  t.same(words(auxvBytes([6, 4096, 7])), [6n, 4096n, 0n, 0n], 'an odd word left out');
  const full = Array.from({ length: 60 }, (_, i) => i + 1);
  t.equal(auxvBytes(full).length, AUXV_MAX_WORDS * 8, 'cut at the kernel size, no room for AT_NULL');
});
