// The crr side of each bench figure: dump a workload through the library, then restore it
// through the library (in a fresh PID namespace each time, so runs need no free PIDs) or through
// the CLI (node start-up included). Every restored tree is checked to be the workload itself
// (comm, task and thread counts) before its time counts, then killed and reaped by PID.
import { spawn, spawnSync } from 'node:child_process';
import { setMaxListeners } from 'node:events';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { killPids } from './procs.js';

/** Load crr from dist/; a missing or broken build becomes a "not measured" reason, not a crash. */
export async function loadCrr(root) {
  try {
    const lib = await import(join(root, 'dist/index.js'));
    if (typeof lib.restore !== 'function' || typeof lib.dump !== 'function') return { error: 'dist/index.js lacks restore() or dump()' };
    return { lib };
  } catch (err) {
    return { error: `cannot load dist/index.js (run npm run build): ${err.message}` };
  }
}

export function pagesBytes(imagesDir) {
  return readdirSync(imagesDir)
    .filter((f) => /^pages-\d+\.img$/.test(f))
    .reduce((sum, f) => sum + statSync(join(imagesDir, f)).size, 0);
}

export function largestPagesFile(imagesDir) {
  const files = readdirSync(imagesDir).filter((f) => /^pages-\d+\.img$/.test(f));
  files.sort((a, b) => statSync(join(imagesDir, b)).size - statSync(join(imagesDir, a)).size);
  return files.length ? join(imagesDir, files[0]) : undefined;
}

export async function dumpWorkload(lib, pid, imagesDir) {
  const t0 = performance.now();
  const result = await lib.dump({ pid, imagesDir });
  return { ms: performance.now() - t0, pagesBytes: result.pagesBytes, pids: result.pids };
}

