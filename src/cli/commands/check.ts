// `crr check [--json]`: can this machine dump and restore? criu check's counterpart: the kernel,
// the capabilities crr needs, the native layer, then the real thing: a `sleep` process dumped
// and restored in a fresh PID namespace, then killed. Exit 0 when every required check passes.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { CrrError, UsageError } from '../../errors.js';
import { capabilityChecks, type CheckResult } from '../../capabilities.js';

const USAGE = 'usage: crr check [--json]';

async function nativeCheck(): Promise<CheckResult> {
  try {
    await import('../../actors/native.js');
    return { name: 'native addon', ok: true, required: true, detail: 'loaded' };
  } catch (err) {
    return { name: 'native addon', ok: false, required: true, detail: `${(err as Error).message} (npm run build)` };
  }
}

/** A `sleep` started outside this process's children (libuv reaps their ptrace stops), dumped and restored. */
async function roundTripCheck(): Promise<CheckResult> {
  const name = 'dump and restore';
  // In a session of its own: a task whose session leader is outside the tree needs --shell-job.
  const started = spawnSync('setsid', ['-f', 'sh', '-c', 'echo $$; exec sleep 600 </dev/null >/dev/null 2>&1'], { encoding: 'utf8' });
  const pid = Number(started.stdout.trim());
  if (!Number.isInteger(pid) || pid <= 0) return { name, ok: false, required: true, detail: `could not start sleep: ${started.stderr}` };
  const dir = mkdtempSync(join(tmpdir(), 'crr-check-'));
  const t0 = performance.now();
  try {
    const { dump } = await import('../../dump/index.js');
    const { restore } = await import('../../restore/index.js');
    await dump({ pid, imagesDir: dir });
    const restored = await restore({ imagesDir: dir, pidNamespace: true });
    const comm = readFileSync(`/proc/${restored.rootHostPid}/comm`, 'utf8').trim();
    await restored.kill();
    return { name, ok: comm === 'sleep', required: true, detail: `sleep (pid ${pid}) dumped and restored in a fresh PID namespace in ${Math.round(performance.now() - t0)} ms` };
  } catch (err) {
    return { name, ok: false, required: true, detail: err instanceof CrrError ? err.message : String(err) };
  } finally {
    try {
      process.kill(pid, 'SIGKILL'); // still there if the dump failed
    } catch {
      // gone: the dump killed it
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function runChecks(): Promise<CheckResult[]> {
  const checks: CheckResult[] = [{ name: 'kernel', ok: true, required: false, detail: `Linux ${release()} (crr is tested on 6.x)` }];
  checks.push(...capabilityChecks(), await nativeCheck());
  // The round trip needs the rest; without it, its failure would only repeat theirs.
  if (checks.every((c) => c.ok || !c.required)) checks.push(await roundTripCheck());
  return checks;
}

export async function run(argv: string[]): Promise<number> {
  let json = false;
  for (const arg of argv) {
    if (arg === '--json') json = true;
    else if (arg === '-h' || arg === '--help') throw new UsageError(USAGE);
    else throw new UsageError(`unsupported option '${arg}'\n${USAGE}`);
  }
  const checks = await runChecks();
  const failed = checks.filter((c) => !c.ok && c.required);
  if (json) process.stdout.write(`${JSON.stringify({ ok: failed.length === 0, checks }, null, 2)}\n`);
  else {
    for (const c of checks) process.stdout.write(`${c.ok ? 'ok  ' : c.required ? 'FAIL' : 'warn'}  ${c.name}: ${c.detail}\n`);
    process.stdout.write(failed.length ? `crr cannot dump and restore here: ${failed.map((c) => c.name).join(', ')}\n` : 'crr can dump and restore here\n');
  }
  return failed.length ? 1 : 0;
}
