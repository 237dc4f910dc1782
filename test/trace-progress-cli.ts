// The live progress line through the real CLI (`node bin/crr.js`): under a pseudo-terminal
// (util-linux `script`) `crr restore` and `crr dump` draw it (\r + erase-line, "restore · ..."),
// without a terminal or with --json nothing of it is written, and `crr restore --json` prints the
// result summary. Restores run in a fresh PID namespace with a pidfile; every restored root is
// killed by its host PID and every `script`/crr process is killed by PID and waited for.
// Rebuilds dist first when it is older than src (tests otherwise run from src).
import t, { type Test } from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { copyFixture, alive } from './lib/restore-images.js';
import { startProgram, requestCheck, waitFor } from './lib/programs.js';
import { ensureBuilt } from './lib/built.js';

const root = new URL('../', import.meta.url).pathname;
const crr = join(root, 'bin/crr.js');
const PROGRESS = '\r\x1b[K';

t.before(() => ensureBuilt('dist/cli/main.js', 'src'));

interface Run {
  child: ChildProcess;
  /** Everything written (with a terminal: stdout and stderr interleaved, as the terminal saw them). */
  output: () => string;
  stderr: () => string;
  exit: Promise<number | null>;
}

/** `node bin/crr.js ARGS`, on a pseudo-terminal through `script` when `tty`, else with pipes. */
function runCrr(t: Test, args: string[], tty: boolean): Run {
  const child = tty
    ? spawn('script', ['-qec', ['node', crr, ...args].join(' '), '/dev/null'], { stdio: ['ignore', 'pipe', 'pipe'] })
    : spawn('node', [crr, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d) => (out += String(d)));
  child.stderr!.on('data', (d) => (err += String(d)));
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exit;
    }
  });
  return { child, output: () => out, stderr: () => err, exit };
}

/** Restores the sleep fixture (root 17288) in a PID namespace; ends it by killing the root. */
async function restoreSleep(t: Test, tty: boolean, extra: string[] = []): Promise<{ run: Run; code: number | null; host: number }> {
  const dir = copyFixture(t, 'sleep');
  const pidfile = join(dir, 'root.pid');
  const run = runCrr(t, ['restore', '-D', dir, '--pid-namespace', '--pidfile', pidfile, ...extra], tty);
  const host = await waitFor('the pidfile', () => (existsSync(pidfile) ? Number(readFileSync(pidfile, 'utf8')) || undefined : undefined), 30_000).catch((err) => {
    throw new Error(`${(err as Error).message}; crr wrote ${JSON.stringify(run.output() + run.stderr())}`);
  });
  t.teardown(() => {
    try {
      process.kill(host, 'SIGKILL');
    } catch {
      // already gone
    }
  });
  t.not(host, process.pid);
  process.kill(host, 'SIGKILL');
  const code = await run.exit;
  await waitFor('the root to be reaped', () => (alive(host) ? undefined : true), 30_000);
  return { run, code, host };
}

t.test('crr restore on a terminal shows the progress line, then the final line', async (t) => {
  const { run, code } = await restoreSleep(t, true);
  t.equal(code, 128 + 9, 'crr exits with the root status (SIGKILL)');
  const out = run.output();
  t.match(out, /\r\x1b\[Krestore · (fork|load|plan|memory)/, 'the progress line is drawn in place');
  t.match(out, /\r\x1b\[Krestore · memory( ·|\r)/, 'it reaches the memory step (the step name whole)');
  t.match(out, /\r\x1b\[K(\r\n)?restored 1 task\(s\)/, 'erased before the final line');
});

t.test('crr restore without a terminal writes no progress line', async (t) => {
  const { run, code } = await restoreSleep(t, false);
  t.equal(code, 128 + 9);
  t.match(run.stderr(), /restored 1 task\(s\)/, 'the final line is there');
  t.notOk(run.stderr().includes('\x1b['), 'no escape sequences on stderr');
  t.equal(run.output(), '', 'nothing on stdout');
});

t.test('crr restore --json on a terminal: the summary, and no progress line', async (t) => {
  const { run, host } = await restoreSleep(t, true, ['--json']);
  const out = run.output();
  t.notOk(out.includes(PROGRESS), 'no progress line with --json');
  const line = out.split(/\r?\n/).find((l) => l.startsWith('{'));
  t.ok(line, 'a JSON line');
  const summary = JSON.parse(line!) as { rootPid: number; rootHostPid: number; tasks: Array<{ pid: number; hostPid: number }>; timings: { steps: Array<{ step: string }> } };
  t.equal(summary.rootPid, 17288, 'rootPid as the tree sees it');
  t.equal(summary.rootHostPid, host, 'rootHostPid is the pidfile’s');
  t.same(summary.tasks, [{ pid: 17288, hostPid: host }], 'tasks');
  t.ok(summary.timings.steps.some((s) => s.step === 'memory'), 'timings per step');
});

t.test('crr dump on a terminal shows its progress line; --json does not', async (t) => {
  const prog = await startProgram(t, 'counter');
  for (const json of [false, true]) {
    const dir = mkdtempSync(join(tmpdir(), 'crr-progress-dump-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const run = runCrr(t, ['dump', '-t', String(prog.pid), '-D', dir, '--leave-running', ...(json ? ['--json'] : [])], true);
    t.equal(await run.exit, 0, `crr dump ${json ? '--json ' : ''}exits 0 ${run.output()}`);
    if (json) {
      t.notOk(run.output().includes(PROGRESS), '--json: no progress line');
      t.match(run.output(), /"pids":\[\d+\]/, '--json: the summary');
    } else {
      t.match(run.output(), /\r\x1b\[Kdump · (freeze|collect)( ·|\r)/, 'the progress line is drawn (the stage name whole)');
      t.match(run.output(), /dump · [^\r]*pages \d+/, 'with pages written');
      t.ok(run.output().endsWith(PROGRESS), 'and erased at the end');
    }
  }
  const check = await requestCheck(prog.pid, prog.resultFile);
  t.ok(check.pass, `program passes after the dumps: ${check.text}`);
});
