// Machine checks after planning, before anything is touched: the tree's PIDs and TIDs are free
// (unless it goes into a fresh PID namespace), sessions can be made, every fd is of a kind crr
// restores, the files match, no hard rlimit needs raising, and the kernel has clone3 set_tid.
// Each failure is a StageError in stage 'plan' naming the task and what is wrong.
import { existsSync, readFileSync } from 'node:fs';
import { release } from 'node:os';
import { StageError } from '../errors.js';
import { FD_TYPES } from '../images/index.js';
import type { RestorePlan } from '../plan/plan.js';
import { RLIMIT_NAMES, rlimitsOf } from '../resources/rlimits.js';
import { sessionSource } from '../resources/task-tree.js';
import type { RestoreSession } from './context.js';
import { checkFiles } from './files.js';

const INFINITY = (1n << 64n) - 1n;
const FD_TYPE_NAMES = Object.fromEntries(Object.entries(FD_TYPES).map(([name, n]) => [n, name]));

function comm(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '?';
  }
}

export function checkPidsFree(plan: RestorePlan): void {
  for (const task of plan.tasks) {
    for (const tid of task.zombie ? [task.pid] : task.threads) {
      if (!existsSync(`/proc/${tid}`)) continue;
      throw new StageError({
        stage: 'plan',
        pid: task.pid,
        resource: 'task-tree',
        code: 'EEXIST',
        errno: 17,
        message: `${tid === task.pid ? 'pid' : 'thread id'} ${tid} is in use (by ${comm(tid)}); restore elsewhere or in a fresh PID namespace`,
      });
    }
  }
}

/** fd types with a resource kind that restores them (regfile and chardev share REG). */
export function checkFdKinds(session: RestoreSession, supported: ReadonlySet<number>): void {
  for (const [pid, set] of session.images) {
    for (const fd of set.fds) {
      if (supported.has(fd.type)) continue;
      const kind = FD_TYPE_NAMES[fd.type] ?? `type ${fd.type}`;
      throw new StageError({
        stage: 'plan',
        pid,
        resource: kind.toLowerCase(),
        code: 'ENOTSUP',
        errno: 95,
        message: `not supported: fd ${fd.fd} is a ${kind} (file id ${fd.id}); crr restores regular files and character devices so far`,
      });
    }
  }
}

/** crr's own hard limits, which its tasks inherit and cannot raise (no CAP_SYS_RESOURCE). */
export function ownHardLimits(): Map<string, bigint> {
  const limits = new Map<string, bigint>();
  const names: Record<string, string> = {
    'Max cpu time': 'CPU', 'Max file size': 'FSIZE', 'Max data size': 'DATA', 'Max stack size': 'STACK',
    'Max core file size': 'CORE', 'Max resident set': 'RSS', 'Max processes': 'NPROC', 'Max open files': 'NOFILE',
    'Max locked memory': 'MEMLOCK', 'Max address space': 'AS', 'Max file locks': 'LOCKS', 'Max pending signals': 'SIGPENDING',
    'Max msgqueue size': 'MSGQUEUE', 'Max nice priority': 'NICE', 'Max realtime priority': 'RTPRIO', 'Max realtime timeout': 'RTTIME',
  };
  for (const line of readFileSync('/proc/self/limits', 'utf8').split('\n').slice(1)) {
    const match = /^(.+?)\s{2,}(\S+)\s+(\S+)/.exec(line);
    const name = match && names[match[1]!.trim()];
    if (!name) continue;
    limits.set(name, match[3] === 'unlimited' ? INFINITY : BigInt(match[3]!));
  }
  return limits;
}

export function checkRlimits(session: RestoreSession): void {
  const own = ownHardLimits();
  for (const [pid, set] of session.images) {
    if (!set.mm) continue; // zombies keep no limits
    rlimitsOf(set.core).forEach((limit, resource) => {
      const name = RLIMIT_NAMES[resource];
      const max = name && own.get(name);
      if (max === undefined || !name || limit.max <= max) return;
      const show = (v: bigint) => (v >= INFINITY ? 'unlimited' : String(v));
      throw new StageError({
        stage: 'plan',
        pid,
        resource: 'rlimits',
        code: 'EPERM',
        errno: 1,
        message:
          `RLIMIT_${name} needs hard limit ${show(limit.max)} but crr runs with ${show(max)} and cannot raise it ` +
          '(no CAP_SYS_RESOURCE); raise it before starting crr (ulimit -H)',
      });
    });
  }
}

/** clone3 with set_tid arrived in Linux 5.5. */
export function checkKernel(): void {
  const [major = 0, minor = 0] = release().split('.').map(Number);
  if (major > 5 || (major === 5 && minor >= 5)) return;
  throw new StageError({ stage: 'plan', resource: 'task-tree', message: `kernel ${release()} lacks clone3 set_tid (needs 5.5 or later)` });
}

export function checkMachine(plan: RestorePlan, session: RestoreSession, supportedFdTypes: ReadonlySet<number>): void {
  checkKernel();
  for (const task of plan.tasks) sessionSource(task, plan.tasks, session.options.shellJob);
  if (!session.options.pidNamespace) checkPidsFree(plan);
  checkFdKinds(session, supportedFdTypes);
  checkRlimits(session);
  checkFiles(session.checkpoint, [...session.images.values()].filter((set) => set.mm), session.options.allowFileMismatch);
}
