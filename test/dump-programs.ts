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
