// Machine checks after planning, before anything is touched: the tree's PIDs and TIDs are free
// (unless it goes into a fresh PID namespace), sessions can be made, every fd is of a kind crr
// restores, every VMA is of a kind crr maps, the files match, no hard rlimit needs raising, the
// kernel has clone3 set_tid, and crr can make the namespaces the checkpoint asks for.
// Each failure is a StageError in stage 'plan' naming the task and what is wrong.
import { existsSync, readFileSync } from 'node:fs';
import { release } from 'node:os';
import { StageError } from '../errors.js';
import { FD_TYPES } from '../images/index.js';
import type { RestorePlan } from '../plan/plan.js';
import { RLIMIT_NAMES, ownHardLimits, rlimitsOf } from '../resources/rlimits.js';
import { namespaceInit, sessionSource } from '../resources/task-tree.js';
import { checkTerminals } from '../resources/tty.js';
import { checkPidfds } from '../resources/pidfd.js';
import { checkNamespaceFds } from '../resources/nsfile.js';
import { aioRingsOf } from '../resources/aio.js';
import type { RestoreSession } from './context.js';
import { checkFiles } from './files.js';
import { checkpointNamespaces } from './namespaces.js';
import { ownMountPoints } from './mounts.js';
import { parseMountinfo } from '../mountinfo.js';
import { unsupportedReason, VMA_AREA_AIORING, vmaOf } from './remote-vma.js';

const INFINITY = (1n << 64n) - 1n;
const FD_TYPE_NAMES = Object.fromEntries(Object.entries(FD_TYPES).map(([name, n]) => [n, name]));

/** Who holds a PID: its command, and for a zombie the parent that has not reaped it yet. */
function holder(pid: number): string {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    const close = stat.lastIndexOf(')');
    const [state, ppid] = stat.slice(close + 2).split(' ');
    const name = stat.slice(stat.indexOf('(') + 1, close);
    return state === 'Z' ? `a zombie of ${name} that its parent, PID ${ppid}, has not reaped yet` : name;
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
        message: `${tid === task.pid ? 'pid' : 'thread id'} ${tid} is in use (by ${holder(tid)}); restore elsewhere or in a fresh PID namespace`,
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
        message: `not supported: fd ${fd.fd} is a ${kind} (file id ${fd.id}); crr restores ${[...supported].map((n) => FD_TYPE_NAMES[n] ?? n).join(', ')} fds so far`,
      });
    }
  }
}

/**
 * Two live tasks with one vm_id shared an address space (clone CLONE_VM without CLONE_THREAD);
 * made apart, what one writes the other would no longer see. Refused, as crr's dump refuses it.
 */
export function checkSharedAddressSpaces(session: RestoreSession): void {
  const holders = new Map<number, number>();
  for (const [pid, set] of session.images) {
    const vmId = set.ids?.vm_id;
    if (!set.mm || vmId === undefined) continue;
    const other = holders.get(vmId);
    if (other !== undefined) throw new StageError({ stage: 'plan', pid, resource: 'memory', message: `tasks ${other} and ${pid} share one address space (vm_id ${vmId}: clone with CLONE_VM but not CLONE_THREAD): not supported` });
    holders.set(vmId, pid);
  }
}

/**
 * A VMA crr does not map (a packet socket's ring) fails the plan, before any task exists, as does
 * an AIO ring whose aios entry and VMA disagree.
 */
export function checkVmaKinds(session: RestoreSession): void {
  for (const [pid, set] of session.images) {
    // Only a task with an AIO ring (an aios entry or an AIORING VMA) has rings to cross-check:
    // not every task's VMAs decoded a second time.
    let rings = ((set.mm?.['aios'] as unknown[] | undefined)?.length ?? 0) > 0;
    for (const e of (set.mm?.['vmas'] as Array<Record<string, unknown>> | undefined) ?? []) {
      const v = vmaOf(e);
      const why = unsupportedReason(v);
      if (why) throw new StageError({ stage: 'plan', pid, resource: 'memory', code: 'ENOTSUP', errno: 95, message: `not supported: VMA ${v.start.toString(16)}-${v.end.toString(16)} is ${why}` });
      if (v.status & VMA_AREA_AIORING) rings = true;
    }
    if (rings) aioRingsOf(session.checkpoint.path(`mm-${pid}.img`), set.mm);
  }
}

/**
 * Hard limits above crr's own cannot be raised here (no CAP_SYS_RESOURCE); the rlimits kind
 * clamps them to crr's and these warnings say which, so the user knows what changed.
 */
export function rlimitWarnings(session: RestoreSession): string[] {
  const own = ownHardLimits();
  const warnings: string[] = [];
  const show = (v: bigint) => (v >= INFINITY ? 'unlimited' : String(v));
  for (const [pid, set] of session.images) {
    if (!set.mm) continue; // zombies keep no limits
    rlimitsOf(set.core).forEach((limit, resource) => {
      const name = RLIMIT_NAMES[resource];
      const max = name && own.get(name);
      if (max === undefined || !name || limit.max <= max) return;
      warnings.push(
        `task ${pid}: RLIMIT_${name} hard limit ${show(limit.max)} lowered to ${show(max)}: crr cannot raise a hard limit ` +
          '(no CAP_SYS_RESOURCE); raise it before starting crr (ulimit -H) to keep it',
      );
    });
  }
  return warnings;
}

/** clone3 with set_tid arrived in Linux 5.5. */
export function checkKernel(): void {
  const [major = 0, minor = 0] = release().split('.').map(Number);
  if (major > 5 || (major === 5 && minor >= 5)) return;
  throw new StageError({ stage: 'plan', resource: 'task-tree', message: `kernel ${release()} lacks clone3 set_tid (needs 5.5 or later)` });
}

/** A checkpoint dumped with --tcp-close has no state of its connections to restore: only closed ones (criu refuses it the same way). */
export function checkTcpClose(session: RestoreSession): void {
  if (session.checkpoint.inventory['tcp_close'] && !session.options.tcpClose) {
    throw new StageError({ stage: 'plan', resource: 'inetsk', code: 'EINVAL', errno: 22, message: 'the checkpoint was dumped with --tcp-close: restore it with --tcp-close (its TCP connections come back closed)' });
  }
}

export function checkMachine(plan: RestorePlan, session: RestoreSession, supportedFdTypes: ReadonlySet<number>): void {
  checkKernel();
  checkTcpClose(session);
  const nsInit = namespaceInit({ session, plan });
  for (const task of plan.tasks) sessionSource(task, plan.tasks, session.options.shellJob, nsInit);
  if (!session.options.pidNamespace) checkPidsFree(plan);
  // Asked already by the launcher's set-up, unless it refused (then this says why) or there is none (a dry run).
  session.namespaces ??= checkpointNamespaces(session.checkpoint, session.options);
  checkFdKinds(session, supportedFdTypes);
  checkVmaKinds(session);
  checkSharedAddressSpaces(session);
  checkTerminals(session);
  checkPidfds(session);
  checkNamespaceFds(session);
  const mnt = session.namespaces?.mnt;
  const madeUnder = mnt ? ownMountPoints(mnt, parseMountinfo(readFileSync('/proc/self/mountinfo', 'latin1'))) : [];
  checkFiles(session.checkpoint, [...session.images.values()].filter((set) => set.mm), session.options.allowFileMismatch, madeUnder, mnt);
}
