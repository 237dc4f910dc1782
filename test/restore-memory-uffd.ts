// The UFFDIO_COPY fill: which VMAs and runs it takes, the ioctl structs it lays out, and the
// mem-pattern program (64 MiB with holes, guard and read-only pieces) restored through it and
// through the preadv fallback: both check themselves PASS, and no VMA is left registered.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { restore } from '../src/restore/index.js';
import { RemoteBatch } from '../src/restore/remote.js';
import { MAP_GROWSDOWN, SYS } from '../src/restore/remote-sys.js';
import {
  addUffdCopies,
  addUffdOpen,
  sourceLength,
  splitRuns,
  SYS_IOCTL,
  SYS_USERFAULTFD,
  UFFD_COPY_CHUNK,
  UFFDIO_COPY,
  UFFDIO_REGISTER,
  UFFDIO_UNREGISTER,
  uffdVmas,
} from '../src/restore/remote-uffd.js';
import { hugePageVmas, VMA_ANON_PRIVATE, VMA_FILE_PRIVATE, type Vma } from '../src/restore/remote-vma.js';
import { dumpProgram } from './lib/program-roundtrip.js';
import { requestCheck, startProgram } from './lib/programs.js';
import type { Span } from '../src/resources/types.js';

const SCRATCH = 0x10000000n;
const vma = (start: bigint, end: bigint, extra: Partial<Vma> = {}): Vma => ({
  start, end, pgoff: 0n, shmid: 0, prot: 3, flags: 0x22, status: 1 | VMA_ANON_PRIVATE, madv: 0n, ...extra,
});

t.test('which VMAs and runs go by UFFDIO_COPY', async (t) => {
  const anon = vma(0x100000n, 0x900000n);
  const stack = vma(0xa00000n, 0xb00000n, { flags: 0x22 | MAP_GROWSDOWN });
  const huge = vma(0xc00000n, 0x1000000n, { madv: 1n << 14n });
  const file = vma(0x2000000n, 0x2001000n, { status: 1 | VMA_FILE_PRIVATE, flags: 0x2 });
  t.same(uffdVmas([anon, stack, huge, file], 'madvise'), [anon], 'not stacks, not MADV_HUGEPAGE (THP by faults), not files');
  t.same(uffdVmas([anon, stack, huge, file], 'never'), [anon, huge], 'with THP off, MADV_HUGEPAGE gives no huge pages: copied');
  const noHuge = vma(0x1000000n, 0x1800000n, { madv: 1n << 15n });
  t.same(uffdVmas([anon, huge, noHuge], 'always'), [noHuge], "with THP 'always', only MADV_NOHUGEPAGE memory is copied (4 KiB pages, as it had)");
  t.same(hugePageVmas([anon, stack, huge, noHuge, file], 'always'), [anon, stack, huge], "THP 'always': every private anonymous VMA not advised otherwise");
  t.same(hugePageVmas([anon, huge, noHuge, file], 'madvise'), [huge]);
  const runs = [
    { start: 0x100000n, end: 0x300000n, fileOffset: 0 },
    { start: 0x2000000n, end: 0x2001000n, fileOffset: 0x200000 },
    { start: 0x400000n, end: 0x900000n, fileOffset: 0x201000 },
  ];
  const { copy, read } = splitRuns(runs, [anon]);
  t.same(copy.map((r) => r.start), [0x100000n, 0x400000n]);
  t.same(read.map((r) => r.start), [0x2000000n]);
  t.equal(sourceLength(copy), 0x701000n, 'the source mapping reaches the end of the last copied run, page rounded');
});

