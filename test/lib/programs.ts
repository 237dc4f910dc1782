// Test harness for the self-checking C programs in test/programs/ (docs/TEST-PROGRAMS.md):
// builds them, starts one outside Node's own process tree, asks it to check itself, and kills
// and waits out every process it started, by PID.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

export const programsDir = fileURLToPath(new URL('../programs/', import.meta.url));
export const programsBuildDir = join(programsDir, 'build');

/** Anything tap-like that can run cleanup when the test ends. */
export interface TeardownHost {
  teardown(fn: () => unknown): void;
}

export interface Running {
  pid: number;
  resultFile: string;
  /** The program's temp directory: its result file and any files it made live here. */
  dir: string;
  /** PIDs of the whole tree now: the program and every descendant (zombies included). */
  tree(): number[];
}

export interface StartOptions {
  cwd?: string;
  env?: Record<string, string>;
  readyTimeoutMs?: number;
}

export interface CheckResult {
  pass: boolean;
  text: string;
}

let built = false;

/** make -C test/programs, quietly; throws with make's output when the build fails. */
export function buildPrograms(): void {
  if (built) return;
  const r = spawnSync('make', ['-s', '-C', programsDir], { encoding: 'utf8' });
  if (r.status !== 0) {
    throw new Error(`building test programs failed (make exit ${r.status}):\n${r.stdout}${r.stderr}`);
  }
  built = true;
}

export function programPath(name: string): string {
  return join(programsBuildDir, name);
}

function childrenOf(pid: number): number[] {
  const found: number[] = [];
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return found;
  }
  for (const tid of tasks) {
    try {
      const text = readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim();
      if (text) found.push(...text.split(/\s+/).map(Number));
    } catch {
      // the thread exited while we looked
    }
  }
  return found;
}

/** The process and all its descendants, root first. Empty when the root is gone. */
export function processTree(root: number): number[] {
  if (!existsSync(`/proc/${root}`)) return [];
  const out: number[] = [];
  const queue = [root];
  while (queue.length) {
    const pid = queue.shift()!;
    if (out.includes(pid)) continue;
    out.push(pid);
    queue.push(...childrenOf(pid));
  }
  return out;
}

function cmdlineMentions(pid: number, marker: string): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(marker);
  } catch {
    return false;
  }
}

/** Resolves once /proc/PID is gone (killed and reaped); rejects after timeoutMs. */
export async function waitPidGone(pid: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (existsSync(`/proc/${pid}`)) {
    if (Date.now() > deadline) {
      let state = '?';
      try {
        state = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ')[0]!;
      } catch {
        // gone just now
      }
      throw new Error(`pid ${pid} still exists after ${timeoutMs} ms (state ${state})`);
    }
    await sleep(20);
  }
}

/** SIGKILL every PID (those already gone are fine) and wait until each one is gone. */
export async function killTree(pids: number[], timeoutMs = 10_000): Promise<void> {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ESRCH') throw e;
    }
  }
  const failures: string[] = [];
  await Promise.all(
    pids.map((pid) => waitPidGone(pid, timeoutMs).catch((e: Error) => failures.push(e.message))),
  );
  if (failures.length) throw new Error(failures.join('; '));
}

function readResult(resultFile: string): string {
  try {
    return readFileSync(resultFile, 'utf8');
  } catch {
    return '';
  }
}

/** Runs the runner (test/programs/runner.c) and resolves with the program's PID it prints. The
 * runner stays alive as the program's parent and reaper; it is unref'd so it never holds the
 * test process open, and libuv reaps it when it exits. */
