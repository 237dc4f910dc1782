// Tasks a stop signal stopped (state T, as a job control shell or a platform pausing a job leaves
// them): the dump takes them as they are and marks them stopped with their stop signal; the
// restore brings them back stopped, and continued they run on with what was queued for them.
// With --leave-running they stay stopped and untraced, their mask and queued signals as before.
import t from 'tap';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { dump } from '../src/dump/index.js';
import { readImage } from '../src/images/reader.js';
import { formatSummary, summariseCheckpoint } from '../src/cli/commands/show.js';
import { dumpProgram, restoreProgram } from './lib/program-roundtrip.js';
import { startPython } from './lib/python-program.js';
import { killTree, waitFor, waitPidGone } from './lib/programs.js';

const SIGUSR2_BIT = 1n << 11n;
const SIGHUP_BIT = 1n << 0n;

function state(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ')[0];
  } catch {
    return undefined;
  }
}

function statusField(pid: number, field: string): string {
  return new RegExp(`^${field}:\\s*(\\S+)`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? '';
}

const stoppedState = (pid: number) => (state(pid) === 'T' ? true : undefined);

// A handler for SIGUSR2, which arrives while the program is stopped and waits queued; SIGHUP
// blocked; a second thread, which is in the group stop too.
const signalState = [
  'got = []',
  'signal.signal(signal.SIGUSR2, lambda *a: got.append("usr2"))',
  'signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGHUP])',
  'threading.Thread(target=lambda: time.sleep(1000), daemon=True).start()',
];
const check = ['time.sleep(0.2)', 'open(result, "w").write(repr([got, threading.active_count()]))'];

/** Stops `pid` by `stopSignal`, then queues SIGUSR2 for it. */
async function stopAndQueue(pid: number, stopSignal: NodeJS.Signals): Promise<void> {
  process.kill(pid, stopSignal);
  await waitFor('the program to stop', () => stoppedState(pid), 5000);
  process.kill(pid, 'SIGUSR2');
  await waitFor('SIGUSR2 queued', () => ((BigInt(`0x${statusField(pid, 'ShdPnd')}`) & SIGUSR2_BIT) ? true : undefined), 5000);
}

t.test('a job stopped by SIGTSTP below a running parent, with a signal queued meanwhile, comes back stopped and takes the signal when continued', async (t) => {
  // The job is a child in a process group of its own, as a shell's job is: a terminal stop signal
  // stops no orphaned group. The parent sleeps and at SIGUSR1 says how its child stopped, as a
  // shell learns it (waitpid WUNTRACED); the child runs the program's check.
  const setUp = [
    'child = os.fork()',
    'if child:',
    '    open(ready + ".child", "w").write(str(child))',
    '    def report(*_):',
    '        _, st = os.waitpid(child, os.WUNTRACED | os.WNOHANG)',
    '        open(ready + ".stop", "w").write(str(os.WSTOPSIG(st)) if st and os.WIFSTOPPED(st) else "none")',
    '    signal.signal(signal.SIGUSR1, report)',
    '    while True: time.sleep(1000)',
    'os.setpgid(0, 0)',
    ...signalState,
  ];
  const { prog, go, result } = await startPython(t, ['signal', 'threading'], setUp, check, 'the program is ready');
  const child = Number(readFileSync(join(prog.dir, 'ready.child'), 'utf8'));
  t.teardown(() => killTree([child]));
  await stopAndQueue(child, 'SIGTSTP');
  go(); // it may only look once continued
  const imagesDir = await dumpProgram(t, prog);
  await waitPidGone(child);
  const tc = (readImage(join(imagesDir, `core-${child}.img`)).all() as any[])[0].tc;
  t.equal(tc.task_state, 3, 'core: TASK_STOPPED');
  t.equal(tc.stop_signo, 20, 'core: stop_signo SIGTSTP');
  t.equal(BigInt(tc.blk_sigset) & SIGHUP_BIT, SIGHUP_BIT, 'core: its own mask (SIGHUP blocked), not the one the dump ran with');
  t.equal((tc.signals_s?.signals ?? []).length, 1, 'core: the queued SIGUSR2 among the shared pending signals');
  t.equal((readImage(join(imagesDir, `core-${prog.pid}.img`)).all() as any[])[0].tc.task_state, 1, 'core: the parent alive');
  t.match(formatSummary(summariseCheckpoint(imagesDir)), new RegExp(`\\n${child} .*python3 <stopped by SIGTSTP>\\n`), 'crr show names the stop');

  const { result: restored } = await restoreProgram(t, prog, imagesDir);
  const pid = restored.hostPids.get(child)!;
  t.ok(await waitFor('the restored job to stop', () => stoppedState(pid), 5000), 'restored stopped');
  t.not(state(restored.rootHostPid), 'T', 'its parent runs');
  process.kill(restored.rootHostPid, 'SIGUSR1');
  const stopFile = join(prog.dir, 'ready.stop');
  t.equal(await waitFor('the parent\'s waitpid', () => (existsSync(stopFile) ? readFileSync(stopFile, 'utf8') || undefined : undefined), 5000), '20', 'the parent\'s waitpid: stopped by SIGTSTP');
  await sleep(300);
  t.notOk(existsSync(prog.resultFile) && readFileSync(prog.resultFile, 'utf8'), 'it has not run: no result yet');
  t.equal(BigInt(`0x${statusField(pid, 'ShdPnd')}`) & SIGUSR2_BIT, SIGUSR2_BIT, 'SIGUSR2 still queued');
  t.equal(BigInt(`0x${statusField(pid, 'SigBlk')}`) & SIGHUP_BIT, SIGHUP_BIT, 'SIGHUP blocked');
  process.kill(pid, 'SIGCONT');
  t.equal(await result(), "[['usr2'], 2]", 'continued: the handler ran once, both threads there');
});

t.test('with --leave-running a stopped task stays stopped and untraced, its mask and queued signal as they were', async (t) => {
  const { prog, go, result } = await startPython(t, ['signal', 'threading'], signalState, check, 'the program is ready');
  const pid = prog.pid;
  await stopAndQueue(pid, 'SIGSTOP');
  go();
  const before = { blocked: statusField(pid, 'SigBlk'), shared: statusField(pid, 'ShdPnd'), own: statusField(pid, 'SigPnd') };
  const imagesDir = mkdtempSync(join(tmpdir(), 'crr-stopped-'));
  t.teardown(() => rmSync(imagesDir, { recursive: true, force: true }));
  await dump({ pid, imagesDir, leaveRunning: true });
  const tc = (readImage(join(imagesDir, `core-${pid}.img`)).all() as any[])[0].tc;
  t.equal(tc.stop_signo, 19, 'core: stop_signo SIGSTOP');
  t.ok(await waitFor('the task to stop again', () => stoppedState(pid), 5000), 'stopped again');
  t.match(readFileSync(`/proc/${pid}/status`, 'utf8'), /TracerPid:\s+0\n/, 'not traced');
  t.same({ blocked: statusField(pid, 'SigBlk'), shared: statusField(pid, 'ShdPnd'), own: statusField(pid, 'SigPnd') }, before, 'mask and queued signals as before');
  await sleep(300);
  t.notOk(existsSync(prog.resultFile) && readFileSync(prog.resultFile, 'utf8'), 'it has not run: no result yet');
  process.kill(pid, 'SIGCONT');
  t.equal(await result(), "[['usr2'], 2]", 'continued: the handler ran once, both threads there');
});
