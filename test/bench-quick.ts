// CI smoke test of the bench: the floor programs with tiny sizes print the JSON the runner reads,
// the workload programs start the processes they promise, and `bench/run.js --quick` completes
// and reports every quick workload (measured or with its reason), leaving no process behind.
// It checks that the bench works, never how fast anything is.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { copyFixture } from './lib/restore-images.js';

const root = fileURLToPath(new URL('../', import.meta.url));
const floor = (name: string) => join(root, 'bench/floor/build', name);
const workload = (name: string) => join(root, 'bench/workloads/build', name);
const work = mkdtempSync(join(tmpdir(), 'crr-bench-test-'));
t.teardown(() => rmSync(work, { recursive: true, force: true }));

function runJson(file: string, args: string[]): { status: number | null; json: Record<string, any> } {
  const r = spawnSync(file, args, { encoding: 'utf8', timeout: 60000 });
  return { status: r.status, json: JSON.parse(r.stdout.trim()) };
}

function present(pid: number): boolean {
  return existsSync(`/proc/${pid}`);
}

async function killAndWait(pids: number[]): Promise<void> {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone already
    }
  }
  for (let i = 0; i < 500 && pids.some(present); i++) await sleep(20);
}

/** PIDs of processes running a bench program (workload or floor) right now. */
function benchProcesses(): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const exe = readlinkSync(`/proc/${entry}/exe`);
      if (exe.startsWith(join(root, 'bench/workloads/build')) || exe.startsWith(join(root, 'bench/floor/build'))) found.push(Number(entry));
    } catch {
      // exited, or a kernel thread
    }
  }
  return found;
}

async function startWorkload(name: string, args: string[]): Promise<number[]> {
  const ready = join(work, `${name}-${args.join('-')}.ready`);
  const r = spawnSync('setsid', ['-f', 'sh', '-c', 'exec "$0" "$@" </dev/null >/dev/null 2>&1', workload(name), ...args, ready]);
  if (r.status !== 0) throw new Error(`setsid failed: ${r.stderr}`);
  for (let i = 0; i < 1000 && !existsSync(ready); i++) await sleep(10);
  return readFileSync(ready, 'utf8').trim().split('\n').map(Number);
}

t.test('native programs build', async (t) => {
  for (const dir of ['bench/floor', 'bench/workloads']) {
    const r = spawnSync('make', ['-s', '-C', join(root, dir)], { encoding: 'utf8' });
    t.equal(r.status, 0, `make -C ${dir}: ${r.stderr}`);
  }
});

t.test('fill floor: MB/s per method as JSON', async (t) => {
  const file = join(work, 'pages.img');
  writeFileSync(file, Buffer.alloc(4 << 20, 0x5a));
  const { status, json } = runJson(floor('fill'), [file, '2']);
  t.equal(status, 0);
  t.equal(json.bytes, 4 << 20);
  t.equal(json.cold, false);
  const methods = ['read_reused', 'preadv', 'populate_preadv', 'hugepage_preadv', 'hugepage_populate_preadv', 'direct_preadv'];
  t.same(Object.keys(json.methods).sort(), [...methods].sort());
  for (const m of methods) {
    t.ok(json.methods[m].best_ms > 0 && json.methods[m].median_ms >= json.methods[m].best_ms, `${m} times`);
    t.ok(json.methods[m].mbps > 0, `${m} MB/s`);
    const ofMedian = json.bytes / 1e3 / json.methods[m].median_ms;
    t.ok(Math.abs(json.methods[m].mbps - ofMedian) <= ofMedian * 0.01, `${m}: MB/s of the median run (${json.methods[m].mbps} ~ ${ofMedian.toFixed(1)})`);
    t.ok(json.methods[m].best_mbps >= json.methods[m].mbps, `${m}: the best run's MB/s beside`);
  }
  const fills = methods.filter((m) => m !== 'read_reused');
  t.ok(fills.includes(json.fastest_fill), 'the fastest fill is a fill of fresh memory');
  t.equal(json.fastest_fill_mbps, Math.max(...fills.map((m) => json.methods[m].mbps)));
});

t.test('fill floor: a missing file is a JSON error naming the syscall', async (t) => {
  const { status, json } = runJson(floor('fill'), [join(work, 'absent.img')]);
  t.equal(status, 1);
  t.equal(json.error, 'open');
  t.equal(json.errno, 2);
});

t.test('tree and threads floors', async (t) => {
  const tree = runJson(floor('tree'), ['3', '1']);
  t.equal(tree.status, 0);
  t.match(tree.json, { tasks: 3, mib_per_task: 1 });
  t.ok(tree.json.ready_ms > 0 && tree.json.total_ms >= tree.json.ready_ms, 'ready, then all reaped');
  const threads = runJson(floor('threads'), ['4']);
  t.equal(threads.status, 0);
  t.equal(threads.json.threads, 4);
  t.ok(threads.json.ready_ms >= 0);
});

