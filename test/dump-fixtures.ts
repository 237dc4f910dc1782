// Dumps the same programs upstream CRIU 4.2 dumped for the fixtures (sleep, the sh loop, the
// pipe, python threads) and compares the images with the fixtures' decoded JSON field by field;
// only addresses, pids, inode numbers and times may differ.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, existsSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { dump } from '../src/dump/index.js';
import { readImage } from '../src/images/reader.js';

const MAP_GROWSDOWN = 0x100;
import { SHARED } from './lib/shared-dir.js';

const FIX = SHARED + 'fixtures/criu-4.2-decoded';
const ENV = { PATH: '/usr/bin:/bin', HOME: '/root', LANG: 'C.UTF-8' };

/**
 * Starts argv in its own session with init as parent, stdio on /dev/null, like the fixtures
 * were started (setsid -f forks; the sh in between only records its pid and execs).
 */
async function startDetached(argv: string[]): Promise<number> {
  const pidFile = join(mkdtempSync(join(tmpdir(), 'crr-pid-')), 'pid');
  const r = spawnSync('setsid', ['-f', 'sh', '-c', 'echo $$ > "$0"; shift; exec "$@" </dev/null >/dev/null 2>&1', pidFile, 'x', ...argv], { encoding: 'utf8', env: ENV, cwd: '/' });
  for (let i = 0; i < 100 && !safe(pidFile).trim(); i++) await sleep(10);
  const pid = Number(safe(pidFile).trim());
  if (!pid) throw new Error(`could not start ${argv.join(' ')}: ${r.stderr}`);
  await sleep(300);
  return pid;
}

function treeOf(root: number): number[] {
  const out = [root];
  for (let i = 0; i < out.length; i++) {
    try {
      for (const tid of spawnSync('ls', [`/proc/${out[i]}/task`], { encoding: 'utf8' }).stdout.split(/\s+/).filter(Boolean)) {
        const kids = readFileSync(`/proc/${out[i]}/task/${tid}/children`, 'utf8').trim();
        if (kids) out.push(...kids.split(/\s+/).map(Number));
      }
    } catch {
      // gone
    }
  }
  return out;
}