function launchThroughRunner(program: string, args: string[], opts: StartOptions): Promise<number> {
  return new Promise((resolve, reject) => {
    const runner = spawn(programPath('runner'), [program, ...args], {
      cwd: opts.cwd,
      env: { ...process.env, ...opts.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    runner.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    runner.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const line = out.split('\n')[0]!;
      if (out.includes('\n')) {
        const pid = Number(line);
        if (!(Number.isInteger(pid) && pid > 0)) return reject(new Error(`runner printed ${JSON.stringify(line)}`));
        // from here on the runner only reaps: it must not keep the test process alive
        runner.unref();
        (runner.stdout as unknown as { unref?: () => void }).unref?.();
        (runner.stderr as unknown as { unref?: () => void }).unref?.();
        resolve(pid);
      }
    });
    runner.on('error', reject);
    runner.on('exit', (code) => reject(new Error(`runner exited (${code}) before printing a PID: ${err.trim()}`)));
  });
}

/**
 * Starts test program `name` with RESULT_FILE in a fresh temp dir, through the runner, so its
 * parent is the runner (never this Node process), in its own session, stdio on /dev/null, no
 * other fds. Resolves
 * once it wrote READY. Teardown kills its whole tree by PID, waits them out, removes the dir.
 */
export async function startProgram(
  t: TeardownHost,
  name: string,
  args: string[] = [],
  opts: StartOptions = {},
): Promise<Running> {
  buildPrograms();
  const dir = mkdtempSync(join(tmpdir(), `crr-${name}-`));
  const resultFile = join(dir, 'result');
  let pid: number;
  try {
    pid = await launchThroughRunner(programPath(name), [resultFile, ...args], { ...opts, cwd: opts.cwd ?? dir });
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`starting ${name}: ${(e as Error).message}`);
  }
  // Known members: restored trees come back with the same PIDs, and an orphaned member (its
  // parent exited) is no longer reachable from the root; the marker guards against PID reuse.
  const known = new Set<number>([pid]);
  const running: Running = { pid, resultFile, dir, tree: () => processTree(pid) };
  t.teardown(async () => {
    const targets = new Set(running.tree());
    for (const p of known) if (cmdlineMentions(p, resultFile)) targets.add(p);
    try {
      await killTree([...targets]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  const deadline = Date.now() + (opts.readyTimeoutMs ?? 15_000);
  for (;;) {
    const text = readResult(resultFile);
    if (text.startsWith('READY ')) {
      if (Number(text.slice(6)) !== pid) throw new Error(`${name}: READY names pid ${text.slice(6).trim()}, runner said ${pid}`);
      break;
    }
    if (text.startsWith('ERROR') || !existsSync(`/proc/${pid}`) || Date.now() > deadline) {
      throw new Error(`${name} (pid ${pid}) did not become ready: ${JSON.stringify(text)}`);
    }
    await sleep(20);
  }
  for (const p of running.tree()) known.add(p);
  return running;
}

function isGoneOrZombie(pid: number): boolean {
  try {
    const state = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ')[0];
    return state === 'Z' || state === 'X';
  } catch {
    return true;
  }
}

/**
 * Sends SIGUSR1 and waits for PASS or FAIL in the result file. The old result file is removed
 * first, so a PASS left by an earlier check (say, before a second restore) is never mistaken
 * for this one.
 */
export async function requestCheck(pid: number, resultFile: string, timeoutMs = 20_000): Promise<CheckResult> {
  try {
    unlinkSync(resultFile);
  } catch {
    // not there: fine
  }
  process.kill(pid, 'SIGUSR1');
  const deadline = Date.now() + timeoutMs;
  let goneSince = 0;
  for (;;) {
    const text = readResult(resultFile);
    if (/^(PASS|FAIL)/.test(text) && text.endsWith('\n')) return { pass: text.startsWith('PASS'), text: text.trim() };
    if (isGoneOrZombie(pid)) {
      // the file is renamed into place just before exit: give it a moment to appear
      goneSince ||= Date.now();
      if (Date.now() - goneSince > 500) throw new Error(`pid ${pid} exited without a result (file: ${JSON.stringify(text)})`);
    }
    if (Date.now() > deadline) throw new Error(`pid ${pid}: no PASS/FAIL after ${timeoutMs} ms (file: ${JSON.stringify(text)})`);
    await sleep(20);
  }
}

/** Polls `probe` every 20 ms until it returns a value; rejects naming `what` after `ms`. */
export async function waitFor<T>(what: string, probe: () => T | undefined, ms = 20_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const got = probe();
    if (got !== undefined) return got;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}