t.test('workloads start what they promise and die by PID', async (t) => {
  const pids: number[] = [];
  t.teardown(() => killAndWait(pids));
  const tree = await startWorkload('tree', ['3', '1']);
  pids.push(...tree);
  t.equal(tree.length, 3, 'root and two children listed');
  for (const pid of tree) t.equal(readFileSync(`/proc/${pid}/comm`, 'utf8').trim(), 'tree');
  for (const pid of tree.slice(1)) t.match(readFileSync(`/proc/${pid}/stat`, 'utf8'), new RegExp(`^${pid} \\(tree\\) S ${tree[0]} `));
  t.same(readdirSync(`/proc/${tree[0]}/fd`).sort(), ['0', '1', '2'], 'no fd but stdio left in the dumped task');
  const [threadsPid] = await startWorkload('threads', ['5']);
  pids.push(threadsPid!);
  t.equal(readdirSync(`/proc/${threadsPid}/task`).length, 5);
  const [memoryPid] = await startWorkload('memory', ['8']);
  pids.push(memoryPid!);
  const rssKib = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${memoryPid}/status`, 'utf8'))![1]);
  t.ok(rssKib >= 8 * 1024, `8 MiB dirty (VmRSS ${rssKib} KiB)`);
  await killAndWait(pids);
  t.same(pids.filter(present), [], 'every workload PID gone');
});

t.test('bench/run.js refuses an option it does not know, and says how it is used', async (t) => {
  const bad = spawnSync(process.execPath, ['bench/run.js', '--quik'], { cwd: root, encoding: 'utf8', timeout: 30000 });
  t.equal(bad.status, 2, 'exit 2');
  t.match(bad.stderr, /Unknown option '--quik'/);
  t.match(bad.stderr, /usage: npm run bench/);
  t.equal(bad.stdout, '', 'no workload started');
  const help = spawnSync(process.execPath, ['bench/run.js', '--help'], { cwd: root, encoding: 'utf8', timeout: 30000 });
  t.equal(help.status, 0);
  t.match(help.stdout, /--runs N/);
});

t.test('bench/ab.js restores a checkpoint with the variable set and unset, in turn, and prints both', { skip: existsSync(join(root, 'dist/index.js')) ? false : 'no build (npm run build)' }, async (t) => {
  const dir = copyFixture(t, 'sleep');
  const r = spawnSync(process.execPath, ['bench/ab.js', '-D', dir, '--var', 'CRR_FILL', '--value', 'fault', '--pairs', '2'], { cwd: root, encoding: 'utf8', timeout: 60000 });
  t.equal(r.status, 0, `exit 0 ${r.stderr.slice(-300)}`);
  t.match(r.stdout, /^CRR_FILL=fault +wall \d+ ms, machine CPU \d+ ms, main thread \d+ ms \(2 restores\)$/m);
  t.match(r.stdout, /^CRR_FILL unset +wall \d+ ms, machine CPU \d+ ms, main thread \d+ ms \(2 restores\)$/m);
  const bad = spawnSync(process.execPath, ['bench/ab.js', '-D', dir], { cwd: root, encoding: 'utf8', timeout: 30000 });
  t.equal(bad.status, 2, 'no --var: exit 2');
  t.match(bad.stderr, /usage: node bench\/ab.js/);
});

t.test('bench/run.js --quick reports every quick workload', { skip: existsSync(join(root, 'dist/index.js')) ? false : 'no build (npm run build)' }, async (t) => {
  const jsonFile = join(work, 'quick.json');
  t.teardown(() => killAndWait(benchProcesses()));
  const r = spawnSync(process.execPath, ['bench/run.js', '--quick', '--json', jsonFile], { cwd: root, encoding: 'utf8', timeout: 150000 });
  t.equal(r.status, 0, `runner exit (${r.signal ?? ''}) ${r.stderr.slice(-500)}`);
  t.match(r.stdout, /targets \(quick mode/);
  const report = JSON.parse(readFileSync(jsonFile, 'utf8'));
  t.equal(report.quick, true);
  const names = report.rows.map((row: { name: string }) => row.name);
  t.same(names, ['tree-1', 'tree-1 cli', 'tree-100', 'tree-100 pool=on', 'tree-100 pool=off', 'threads-1', 'threads-100', 'memory-64', 'memory-64 cold', 'memory-64 lazy']);
  for (const row of report.rows) {
    if (row.error) {
      t.type(row.error, 'string', `${row.name}: not measured, with a reason`);
      continue;
    }
    t.equal(row.restore.runs, 3, `${row.name}: 3 runs`);
    // Each workload's first library row follows one uncounted warm-up restore; variants follow it.
    if (row.variant === undefined) t.ok(row.warmupMs > 0, `${row.name}: warm-up restore timed`);
    else t.equal(row.warmupMs, undefined, `${row.name}: no warm-up of its own`);
    t.ok(row.restore.min <= row.restore.median && row.restore.median <= row.restore.max, `${row.name}: min <= median <= max`);
    t.ok(row.floor && (row.floor.ms > 0 || row.floor.mbps > 0), `${row.name}: floor measured`);
    // Lazy pages: the time until the tree runs is no fill rate, so no ratio.
    if (row.variant === 'lazy') t.equal(row.ratio, undefined, `${row.name}: no ratio`);
    else t.ok(row.ratio > 0, `${row.name}: ratio to the floor`);
    // Library restores run in the runner's process, so its main thread's CPU time is theirs; the
    // CLI row is another process and has none.
    if (row.variant === 'cli') t.equal(row.mainCpu, undefined, `${row.name}: no main-thread CPU of its own`);
    else t.ok(row.mainCpu.min > 0 && row.mainCpu.min <= row.mainCpu.median && row.mainCpu.median <= row.restore.max * 1.05, `${row.name}: main-thread CPU measured, within the wall time`);
  }
  const verdicts = new Set(['pass', 'MISS', 'not measured', 'incomplete']);
  t.ok(report.targets.length >= 3 && report.targets.every((x: { verdict: string }) => verdicts.has(x.verdict)), 'a verdict per target');
  await sleep(200);
  t.same(benchProcesses(), [], 'no workload or floor process left running');
});
