// Unit tests of the dumper's /proc parsers and VMA/page classification, on captured text and on
// a live `sleep` (only read through /proc here, never traced).
import t from 'tap';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { parseStat, decodeStatus, parseMaps, parseSmaps, parseLimits, parseFdinfo, parseAuxv, parseTimers, listThreads, RLIM_INFINITY } from '../src/dump/proc.js';
import { collectVmas, VMA, withoutRange, type DumpVma } from '../src/dump/mm.js';
import { DumpIds } from '../src/dump/ids.js';
import { buildRuns, chunkRuns, PE } from '../src/dump/pages.js';
import { readBuildId } from '../src/images/build-id.js';
import { SHARED } from './lib/shared-dir.js';

t.test('stat: comm with spaces and parens, fields by number', async (t) => {
  const fields = Array.from({ length: 50 }, (_, i) => String(i + 3));
  fields[0] = 'S';
  const s = parseStat(`42 (a (b) c) ${fields.join(' ')}\n`);
  t.equal(s.pid, 42);
  t.equal(s.comm, 'a (b) c');
  t.equal(s.state, 'S');
  t.equal(s.ppid, 4);
  t.equal(s.flags, 9);
  t.equal(s.startCode, 26n);
  t.equal(s.envEnd, 51n);
  t.equal(s.exitCode, 52);
});

t.test('maps and smaps lines', async (t) => {
  const maps = parseMaps('55657d6bd000-55657d6bf000 r--p 00002000 fe:01 123 /usr/bin/sleep\n7ffe10e9f000-7ffe10ec0000 rw-p 00000000 00:00 0                          [stack]\n');
  t.equal(maps.length, 2);
  t.equal(maps[0]!.offset, 0x2000n);
  t.equal(maps[0]!.path, '/usr/bin/sleep');
  t.equal(maps[1]!.path, '[stack]');
  t.ok(maps[1]!.write && !maps[1]!.shared);
  const smaps = parseSmaps(
    '7ffe10e9f000-7ffe10ec0000 rw-p 00000000 00:00 0 [stack]\nSize: 4 kB\nRss: 4 kB\nSwap: 0 kB\nVmFlags: rd wr mr mw me gd ac\n' +
      '7f0000000000-7f4000000000 ---p 00000000 00:00 0\nSize: 268435456 kB\nRss: 0 kB\nSwap: 0 kB\nVmFlags: mr mw me nr\n' +
      '7f4000000000-7f4000001000 rw-p 00000000 00:00 0\nRss: 0 kB\nSwap: 4 kB\nVmFlags: rd wr\n',
  );
  t.same(smaps.get(0x7ffe10e9f000n), { flags: ['rd', 'wr', 'mr', 'mw', 'me', 'gd', 'ac'], touched: true });
  t.same(smaps.get(0x7f0000000000n), { flags: ['mr', 'mw', 'me', 'nr'], touched: false }, 'a reservation with no page');
  t.equal(smaps.get(0x7f4000000000n)!.touched, true, 'pages swapped out count');
});

t.test('limits, fdinfo, auxv, timers', async (t) => {
  const lim = parseLimits(readFileSync('/proc/self/limits', 'utf8'));
  t.equal(lim.length, 16);
  t.ok(lim.every((l) => l.cur <= l.max || l.max === RLIM_INFINITY));
  const fi = parseFdinfo('pos:\t12\nflags:\t02100001\nmnt_id:\t30\nino:\t77\n');
  t.equal(fi.pos, 12n);
  t.equal(fi.flags, 0o2100001);
  t.equal(fi.ino, 77);
  const aux = Buffer.alloc(48);
  aux.writeBigUInt64LE(6n, 0);
  aux.writeBigUInt64LE(4096n, 8);
  t.same(parseAuxv(aux), [6n, 4096n]);
  const tm = parseTimers('ID: 0\nsignal: 14/0000000000000000\nnotify: signal/pid.123\nClockID: 1\n');
  t.equal(tm[0]!.signal, 14);
  t.equal(tm[0]!.notify, 'signal');
  t.equal(tm[0]!.clockId, 1);
});

t.test('build-id of an ELF file matches `file`-style note words', async (t) => {
  // The CRIU 4.2 fixture recorded this very binary's build-id.
  const fx = JSON.parse(readFileSync(SHARED + 'fixtures/criu-4.2-decoded/sleep/files.json', 'utf8'));
  const sleep = fx.entries.find((e: any) => e.reg?.name === '/usr/bin/sleep');
  t.same(readBuildId('/usr/bin/sleep'), sleep.reg.build_id);
  t.equal(readBuildId('/etc/hostname'), undefined);
});

