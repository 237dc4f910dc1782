// Dumps the self-checking test programs with --leave-running: the images must agree with what
// /proc showed just before the dump (VMAs, fds, tree, threads, sane registers), and the program
// must keep passing its own checks afterwards (nothing injected was left behind).
import t from 'tap';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startProgram, requestCheck } from './lib/programs.js';
import { dump } from '../src/dump/index.js';
import { readImage } from '../src/images/reader.js';
import { parseMaps } from '../src/dump/proc.js';

const img = (dir: string, name: string) => readImage(join(dir, name)).all() as any[];

function procState(pid: number): string {
  return readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ')[0]!;
}
function tracerPid(pid: number): number {
  return Number(/TracerPid:\s*(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
}

const programs: Array<[string, string[]]> = [
  ['threads', []],
  ['sigstate', []],
  ['fds', []],
  ['syscall-wait', ['read']],
  ['syscall-wait', ['nanosleep']],
  ['syscall-wait', ['futex']],
  ['syscall-wait', ['waitpid']],
  ['counter', []],
  ['mem-pattern', []],
];

for (const [name, args] of programs) {
  t.test(`${name} ${args.join(' ')}: images agree with /proc, program still passes after --leave-running`, async (t) => {
    const prog = await startProgram(t, name, args);
    const out = mkdtempSync(join(tmpdir(), `crr-dump-${name}-`));
    t.teardown(() => rmSync(out, { recursive: true, force: true }));
    const pids = prog.tree();
    const before = new Map(pids.map((p) => [p, {
      maps: foldVvar(parseMaps(readFileSync(`/proc/${p}/maps`, 'utf8'))),
      fds: readdirSync(`/proc/${p}/fd`).map(Number).sort((a, b) => a - b),
      tids: readdirSync(`/proc/${p}/task`).map(Number).sort((a, b) => a - b),
    }]));
    const res = await dump({ pid: prog.pid, imagesDir: out, leaveRunning: true });
    t.same(res.pids.slice().sort(), pids.slice().sort(), 'every process of the tree dumped');
    const pstree = img(out, 'pstree.img');
    t.same(pstree.map((e) => e.pid).sort(), pids.slice().sort(), 'pstree lists the tree');
    for (const e of pstree) {
      const b = before.get(e.pid)!;
      t.same(e.threads.slice().sort((x: number, y: number) => x - y), b.tids, `${e.pid}: threads`);
      const mm = img(out, `mm-${e.pid}.img`)[0];
      t.same(mm.vmas.map((v: any) => [v.start, v.end, v.prot]), b.maps.map((m) => [m.start, m.end, (m.read ? 1 : 0) | (m.write ? 2 : 0) | (m.exec ? 4 : 0)]), `${e.pid}: VMAs as in /proc/PID/maps`);
      const ids = img(out, `ids-${e.pid}.img`)[0];
      const fds = img(out, `fdinfo-${ids.files_id}.img`);
      t.same(fds.map((f) => f.fd), b.fds, `${e.pid}: fds`);
      for (const tid of e.threads) {
        const core = img(out, `core-${tid}.img`)[0];
        const ip = core.thread_info.gpregs.ip as bigint;
        const sp = core.thread_info.gpregs.sp as bigint;
        t.ok(mm.vmas.some((v: any) => v.start <= ip && ip < v.end && v.prot & 4), `${tid}: ip is in executable memory`);
        t.ok(mm.vmas.some((v: any) => v.start <= sp && sp <= v.end), `${tid}: sp is in a mapping`);
      }
      t.not(procState(e.pid), 't', `${e.pid}: not left stopped`);
      t.equal(tracerPid(e.pid), 0, `${e.pid}: not left traced`);
      t.same(foldVvar(parseMaps(readFileSync(`/proc/${e.pid}/maps`, 'utf8'))).map((m) => m.start), b.maps.map((m) => m.start), `${e.pid}: no mapping left behind`);
    }
    const check = await requestCheck(prog.pid, prog.resultFile);
    t.ok(check.pass, `program still passes its own checks: ${check.text}`);
  });
}

/** The dump keeps [vvar] and [vvar_vclock] as one VMA, like CRIU. */
function foldVvar(maps: ReturnType<typeof parseMaps>): ReturnType<typeof parseMaps> {
  const out: ReturnType<typeof parseMaps> = [];
  for (const m of maps) {
    const prev = out[out.length - 1];
    if (m.path === '[vvar_vclock]' && prev?.path === '[vvar]' && prev.end === m.start) prev.end = m.end;
    else out.push({ ...m });
  }
  return out;
}

t.test('pages: a 64 MiB pattern with holes is dumped byte for byte, holes and zero pages left out', async (t) => {
  const { spawnSync } = await import('node:child_process');
  const { setTimeout: sleep } = await import('node:timers/promises');
  const { tracer } = await import('../src/actors/tracer.js');
  const dir = mkdtempSync(join(tmpdir(), 'crr-dump-pages-'));
  const pidFile = join(dir, 'pid');
  // Every 4th MiB untouched (a hole), one MiB only read (zero page), the rest a per-page pattern.
  const py = [
    'import mmap, time, ctypes',
    'm = mmap.mmap(-1, 64 << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)',
    'for p in range((64 << 20) // 4096):',
    '    mib = p // 256',
    '    if mib % 4 == 3: continue',
    '    if mib == 5: m[p * 4096]; continue',
    '    m[p * 4096:p * 4096 + 8] = (p * 2654435761 % (1 << 64)).to_bytes(8, "little")',
    `open('${pidFile}.addr', 'w').write(str(ctypes.addressof(ctypes.c_char.from_buffer(m))))`,
    'time.sleep(100000)',
  ].join('\n');
  spawnSync('setsid', ['-f', 'sh', '-c', 'echo $$ > "$0"; exec python3 -c "$1" </dev/null >/dev/null 2>&1', pidFile, py]);
  let pid = 0;
  let base = 0n;
  for (let i = 0; i < 1000 && !base; i++) {
    await sleep(20);
    try {
      base = BigInt(readFileSync(`${pidFile}.addr`, 'utf8'));
      pid = Number(readFileSync(pidFile, 'utf8'));
    } catch {
      // not yet
    }
  }
  t.teardown(() => {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
    rmSync(dir, { recursive: true, force: true });
  });
  t.ok(pid && base, 'pattern program ready');
  const out = join(dir, 'img');
  await dump({ pid, imagesDir: out, leaveRunning: true });
  const pm = img(out, `pagemap-${pid}.img`);
  const pages = readFileSync(join(out, `pages-${pm[0].pages_id}.img`));
  const end = base + (64n << 20n);
  let offset = 0;
  let inRegion = 0;
  let mismatches = 0;
  for (const run of pm.slice(1)) {
    const len = Number(run.nr_pages) * 4096;
    if (run.vaddr >= base && run.vaddr < end) {
      for (let p = 0; p < Number(run.nr_pages); p++) {
        const addr = run.vaddr + BigInt(p * 4096);
        const mib = Number((addr - base) >> 20n);
        if (mib % 4 === 3 || mib === 5) mismatches++; // holes and zero pages must not be here
        inRegion++;
      }
      const live = tracer.processVmReadv(pid, [{ addr: run.vaddr, len }]);
      if (!live.equals(pages.subarray(offset, offset + len))) mismatches++;
      t.equal(run.flags, 6, 'anonymous private pages are PE_LAZY | PE_PRESENT');
    }
    offset += len;
  }
  t.equal(offset, pages.length, 'pages-N.img holds exactly the PRESENT runs');
  t.equal(inRegion, (64 - 16 - 1) * 256, 'every written page and no other');
  t.equal(mismatches, 0, 'page contents equal the live memory');
});
