// Processes for the bench: building the native programs, starting workloads where Node cannot
// reap them (setsid -f: libuv reaps its own children and would swallow the ptrace stops a dump
// needs), running floor programs, and killing every process by PID, then waiting until each PID
// is really gone (this VM's init reaps orphans slowly).
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export function buildPrograms(root) {
  for (const dir of ['bench/floor', 'bench/workloads']) {
    const make = spawnSync('make', ['-s', '-C', join(root, dir)], { encoding: 'utf8' });
    if (make.status !== 0) throw new Error(`make -C ${dir} failed: ${make.stderr || make.stdout}`);
  }
}

/** Start a workload detached from Node; resolves with every PID it lists in its ready file. */
export async function startWorkload(program, args, readyFile, timeoutMs) {
  const started = spawnSync('setsid', ['-f', 'sh', '-c', 'exec "$0" "$@" </dev/null >/dev/null 2>&1', program, ...args.map(String), readyFile]);
  if (started.status !== 0) throw new Error(`setsid ${program} failed: ${started.stderr}`);
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    if (existsSync(readyFile)) return readFileSync(readyFile, 'utf8').trim().split('\n').map(Number);
    await sleep(20);
  }
  throw new Error(`workload ${program} ${args.join(' ')} not ready after ${timeoutMs} ms`);
}

function alive(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

function present(pid) {
  return existsSync(`/proc/${pid}`);
}

/** SIGKILL each PID, then wait (bounded) until none is running; returns the PIDs still present. */
export async function killPids(pids, timeoutMs = 20000) {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  const deadline = performance.now() + timeoutMs;
  let left = pids.filter(alive);
  while (left.length && performance.now() < deadline) {
    await sleep(20);
    left = left.filter(alive);
  }
  // Zombies are the parent's (init's) to reap; give it a moment so PIDs come free.
  let unreaped = pids.filter(present);
  while (unreaped.length && performance.now() < deadline) {
    await sleep(20);
    unreaped = unreaped.filter(present);
  }
  return left;
}

/** Run a floor program and return its JSON; a floor that reports an error throws it. */
export function runFloor(root, name, args, timeoutMs = 600000) {
  const out = execFileSync(join(root, 'bench/floor/build', name), args.map(String), { encoding: 'utf8', timeout: timeoutMs });
  const json = JSON.parse(out.trim().split('\n').pop());
  if (json.error) throw new Error(`floor ${name}: ${json.error}: ${json.message}`);
  return json;
}

/** echo 3 > /proc/sys/vm/drop_caches; false where this machine does not allow it. */
export function dropCaches() {
  const r = spawnSync('sh', ['-c', 'sync && echo 3 > /proc/sys/vm/drop_caches'], { stdio: 'ignore' });
  return r.status === 0;
}