t.test('the two batches: open, then API, register, chunked copies, unregister, close, unmap', async (t) => {
  const open = new RemoteBatch(SCRATCH);
  const at = addUffdOpen(open, 9, 0x706000n);
  const [cmds] = open.layout().map((s) => s.commands);
  t.same(cmds!.map((c) => c.nr), [SYS_USERFAULTFD, SYS.mmap]);
  t.same([at.uffd, at.source], [0, 1]);
  t.equal(cmds![0]!.flags, 0, 'a kernel without userfaultfd does not stop the batch: the caller falls back');
  t.same(cmds![1]!.args.map(Number), [0, 0x706000, 1, 2, 9, 0], 'read-only private map of the pages fd, anywhere');

  const b = new RemoteBatch(SCRATCH);
  const anon = vma(0x100000n, 0x900000n);
  const runs = [{ start: 0x100000n, end: 0x100000n + BigInt(UFFD_COPY_CHUNK) + 0x1000n, fileOffset: 0x3000 }];
  const r = addUffdCopies(b, 5, 0x7f0000000000n, 0x400000n, [anon], runs);
  t.same(r, { calls: 2, bytes: UFFD_COPY_CHUNK + 0x1000 }, 'a run longer than a chunk takes two copies');
  const [seg] = b.layout();
  const ioctls = seg!.commands.filter((c) => c.nr === SYS_IOCTL).map((c) => BigInt(c.args[1]!));
  t.notOk(seg!.commands.some((c) => c.nr === SYS.madvise), 'no read-ahead advice between the copies (src/restore/prefetch.ts reads ahead)');
  t.same(ioctls.slice(1), [UFFDIO_REGISTER, UFFDIO_COPY, UFFDIO_COPY, UFFDIO_UNREGISTER]);
  t.same(seg!.commands.slice(-2).map((c) => c.nr), [SYS.close, SYS.munmap]);
  const second = seg!.commands[3]!;
  const off = Number(BigInt(second.args[2]!) - SCRATCH) - 0x49000;
  t.equal(seg!.data.readBigUInt64LE(off), 0x100000n + BigInt(UFFD_COPY_CHUNK), 'dst of the second copy');
  t.equal(seg!.data.readBigUInt64LE(off + 8), 0x7f0000000000n + 0x3000n + BigInt(UFFD_COPY_CHUNK), 'src follows the file offset');
  t.equal(seg!.data.readBigUInt64LE(off + 16), 0x1000n, 'len: the rest of the run');
});

t.test('mem-pattern restored by UFFDIO_COPY and by preadv: PASS, nothing left registered', async (t) => {
  const prog = await startProgram(t, 'mem-pattern');
  const imagesDir = await dumpProgram(t, prog);
  const before = process.env['CRR_FILL'];
  const threadsBefore = process.env['CRR_COPY_THREADS'];
  // The task's own copies (crr's threads copying: test/restore-uffd-split.ts).
  process.env['CRR_COPY_THREADS'] = '0';
  t.teardown(() => {
    if (before === undefined) delete process.env['CRR_FILL'];
    else process.env['CRR_FILL'] = before;
    if (threadsBefore === undefined) delete process.env['CRR_COPY_THREADS'];
    else process.env['CRR_COPY_THREADS'] = threadsBefore;
  });
  const fills: Record<string, number> = {};
  for (const mode of ['uffd', 'fault']) {
    process.env['CRR_FILL'] = mode;
    const spans: Span[] = [];
    const result = await restore({ imagesDir, pidNamespace: true, onSpan: (s) => spans.push(s) });
    t.teardown(() => result.kill());
    const fill = spans.find((s) => s.name === 'fill');
    t.ok(fill, `${mode}: the fill has a span of its own`);
    fills[mode] = fill?.syscalls ?? 0;
    t.ok((fill?.bytes ?? 0) >= 60 << 20, `${mode}: the 64 MiB region's pages were filled (${fill?.bytes} bytes)`);
    const ahead = spans.find((s) => s.name === 'read ahead');
    t.ok((ahead?.bytes ?? 0) >= 60 << 20, `${mode}: the pages file was read ahead of the fill (${ahead?.bytes} bytes)`);
    const smaps = readFileSync(`/proc/${result.rootHostPid}/smaps`, 'utf8');
    const flags = smaps.split('\n').filter((l) => l.startsWith('VmFlags:'));
    t.ok(flags.length > 0 && flags.every((l) => !/\bum\b/.test(l)), `${mode}: no VMA is left registered with a userfaultfd`);
    t.notOk(readFileSync(`/proc/${result.rootHostPid}/maps`, 'utf8').includes('pages-'), `${mode}: the copy source is unmapped`);
    const check = await requestCheck(result.rootHostPid, prog.resultFile, 20_000).catch((e: Error) => ({ pass: false, text: e.message }));
    t.equal(check.text, 'PASS', `${mode}: mem-pattern checks every byte and protection`);
    await result.kill();
  }
  t.ok(fills['uffd']! > 32 + fills['fault']!, `UFFDIO_COPY ran in 2 MiB pieces (${fills['uffd']} commands vs ${fills['fault']} for preadv)`);
});