function readProc(path) {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** Why a restored tree is not the workload, or undefined when it is. */
export function checkRestored(rootHostPid, hostPids, expect) {
  const comm = readProc(`/proc/${rootHostPid}/comm`);
  if (comm !== expect.comm) return `restored root runs '${comm ?? 'nothing'}', not the workload '${expect.comm}'`;
  if (hostPids && hostPids.size !== expect.tasks) return `restored ${hostPids.size} tasks, expected ${expect.tasks}`;
  if (expect.threads > 1) {
    const threads = readdirSync(`/proc/${rootHostPid}/task`).length;
    if (threads !== expect.threads) return `restored root has ${threads} threads, expected ${expect.threads}`;
  }
  return undefined;
}

/**
 * CPU time this process's main thread has run (ms; schedstat's first field). A restore's share of
 * it does not count the time the thread waited for the CPU, so unlike wall time it stays honest
 * on a loaded machine: per task, it must not grow with the tree.
 */
export function mainThreadCpuMs() {
  try {
    return Number(readFileSync(`/proc/self/task/${process.pid}/schedstat`, 'utf8').split(' ')[0]) / 1e6;
  } catch {
    return undefined; // no schedstats in this kernel
  }
}

const stepDurations = (timings) => timings.steps.filter((s) => s.end !== undefined).map((s) => [s.step, s.end - s.start]);

/**
 * Restore `runs` times through the library. Resolves with wall times, step timings and the main
 * thread's CPU time of each restore (`cpus`, ms), or with
 * { error } at the first failing run (a restore crr cannot do yet is "not measured", not a crash).
 */
export async function libraryRestores(lib, imagesDir, runs, expect, { extra = {}, beforeRun, timeoutMs = 300000, onRun } = {}) {
  const walls = [];
  const steps = [];
  const cpus = [];
  let incomplete;
  for (let i = 0; i < runs; i++) {
    beforeRun?.();
    let result;
    const cpu0 = mainThreadCpuMs();
    const t0 = performance.now();
    try {
      const signal = AbortSignal.timeout(timeoutMs);
      setMaxListeners(0, signal); // every task actor listens to it
      result = await lib.restore({ imagesDir, pidNamespace: true, signal, ...extra });
    } catch (err) {
      return { error: oneLine(err), walls, steps };
    }
    const wall = performance.now() - t0;
    const cpu1 = mainThreadCpuMs();
    try {
      incomplete ??= checkRestored(result.rootHostPid, result.hostPids, expect);
    } finally {
      // kill() reaps every task before it resolves; killing their PIDs again afterwards would hit
      // whatever reused them (other work on this machine), so only when kill() itself failed.
      await result.kill().catch(() => killPids([...result.hostPids.values()], 10000));
    }
    walls.push(wall);
    steps.push(stepDurations(result.timings));
    if (cpu0 !== undefined && cpu1 !== undefined) cpus.push(cpu1 - cpu0);
    onRun?.(wall);
  }
  return { walls, steps, cpus, incomplete };
}

/**
 * `crr restore --pid-namespace` from a fresh node: spawn until its "restored" line. The figure
 * (`walls`) is taken without NODE_EXTRA_CA_CERTS: when set (this VM sets it), Node 20 loads the
 * CA bundle at every start (100-170 ms here) though crr never uses TLS. The CLI's code cache
 * (src/cli/code-cache.ts) lives in a folder of the bench's own: the first run, not counted, finds
 * none and writes it (`firstRun`), as an installed crr's first command does. Each run also
 * measures, interleaved so load swings hit all alike, the CLI without the code cache, with the
 * environment as it is, and `node -e 0` both ways: how much of the CLI figure is node and the
 * environment, not crr.
 */
export async function cliRestores(root, imagesDir, runs, expect, timeoutMs = 120000, onRun) {
  const cacheHome = mkdtempSync(join(tmpdir(), 'crr-bench-code-cache-'));
  const envAsIs = { ...process.env, XDG_CACHE_HOME: cacheHome };
  const bare = withoutExtraCaCerts(envAsIs);
  const caCerts = process.env.NODE_EXTRA_CA_CERTS;
  const walls = [];
  const cli = { extraCaCerts: caCerts ?? null, envAsIs: [], noCodeCache: [], nodeBare: [], nodeEnvAsIs: [], importsBare: [] };
  let incomplete;
  try {
    const first = await cliRestoreOnce(root, imagesDir, expect, timeoutMs, bare);
    if (first.error) return { error: first.error, walls, cli };
    cli.firstRun = first.wall;
    for (let i = 0; i < runs; i++) {
      const r = await cliRestoreOnce(root, imagesDir, expect, timeoutMs, bare);
      if (r.error) return { error: r.error, walls, cli };
      walls.push(r.wall);
      incomplete ??= r.incomplete;
      onRun?.(r.wall);
      const uncached = await cliRestoreOnce(root, imagesDir, expect, timeoutMs, { ...bare, CRR_NO_CODE_CACHE: '1' });
      if (uncached.error) return { error: `without the code cache: ${uncached.error}`, walls, cli };
      cli.noCodeCache.push(uncached.wall);
      cli.nodeBare.push(nodeStart(bare));
      cli.importsBare.push(nodeStart(bare, restoreImports(root)));
      if (caCerts === undefined) continue; // the environment is the bare one: nothing more to compare
      const asIs = await cliRestoreOnce(root, imagesDir, expect, timeoutMs, envAsIs);
      if (asIs.error) return { error: `with NODE_EXTRA_CA_CERTS: ${asIs.error}`, walls, cli };
      cli.envAsIs.push(asIs.wall);
      cli.nodeEnvAsIs.push(nodeStart(envAsIs));
    }
    return { walls, incomplete, cli };
  } finally {
    rmSync(cacheHome, { recursive: true, force: true });
  }
}

function withoutExtraCaCerts(env) {
  const copy = { ...env };
  delete copy.NODE_EXTRA_CA_CERTS;
  return copy;
}

/** What `crr restore` loads before it restores, as bin/crr.js loads it (with the code cache). */
function restoreImports(root) {
  const path = (p) => JSON.stringify(join(root, p));
  return [
    "import { createRequire } from 'node:module';",
    "import { setFlagsFromString } from 'node:v8';",
    "process.env.MSGPACKR_NATIVE_ACCELERATION_DISABLED = 'true';",
    // V8 takes cached code only when compiled under the same flags.
    "setFlagsFromString('--semi-space-growth-factor=16');",
    `const require = createRequire(${path('bin/crr.js')});`,
    `require(${path('dist-cjs/cli/code-cache.js')}).installCodeCache();`,
    ...['cli/main.js', 'cli/commands/restore.js', 'restore/launcher.js', 'restore/index.js'].map((p) => `require(${path(`dist-cjs/${p}`)});`),
  ].join(' ');
}

/**
 * Wall time of `node -e 0` (the floor of any CLI figure: node start-up and exit), or of a node
 * that only runs `script` (an ES module), such as the CLI's imports without the restore.
 */
function nodeStart(env, script = '0') {
  const t0 = performance.now();
  const args = script === '0' ? ['-e', '0'] : ['--input-type=module', '-e', script];
  const r = spawnSync(process.execPath, args, { env, stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`node ${args.join(' ').slice(0, 60)} exited ${r.status ?? r.signal}: ${r.stderr.trim().split('\n').pop()}`);
  return performance.now() - t0;
}

function cliRestoreOnce(root, imagesDir, expect, timeoutMs, env) {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, [join(root, 'bin/crr.js'), 'restore', '-D', imagesDir, '--pid-namespace'], {
      stdio: ['ignore', 'ignore', 'pipe'],
      env,
    });
    let stderr = '';
    let outcome;
    const timer = setTimeout(() => finish({ error: `crr restore gave no "restored" line in ${timeoutMs} ms` }), timeoutMs);
    function finish(value) {
      if (outcome) return;
      outcome = value;
      clearTimeout(timer);
      // crr is our child; killing it kills the namespace init, and with it the restored tree.
      child.kill('SIGKILL');
    }
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk) => {
      stderr += chunk;
      const m = /restored (\d+) task\(s\), root pid (\d+)/.exec(stderr);
      if (m && !outcome) {
        const wall = performance.now() - t0;
        const rootHostPid = Number(m[2]);
        const tasks = Number(m[1]);
        const incomplete = tasks !== expect.tasks ? `restored ${tasks} tasks, expected ${expect.tasks}` : checkRestored(rootHostPid, undefined, expect);
        finish({ wall, incomplete, rootHostPid });
      }
    });
    child.on('exit', async (code, signal) => {
      if (!outcome) finish({ error: `crr restore exited ${code ?? signal}: ${stderr.trim().split('\n').pop() ?? ''}` });
      if (outcome.rootHostPid) await killPids([outcome.rootHostPid], 10000);
      resolve(outcome);
    });
  });
}

export function oneLine(err) {
  const text = err instanceof Error ? `${err.name === 'Error' ? '' : err.name + ': '}${err.message}` : String(err);
  return text.split('\n')[0].slice(0, 300);
}