t.test('live sleep: status, VMAs classified like CRIU, page runs', async (t) => {
  const child = spawn('/usr/bin/sleep', ['1000'], { stdio: 'ignore' });
  t.teardown(() => { child.kill('SIGKILL'); });
  await new Promise((r) => setTimeout(r, 100));
  const pid = child.pid!;
  const st = decodeStatus(readFileSync(`/proc/${pid}/status`, 'utf8'));
  t.equal(st.uids.length, 4);
  t.equal(st.umask, process.umask());
  t.same(listThreads(pid), [pid]);
  const ids = new DumpIds();
  await ids.rootIds();
  const vmas = collectVmas(pid, ids);
  const heap = vmas.find((v) => v.path === '[heap]');
  const stack = vmas.find((v) => v.path === '[stack]');
  const vvar = vmas.find((v) => v.path === '[vvar]');
  t.ok(stack && (stack.flags & 0x100) !== 0, 'stack is MAP_GROWSDOWN');
  t.equal(stack!.status, VMA.REGULAR | VMA.ANON_PRIVATE);
  if (heap) t.equal(heap.status, VMA.REGULAR | VMA.HEAP | VMA.ANON_PRIVATE);
  t.ok(vvar && vvar.status & VMA.VVAR);
  t.notOk(vmas.some((v) => v.path === '[vvar_vclock]'), 'vvar_vclock is folded into vvar');
  const exe = vmas[0]!;
  t.equal(exe.status, VMA.REGULAR | VMA.FILE_PRIVATE);
  t.equal(exe.entry.shmid, 1n);
  t.equal((ids.files[0] as any).reg.name, '/usr/bin/sleep');
  // Every mapping of one file has one id.
  const libc = vmas.filter((v) => v.path.includes('libc.so'));
  t.ok(libc.length > 1 && libc.every((v) => v.entry.shmid === libc[0]!.entry.shmid));
});

t.test('runs: merge adjacent same-flag pages, lazy for anonymous, skip clean file pages', async (t) => {
  const P = 1n << 63n, F = 1n << 61n;
  const vmas: any[] = [
    { start: 0x1000n, end: 0x4000n, status: VMA.REGULAR | VMA.FILE_PRIVATE, flags: 2 },
    { start: 0x4000n, end: 0x6000n, status: VMA.REGULAR | VMA.ANON_PRIVATE, flags: 0x22 },
    { start: 0x6000n, end: 0x7000n, status: VMA.REGULAR | VMA.ANON_PRIVATE | VMA.VVAR, flags: 0x22 },
  ];
  const words: Record<string, bigint[]> = { '4096': [P | F, P | 5n, P | 6n], '16384': [P | 7n, P | 99n], '24576': [P] };
  const runs = buildRuns(vmas, (s, n) => BigUint64Array.from(words[String(s)]!.slice(0, n)), 99n);
  t.same(runs, [
    { vaddr: 0x2000n, nrPages: 2, flags: PE.PRESENT },
    { vaddr: 0x4000n, nrPages: 1, flags: PE.PRESENT | PE.LAZY },
  ]);
  const chunks = chunkRuns([{ vaddr: 0x1000n, nrPages: 3, flags: 4 }, { vaddr: 0x9000n, nrPages: 1, flags: 4 }], 8192);
  t.same(chunks, [[{ addr: 0x1000n, len: 8192 }], [{ addr: 0x3000n, len: 4096 }, { addr: 0x9000n, len: 4096 }]]);
});

t.test("the dumper's scratch area is cut out of the VMAs, also when the kernel merged it with a neighbour alike", async (t) => {
  const MIB = 0x100000n;
  const vma = (start: bigint, end: bigint, pgoff = 0n): DumpVma => ({ entry: { start, end, pgoff, prot: 7 }, start, end, status: VMA.ANON_PRIVATE, flags: 0x22, path: '', offset: pgoff });
  const scratch = { start: 0x7f0000100000n, end: 0x7f0000100000n + MIB };
  const other = vma(0x7e0000000000n, 0x7e0000010000n);
  const alone = vma(scratch.start, scratch.end);
  // A JVM's code heap right above the scratch area: one VMA from the scratch area's start.
  const mergedAbove = vma(scratch.start, scratch.end + 3n * MIB);
  const mergedBelow = vma(scratch.start - 2n * MIB, scratch.end);
  const fileAround = vma(scratch.start - MIB, scratch.end + MIB, 0x5000n);
  const ranges = (vs: DumpVma[]) => vs.map((v) => [v.start, v.end, v.entry['start'], v.entry['end']]);
  t.same(withoutRange([other, alone], scratch.start, scratch.end), [other], 'the scratch area alone: dropped, the rest untouched');
  t.same(ranges(withoutRange([mergedAbove], scratch.start, scratch.end)), [[scratch.end, scratch.end + 3n * MIB, scratch.end, scratch.end + 3n * MIB]], 'merged with the VMA above: that part kept');
  t.same(ranges(withoutRange([mergedBelow], scratch.start, scratch.end)), [[scratch.start - 2n * MIB, scratch.start, scratch.start - 2n * MIB, scratch.start]], 'merged with the VMA below: that part kept');
  const [before, after] = withoutRange([fileAround], scratch.start, scratch.end);
  t.same([before!.entry['pgoff'], after!.entry['pgoff'], after!.offset], [0x5000n, 0x5000n + 2n * MIB, 0x5000n + 2n * MIB], "a VMA around it: both parts, the second's offset moved with its start");
});