async function killAll(pids: number[]): Promise<void> {
  for (const p of pids) {
    try {
      process.kill(p, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  for (const p of pids) for (let i = 0; i < 200 && existsSync(`/proc/${p}`) && !/\) Z/.test(safe(`/proc/${p}/stat`)); i++) await sleep(10);
}

function safe(p: string): string {
  try {
    return readFileSync(p, 'utf8');
  } catch {
    return '';
  }
}

const NAMES: Record<string, number> = {
  PROT_READ: 1, PROT_WRITE: 2, PROT_EXEC: 4, MAP_SHARED: 1, MAP_PRIVATE: 2, MAP_ANON: 0x20, MAP_GROWSDOWN: 0x100,
  VMA_AREA_REGULAR: 1, VMA_AREA_STACK: 2, VMA_AREA_VSYSCALL: 4, VMA_AREA_VDSO: 8, VMA_AREA_HEAP: 32, VMA_FILE_PRIVATE: 64,
  VMA_FILE_SHARED: 128, VMA_ANON_SHARED: 256, VMA_ANON_PRIVATE: 512, VMA_AREA_VVAR: 4096,
  PE_PARENT: 1, PE_LAZY: 2, PE_PRESENT: 4, O_WRONLY: 1, O_RDWR: 2, O_APPEND: 0o2000, O_LARGEFILE: 0o100000,
  REG: 1, PIPE: 2, UNIXSK: 5, Alive: 1,
};
/** crit's "A | B" flag strings, hex strings and enum names back to numbers. */
function num(v: unknown): number {
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint') return Number(v);
  if (typeof v === 'boolean') return v ? 1 : 0;
  const s = String(v);
  if (s === '') return 0;
  if (/^0x[0-9a-f]+$/i.test(s)) return Number(BigInt(s));
  return s.split(' | ').reduce((a, n) => a | (NAMES[n] ?? NaN), 0);
}

function fixture(dir: string, name: string): any[] {
  return JSON.parse(readFileSync(join(FIX, dir, name + '.json'), 'utf8')).entries;
}
function mine(dir: string, name: string): any[] {
  return (readImage(join(dir, name + '.img')).all() as any[]).map(norm);
}
/** Decoded entries as crit shows them: small bigints as numbers, empty repeated fields left out. */
function norm(v: any): any {
  if (typeof v === 'bigint') return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  if (Array.isArray(v)) return v.map(norm);
  if (v && typeof v === 'object' && !(v instanceof Uint8Array)) {
    const o: any = {};
    for (const [k, x] of Object.entries(v)) if (!(Array.isArray(x) && x.length === 0)) o[k] = norm(x);
    return o;
  }
  return v;
}

/** Compares two checkpoints task by task (tasks matched by position in pstree). */
function compare(t: Tap.Test, fx: string, out: string, loose = false) {
  const fxTree = fixture(fx, 'pstree');
  const myTree = mine(out, 'pstree');
  t.equal(myTree.length, fxTree.length, 'same number of tasks');
  t.same(myTree.map((e) => e.threads.length), fxTree.map((e) => e.threads.length), 'same threads per task');
  t.same(myTree.map((e) => [e.ppid === 0, e.pgid === myTree[0].pid, e.sid === myTree[0].pid]), fxTree.map((e) => [e.ppid === 0, e.pgid === fxTree[0].pid, e.sid === fxTree[0].pid]), 'same tree shape, sessions, groups');
  const fxInv = fixture(fx, 'inventory')[0];
  const myInv = mine(out, 'inventory')[0];
  for (const k of ['img_version', 'fdinfo_per_id', 'ns_per_id', 'root_cg_set', 'network_lock_method']) t.equal(num(myInv[k]), num(fxInv[k]), `inventory ${k}`);
  t.same(myInv.root_ids, fxInv.root_ids, 'inventory root_ids');
  const fxFiles = new Map(fixture(fx, 'files').map((e) => [e.id, e]));
  const myFiles = new Map(mine(out, 'files').map((e) => [e.id, e]));
  const fileName = (m: Map<number, any>, id: number) => m.get(id)?.reg?.name ?? m.get(id)?.type;
  fxTree.forEach((fxTask, i) => {
    const fp = fxTask.pid;
    const mp = myTree[i].pid;
    t.same(mine(out, `ids-${mp}`)[0], fixture(fx, `ids-${fp}`)[0], `task ${i}: ids`);
    const fxMm = fixture(fx, `mm-${fp}`)[0];
    const myMm = mine(out, `mm-${mp}`)[0];
    // The stack's size (the one MAP_GROWSDOWN VMA) is where the process has touched it to: it
    // varies by a page or two from run to run with the random offset of the stack top and the
    // size of the environment. It is compared apart, within 4 pages; every other size exactly.
    const growsDown = (v: any) => (num(v.flags) & MAP_GROWSDOWN) !== 0;
    const size = (v: any) => Number(BigInt(v.end) - BigInt(v.start));
    const vmaShape = (v: any, files: Map<number, any>) => [num(v.prot), num(v.flags), num(v.status), num(v.madv ?? 0), v.fdflags === undefined ? -1 : num(v.fdflags), num(v.status) & 0xc0 ? fileName(files, num(v.shmid)) : '', growsDown(v) ? 'stack' : size(v), num(v.pgoff)];
    const stackSizes = (mm: any) => mm.vmas.filter(growsDown).map(size);
    const [myStacks, fxStacks] = [stackSizes(myMm), stackSizes(fxMm)];
    t.equal(myStacks.length, fxStacks.length, `task ${i}: as many stack VMAs`);
    myStacks.forEach((bytes: number, k: number) => t.ok(Math.abs(bytes - fxStacks[k]!) <= 4 * 4096, `task ${i}: stack ${k} is ${bytes} bytes, the fixture's ${fxStacks[k]} (within 4 pages)`));
    if (loose) {
      // Python's heap layout depends on timing: compare the kinds of VMAs, not the list.
      const kinds = (mm: any, files: Map<number, any>) => [...new Set(mm.vmas.map((v: any) => vmaShape(v, files).slice(0, 6).join(':')))].sort();
      t.same(kinds(myMm, myFiles), kinds(fxMm, fxFiles), `task ${i}: kinds of VMAs`);
    } else {
      // Sorted: where the kernel places each mapping (so their order) is an address matter.
      const shapes = (mm: any, files: Map<number, any>) => mm.vmas.map((v: any) => JSON.stringify(vmaShape(v, files))).sort();
      t.same(shapes(myMm, myFiles), shapes(fxMm, fxFiles), `task ${i}: VMAs (prot, flags, status, madv, fdflags, file, size, pgoff)`);
    }
    t.equal(fileName(myFiles, myMm.exe_file_id), fileName(fxFiles, fxMm.exe_file_id), `task ${i}: exe`);
    t.same(myMm.mm_saved_auxv.filter((_: unknown, j: number) => j % 2 === 0).map(Number), fxMm.mm_saved_auxv.filter((_: unknown, j: number) => j % 2 === 0), `task ${i}: auxv keys`);
    t.equal(num(myMm.dumpable), num(fxMm.dumpable), `task ${i}: dumpable`);
    const fxPm = fixture(fx, `pagemap-${fp}`);
    const myPm = mine(out, `pagemap-${mp}`);
    t.equal(myPm[0].pages_id, fxPm[0].pages_id, `task ${i}: pages_id`);
    // Which VMA kinds hold dumped pages, with which flags (counts vary with timing and with where a tracer poked code).
    const runKinds = (pm: any[], mm: any, files: Map<number, any>) => [...new Set(pm.slice(1).flatMap((r) => {
      const v = mm.vmas.find((v: any) => BigInt(v.start) <= BigInt(r.vaddr) && BigInt(r.vaddr) < BigInt(v.end));
      if (num(v.prot) & 4 && !(num(v.status) & 8)) return [];
      return [`${num(r.flags)}:${num(v.status)}:${num(v.status) & 0xc0 ? fileName(files, num(v.shmid)) : ''}`];
    }))].sort();
    if (!loose) t.same(runKinds(myPm, myMm, myFiles), runKinds(fxPm, fxMm, fxFiles), `task ${i}: page runs by VMA kind and flags`);
    const fxFs = fixture(fx, `fs-${fp}`)[0];
    const myFs = mine(out, `fs-${mp}`)[0];
    t.equal(myFs.umask, fxFs.umask, `task ${i}: umask`);
    t.equal(fileName(myFiles, myFs.cwd_id), fileName(fxFiles, fxFs.cwd_id), `task ${i}: cwd`);
    t.equal(fileName(myFiles, myFs.root_id), fileName(fxFiles, fxFs.root_id), `task ${i}: root`);
    // Cores: same fields everywhere; task-wide values equal.
    fxTask.threads.forEach((ft: number, j: number) => {
      const fc = fixture(fx, `core-${ft}`)[0];
      const mc = mine(out, `core-${myTree[i].threads[j]}`)[0];
      t.same(Object.keys(mc).sort(), Object.keys(fc).sort(), `core ${i}/${j}: parts`);
      const tcKeys = (c: any) => Object.keys(c.thread_core).filter((k) => !(k === 'pdeath_sig')).sort();
      t.same(tcKeys(mc), tcKeys(fc), `core ${i}/${j}: thread_core fields`);
      t.same(Object.keys(mc.thread_info).sort(), Object.keys(fc.thread_info).sort(), `core ${i}/${j}: thread_info fields`);
      t.same(mc.thread_core.creds, fc.thread_core.creds, `core ${i}/${j}: creds`);
      t.same(mc.thread_core.sas, fc.thread_core.sas, `core ${i}/${j}: sigaltstack`);
      t.equal(mc.thread_core.comm, fc.thread_core.comm, `core ${i}/${j}: comm`);
      t.equal(mc.thread_core.futex_rla_len, fc.thread_core.futex_rla_len, `core ${i}/${j}: robust list len`);
      t.same([mc.thread_core.rseq_entry?.rseq_abi_size, mc.thread_core.rseq_entry?.signature], [fc.thread_core.rseq_entry?.rseq_abi_size, fc.thread_core.rseq_entry?.signature], `core ${i}/${j}: rseq`);
      t.equal(num(mc.thread_info.gpregs.orig_ax), num(fc.thread_info.gpregs.orig_ax), `core ${i}/${j}: in the same syscall`);
      if (!loose) t.equal(num(mc.thread_info.gpregs.ax) === num(mc.thread_info.gpregs.orig_ax), num(fc.thread_info.gpregs.ax) === num(fc.thread_info.gpregs.orig_ax), `core ${i}/${j}: same syscall restart fix-up`);
      t.same(mc.thread_info.tls.map((x: any) => [x.entry_number, x.read_exec_only, x.seg_not_present]), fc.thread_info.tls.map((x: any) => [x.entry_number, x.read_exec_only, x.seg_not_present]), `core ${i}/${j}: TLS slots`);
      if (fc.tc) {
        for (const k of ['task_state', 'exit_code', 'personality', 'flags', 'blk_sigset', 'loginuid', 'oom_score_adj', 'child_subreaper']) t.equal(num(mc.tc[k]), num(fc.tc[k]), `core ${i}: tc.${k}`);
          t.equal(mc.tc.comm, fc.tc.comm, `core ${i}: tc.comm`);
        t.same(mc.tc.sigactions.map((s: any) => [num(s.sigaction) === 0 ? 0 : num(s.sigaction) === 1 ? 1 : 'h', num(s.flags), num(s.mask)]), fc.tc.sigactions.map((s: any) => [num(s.sigaction) === 0 ? 0 : num(s.sigaction) === 1 ? 1 : 'h', num(s.flags), num(s.mask)]), `core ${i}: sigactions`);
        t.same(mc.tc.timers.real, { isec: 0, iusec: 0, vsec: 0, vusec: 0 }, `core ${i}: no itimer`);
        t.equal(mc.tc.rlimits.rlimits.length, 16, `core ${i}: 16 rlimits`);
      }
    });
    // fds: same numbers 0-2, same types and flags, same sharing.
    const fxFd = fixture(fx, `fdinfo-${fixture(fx, `ids-${fp}`)[0].files_id}`).filter((e) => e.fd <= 2);
    const myFd = mine(out, `fdinfo-${mine(out, `ids-${mp}`)[0].files_id}`).filter((e) => e.fd <= 2);
    const fdShape = (fds: any[], files: Map<number, any>) => fds.map((e) => {
      const f = files.get(e.id);
      const sub = f.reg ?? f.pipe;
      return [e.fd, num(e.type), num(sub.flags), f.reg?.name ?? 'pipe', fds.findIndex((x) => x.id === e.id)];
    });
    t.same(fdShape(myFd, myFiles), fdShape(fxFd, fxFiles), `task ${i}: fds 0-2 (type, flags, path, sharing)`);
  });
}

const PY = `import threading, time\ncounts = [0, 0, 0]\ndef work(i):\n    while True:\n        counts[i] += 1\n        time.sleep(0.05)\nfor i in range(3):\n    threading.Thread(target=work, args=(i,), daemon=True).start()\nwhile True:\n    with open('/tmp/crr-fixture/py-counts', 'w') as f:\n        f.write(' '.join(map(str, counts)))\n    time.sleep(0.2)\n`;

const cases: Array<{ name: string; cmd: string[]; pre?: () => void; loose?: boolean }> = [
  { name: 'sleep', cmd: ['/usr/bin/sleep', '1000000'] },
  { name: 'sh-loop', cmd: ['/bin/sh', '-c', 'cd /tmp/crr-fixture && i=0; while :; do i=$((i+1)); echo $i > counter; /usr/bin/sleep 1; done'], pre: () => mkdirSync('/tmp/crr-fixture', { recursive: true }) },
  { name: 'pipe', cmd: ['/bin/sh', '-c', '/usr/bin/sleep 1000000 | /usr/bin/cat'] },
  { name: 'py-threads', cmd: ['/usr/bin/python3', '-c', PY], pre: () => mkdirSync('/tmp/crr-fixture', { recursive: true }), loose: true },
];

for (const c of cases) {
  t.test(`${c.name}: images match the CRIU 4.2 fixture`, async (t) => {
    c.pre?.();
    const pid = await startDetached(c.cmd);
    const out = mkdtempSync(join(tmpdir(), `crr-dump-${c.name}-`));
    const pids = treeOf(pid);
    t.teardown(async () => {
      await killAll(pids);
      rmSync(out, { recursive: true, force: true });
    });
    await dump({ pid, imagesDir: out });
    compare(t, c.name, out, c.loose);
    if (c.name === 'pipe') {
      t.same(mine(out, 'pipes-data').map((e) => [e.bytes, e.size]), fixture('pipe', 'pipes-data').map((e) => [e.bytes, e.size]), 'pipes-data: one entry for the pipe inside the tree');
    }
  });
}
