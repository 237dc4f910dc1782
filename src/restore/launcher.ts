// The launcher: the first helper (spawnHelper), Node's own child, never traced, reaped by crr.
// It forks the root task (or, for a fresh PID namespace, a pid-1 init helper that forks the
// root), is a child subreaper so every task orphaned by a rollback comes back to it to be
// reaped, and afterwards either waits for the root (crr stays the tree's parent) or exits
// (--restore-detached). Rollback kills every task by PID and reaps it here.
import { existsSync, readFileSync, statfsSync, writeFileSync } from 'node:fs';
import { native } from '../actors/native.js';
import { openPtmx, TIOCSPTLCK } from '../resources/tty.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { spawnHelper, type HelperChannel } from '../actors/helper.js';
import type { Tracer } from '../actors/tracer.js';
import { NativeError, StageError } from '../errors.js';
import { cgroupMounts, type CgroupMember } from '../cgroup-fs.js';
import { makeCgroupPath, rootTaskCgroups, underNewRoot } from '../resources/cgroups.js';
import type { RestoreSession, TaskRuntime } from './context.js';
import { makeMounts } from './mounts.js';
import { checkpointNamespaces, fillNamespaces, type CheckpointNamespaces } from './namespaces.js';
import { errnoName, isSyscallError, signed } from './remote-sys.js';

const PR_SET_CHILD_SUBREAPER = 36;
const CLONE_NEWPID = 0x20000000;
const SYS_UNSHARE = 272;
const SYS_MOUNT = 165;
const CLONE_NEWNS = 0x20000;
const CLONE_NEWUSER = 0x10000000;
const CLONE_NEWTIME = 0x80;
const CLONE_NEWNET = 0x40000000;
const SYS_OPENAT = 257;
const SYS_SETNS = 308;
const SYS_CLOSE = 3;
const AT_FDCWD = -100;
const O_RDONLY = 0;
const O_CLOEXEC = 0o2000000;
const O_RDWR = 2;
const O_NOCTTY = 0o400;
// Below the x86-64 red zone (128 bytes) the stopped init's stack is free scratch.
const STACK_SKIP = 512n;
const MS_NOSUID = 2;
const MS_NODEV = 4;
const MS_NOEXEC = 8;
const MS_REC = 0x4000;
const MS_PRIVATE = 1 << 18;
const SIGKILL = 9;
const PTRACE_O_EXITKILL = 0x100000;
const FOREVER_MS = 2 ** 31 - 1;

/**
 * Spawns the launcher ahead of need: restore() starts it before the images load, so its start
 * and first round trip overlap the decoding (they were most of the 1-task plan step). An early
 * launcher nobody takes must be given to discardLauncher().
 */
export function prestartLauncher(): Promise<HelperChannel> {
  const launcher = spawnHelper();
  launcher.catch(() => undefined); // a failure is reported by the step that awaits it
  return launcher;
}

/** Lets an early launcher go when the restore ends before the plan step took it. */
export async function discardLauncher(early: Promise<HelperChannel>): Promise<void> {
  const launcher = await early.catch(() => undefined);
  if (launcher) await launcher.destroy();
}

/** A spawned launcher whose first set-up requests are out (beginLauncher). */
export interface EarlyLauncher {
  readonly launcher: HelperChannel;
  /** Its PR_SET_CHILD_SUBREAPER. */
  readonly subreaper: Promise<unknown>;
  /** The init of the fresh PID namespace, when the restore asks for one. */
  readonly init?: Promise<HelperChannel>;
}

/**
 * Sends the launcher's first set-up requests as soon as it is spawned, before the images are
 * opened: the subreaper prctl and, for a PID namespace, the init's fork, whose flags the options
 * alone decide. (From the load step they went out ~1 ms later, and the init's set-up is what
 * the root's fork waits for.) The helper answers in order, so the launcher is a subreaper before
 * anything it forks can be orphaned. Give one nobody takes to discardEarlyLauncher().
 */
export async function beginLauncher(spawned: Promise<HelperChannel>, pidNamespace: boolean): Promise<EarlyLauncher> {
  const launcher = await spawned;
  const subreaper = launcher.request('prctl', { option: PR_SET_CHILD_SUBREAPER, a2: 1 });
  subreaper.catch(() => undefined); // reported by startLauncher, after the fork is recorded for rollback
  if (!pidNamespace) return { launcher, subreaper };
  // pid 1 of a fresh PID namespace (when it dies the kernel kills every process inside), with
  // its own mount namespace (no unshare injected for it): the /proc mounted there below shows
  // the new PID namespace.
  const init = launcher.fork({ flags: CLONE_NEWPID | CLONE_NEWNS });
  init.catch(() => undefined); // reported by startLauncher
  return { launcher, subreaper, init };
}

/** Lets a begun launcher go (and the init it forked) when the restore ends before the load step took it. */
export async function discardEarlyLauncher(early: Promise<EarlyLauncher>): Promise<void> {
  const begun = await early.catch(() => undefined);
  if (!begun) return;
  await begun.init?.catch(() => undefined); // so it is among the children destroy() kills and reaps
  await begun.launcher.destroy();
}

export async function startLauncher(session: RestoreSession, tracer: Tracer, early?: Promise<EarlyLauncher>): Promise<void> {
  let namespaces: CheckpointNamespaces;
  try {
    namespaces = session.namespaces ??= withCgroupRoots(checkpointNamespaces(session.checkpoint, session.options), session);
  } catch (err) {
    // Refused (the plan step says why): nothing of the launcher's may be left behind.
    if (early) await discardEarlyLauncher(early);
    throw err;
  }
  const { launcher, subreaper, init } = await (early ?? beginLauncher(spawnHelper(), session.options.pidNamespace));
  session.launcher = launcher;
  // Asked at spawn and awaited only below: the set-up's requests queue behind it at once, so
  // they are served while the images decode instead of one round trip later.
  const identity = launcher.identified;
  const joinNet = namespaces.joinNet;
  // The launcher joins a network namespace given for the tree before it forks the root or its
  // parent, which inherit it; an init forked already joins it itself, unless a new user
  // namespace is to be made (its init would have no privilege over the namespace to join).
  if (joinNet && (namespaces.user || !init)) await joinNetwork(launcher, joinNet);
  if (!init && !namespaces.unshare) {
    session.rootParent = launcher;
    await identity;
    await subreaper;
    return;
  }
  // A parent of its own for the root: the PID namespace's init, or else a plain holder of the
  // checkpoint's UTS, IPC, network and time namespaces. A root that was its PID namespace's
  // pid 1 is that init itself, and the launcher its parent.
  const parent = namespaces.user ? await initInUserNamespace(launcher, init, namespaces.user) : await (init ?? launcher.fork({ flags: 0 }));
  if (joinNet && init && !namespaces.user) await joinNetwork(parent, joinNet);
  const rootIsInit = init !== undefined && session.checkpoint.root.pid === 1;
  session.rootParent = rootIsInit ? launcher : parent;
  if (rootIsInit) session.rootInit = parent;
  await identity;
  await subreaper;
  // A PID namespace's init already gets every orphan inside it: only a plain holder has to
  // become a subreaper.
  if (!init) await parent.request('prctl', { option: PR_SET_CHILD_SUBREAPER, a2: 1 });
  await enterNamespaces(parent, tracer, session.options.pidNamespace, namespaces, rootIsInit, (detached) => (session.rootParentDetached = detached), (session.earlyPtys ??= new Map()));
}

const DEVPTS_SUPER_MAGIC = 0x1cd1;

/**
 * A pty slave of the tree's devpts that a bind mount needs before the tree's terminals are made
 * (runc binds a container's terminal at /dev/console): its pair opened now, by index, its master
 * kept for the tty kind in `ptys`.
 */
function makePtySlave(path: string, ptys: Map<number, number>): void {
  const m = /^(.*)\/(\d+)$/.exec(path);
  if (!m || !existsSync(m[1]!) || statfsSync(m[1]!).type !== DEVPTS_SUPER_MAGIC) return;
  const index = Number(m[2]);
  if (!ptys.has(index)) ptys.set(index, openPtmx(index, O_RDWR | O_NOCTTY | O_CLOEXEC, `${m[1]}/ptmx`));
  native.ioctlBuffer(ptys.get(index)!, TIOCSPTLCK, Buffer.alloc(4));
}

/** A cgroup namespace's root cgroups under the new roots the restore was given (criu's --cgroup-root). */
function withCgroupRoots(namespaces: CheckpointNamespaces, session: RestoreSession): CheckpointNamespaces {
  const roots = session.options.cgroupRoots;
  if (!roots || !namespaces.cgroupRoots) return namespaces;
  return { ...namespaces, cgroupRoots: namespaces.cgroupRoots.map((m) => underNewRoot(m, rootTaskCgroups(session), roots)) };
}

/** The helper moved into the network namespace whose file is `path` (a failure names it). */
async function joinNetwork(helper: HelperChannel, path: string): Promise<void> {
  try {
    await helper.request('setns', { path, nstype: CLONE_NEWNET });
  } catch (err) {
    const e = err as { code?: string; errno?: number; syscall?: string; message: string };
    throw new StageError({ stage: 'fork', pid: helper.pid, resource: 'namespaces', message: `joining the network namespace given for the tree (${path}): ${e.message}`, ...(e.code ? { code: e.code } : {}), ...(e.errno !== undefined ? { errno: Math.abs(e.errno) } : {}), ...(e.syscall ? { syscall: e.syscall } : {}) });
  }
}

/** The holder moved into `cgroups` (made where missing), as crr's namespace names them. */
function enterCgroups(holder: HelperChannel, cgroups: readonly CgroupMember[]): void {
  const mounts = cgroupMounts();
  for (const { name, path } of cgroups) {
    const mount = mounts.get(name);
    try {
      if (mount === undefined) throw new Error('that hierarchy is not mounted here');
      makeCgroupPath(mount, path);
      writeFileSync(`${mount}${path === '/' ? '' : path}/cgroup.procs`, String(holder.hostPid));
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      throw new StageError({ stage: 'fork', pid: holder.pid, resource: 'namespaces', message: `entering cgroup ${name || '(v2)'}:${path}, the root of the tree's cgroup namespace: ${e.message}`, ...(e.code ? { code: e.code, errno: Math.abs(e.errno ?? 0), syscall: e.syscall ?? 'write' } : {}) });
    }
  }
}

/**
 * The init of a PID namespace made inside a new user namespace (one clone with CLONE_NEWUSER,
 * so the PID namespace is the user namespace's and its tasks may choose their PIDs there), with
 * the tree's id maps written before it does anything. The early init, whose PID namespace is
 * crr's user namespace's, is killed and reaped first.
 */
async function initInUserNamespace(launcher: HelperChannel, early: Promise<HelperChannel> | undefined, maps: { uidMap: string; gidMap: string }): Promise<HelperChannel> {
  const unused = await early;
  if (unused) {
    unused.kill(SIGKILL);
    await launcher.request('waitpid', { pid: unused.pidInParent });
  }
  const init = await launcher.fork({ flags: CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS });
  try {
    writeFileSync(`/proc/${init.hostPid}/uid_map`, maps.uidMap);
    writeFileSync(`/proc/${init.hostPid}/gid_map`, maps.gidMap);
  } catch (err) {
    init.kill(SIGKILL);
    await launcher.request('waitpid', { pid: init.pidInParent }).catch(() => undefined);
    const e = err as NodeJS.ErrnoException;
    throw new NativeError({ code: e.code ?? 'EIO', errno: Math.abs(e.errno ?? 5), syscall: 'write', pid: init.pid, detail: `the user namespace's id maps (${e.message})` });
  }
  return init;
}

/**
 * The root's parent, seized once for both of its namespace jobs (the helper has no op for them,
 * so they are injected; it is a grandchild of Node, so it may be traced):
 * - with a PID namespace, a /proc of the new PID namespace in the mount namespace it was forked
 *   with, set up before any task exists: with the host's /proc, a restored task reading
 *   /proc/<its own view of a pid> finds another process or none (the tree program's zombie
 *   check; anything parsing /proc/<getpid()>). Propagation is made private first so the mount
 *   never reaches the host;
 * - with a cgroup namespace, the cgroups that were its root entered before the unshare below;
 * - with the tree's mount namespace, its mounts (makeMounts: src/restore/mounts.ts);
 * - with UTS, IPC, network or time namespaces in the checkpoint, one unshare of them all, then
 *   their contents set before any task enters them (fillNamespaces; the clock offsets through
 *   /proc): children forked afterwards see the dumped host name, IPC limits and objects,
 *   loopback device and clocks.
 */
async function enterNamespaces(
  parent: HelperChannel,
  tracer: Tracer,
  ownProc: boolean,
  namespaces: CheckpointNamespaces,
  parentIsRoot: boolean,
  onDetach: (detached: Promise<unknown>) => void,
  ptys: Map<number, number>,
): Promise<void> {
  if (!ownProc && !namespaces.unshare && !namespaces.mnt) return;
  const host = parent.hostPid;
  // Seize, interrupt and wait for the stop in one tracer operation.
  await tracer.seizeThreads(host, [host], PTRACE_O_EXITKILL, 5000);
  // Not awaited here: a failed detach was ignored anyway, and the init serves its next request
  // (the root's fork) only once it runs again, whenever that is. A rollback awaits it (killAll).
  const detach = () => onDetach(tracer.detach(host).catch(() => undefined));
  try {
    const inject = async (nr: number, args: Array<number | bigint>, syscall: string, detail: string): Promise<bigint> => {
      const got = signed(BigInt(await tracer.injectSyscall(host, nr, args)));
      if (isSyscallError(got)) throw new NativeError({ code: errnoName(Number(-got)), errno: Number(-got), syscall, pid: parent.pid, detail });
      return got;
    };
    // A cgroup namespace's root is the cgroups of whoever unshares it.
    if (namespaces.cgroupRoots) enterCgroups(parent, namespaces.cgroupRoots);
    if (namespaces.unshare) await inject(SYS_UNSHARE, [namespaces.unshare], 'unshare', `flags 0x${namespaces.unshare.toString(16)}`);
    // Strings for the syscalls go on the holder's own stack, below its red zone: it is stopped
    // in a syscall and nothing runs on that stack until it returns (no mmap/munmap round trips).
    const below = ((await stackPointer(tracer, host)) - STACK_SKIP) & ~15n;
    const strings = (...list: string[]): bigint[] => {
      const bytes = list.map((text) => Buffer.from(`${text}\0`, 'utf8'));
      const base = (below - BigInt(bytes.reduce((n, b) => n + b.length, 0))) & ~15n;
      tracer.processVmWrite(host, base, Buffer.concat(bytes));
      let at = base;
      return bytes.map((b) => (at += BigInt(b.length)) - BigInt(b.length));
    };
    if (ownProc) {
      const [root = 0n, proc = 0n, target = 0n] = strings('/', 'proc', '/proc');
      // One after the other: a proc mount while / still propagates to the host would appear there.
      await inject(SYS_MOUNT, [0, root, 0, MS_REC | MS_PRIVATE, 0], 'mount', 'make / private');
      await inject(SYS_MOUNT, [proc, target, proc, MS_NOSUID | MS_NODEV | MS_NOEXEC, 0], 'mount', 'proc on /proc');
    }
    if (namespaces.mnt) {
      const ops = { pid: host, inject, strings, mountinfo: () => readFileSync(`/proc/${host}/mountinfo`, 'latin1'), missingSource: (path: string) => makePtySlave(path, ptys) };
      await makeMounts(ops, namespaces.mnt, ownProc);
    }
    fillNamespaces(host, namespaces);
    const offsets = namespaces.time;
    if (offsets) {
      writeFileSync(`/proc/${host}/timens_offsets`, offsetLine('monotonic', offsets.monotonic) + offsetLine('boottime', offsets.boottime));
      // unshare(CLONE_NEWTIME) is for the children: a root that is this helper enters it itself.
      if (parentIsRoot) {
        const [path = 0n] = strings('/proc/self/ns/time_for_children');
        const fd = await inject(SYS_OPENAT, [AT_FDCWD, path, O_RDONLY | O_CLOEXEC, 0], 'openat', 'its time namespace for children');
        await inject(SYS_SETNS, [fd, CLONE_NEWTIME], 'setns', 'enter the time namespace');
        await inject(SYS_CLOSE, [fd], 'close', 'the time namespace fd');
      }
    }
  } finally {
    detach();
  }
}

/**
 * A stopped tracee's stack pointer: /proc/PID/syscall ends with "sp pc" for a task that is not
 * running (one read here instead of a tracer round trip); PTRACE_GETREGS if that fails.
 */
async function stackPointer(tracer: Tracer, host: number): Promise<bigint> {
  try {
    const fields = readFileSync(`/proc/${host}/syscall`, 'latin1').trim().split(' ');
    const sp = fields.length >= 3 ? fields[fields.length - 2]! : '';
    if (/^0x[0-9a-f]+$/.test(sp) && sp !== '0x0') return BigInt(sp);
  } catch {
    // fall back to the registers
  }
  return (await tracer.getRegs(host)).sp;
}

function offsetLine(name: string, offset: bigint): string {
  let secs = offset / 1_000_000_000n;
  let nanos = offset % 1_000_000_000n;
  if (nanos < 0n) {
    nanos += 1_000_000_000n;
    secs -= 1n;
  }
  return `${name} ${secs} ${nanos}\n`;
}

/** How the root task ended (crr restore without -d exits with this). */
export interface RootExit {
  readonly exitCode: number | null;
  readonly signal: number | null;
}

/** Waits until the root task exits; its parent helper reaps it. */
export async function waitRoot(session: RestoreSession, rootPid: number): Promise<RootExit> {
  const parent = session.rootParent;
  if (!parent) throw new Error('the restore has no launcher');
  const root = session.runtimes.get(rootPid)?.helper;
  const pidInParent = root?.pidInParent ?? rootPid;
  const got = await parent.request<{ exitCode: number | null; signal: number | null }>('waitpid', { pid: pidInParent }, { timeoutMs: FOREVER_MS });
  return { exitCode: got.exitCode ?? null, signal: got.signal ?? null };
}

/**
 * Leaves the tree running on its own: the root's own parent helper (if it is not the launcher)
 * exits and is reaped, then the launcher exits; the root ends up with init (or the nearest
 * subreaper above crr) as its parent. Not for PID-namespace restores: their init must stay.
 */
export async function detachLauncher(session: RestoreSession): Promise<void> {
  const launcher = session.launcher;
  if (!launcher) return;
  const parent = session.rootParent;
  if (parent && parent !== launcher) {
    await parent.request('exit', { status: 0 }).catch(() => undefined);
    await parent.exited;
    await launcher.request('waitpid', { pid: parent.pidInParent }).catch(() => undefined);
  }
  await launcher.request('exit', { status: 0 }).catch(() => undefined);
  await launcher.exited;
  await launcher.reaped();
}

/** Closes the orchestrator's side of every task channel (the tasks no longer answer). */
export function closeChannels(session: RestoreSession): void {
  for (const runtime of session.runtimes.values()) runtime.helper?.close();
}

async function killTask(runtime: TaskRuntime, tracer: Tracer): Promise<void> {
  if (runtime.seized && runtime.hostPid !== undefined) {
    await tracer.kill(runtime.hostPid, 2000).catch(() => undefined);
  }
  try {
    runtime.helper?.kill(SIGKILL);
  } catch {
    // gone already
  }
}

/**
 * Kills every task this restore started, children first, and reaps them all: orphans come back
 * to the subreaper launcher (or die with the namespace init), which waits until none is left;
 * then the launcher itself goes. Resolves once no started PID exists any more.
 */
export async function killAll(session: RestoreSession, tracer: Tracer, order: readonly number[]): Promise<void> {
  const runtimes = order.map((pid) => session.runtimes.get(pid)).filter((r): r is TaskRuntime => r !== undefined);
  const hostPids = runtimes.map((r) => r.hostPid).filter((p): p is number => p !== undefined);
  for (const runtime of [...runtimes].reverse()) await killTask(runtime, tracer);
  await session.rootParentDetached;
  if (session.rootParent && session.rootParent !== session.launcher) session.rootParent.kill(SIGKILL);
  session.rootInit?.kill(SIGKILL); // gone already when the root task's kill reached it
  for (const runtime of runtimes) runtime.helper?.close();
  const launcher = session.launcher;
  if (launcher) {
    // waitpid(-1) until ECHILD: every task (orphans included) reaped by the subreaper.
    for (;;) {
      const got = await launcher.request('waitpid', { pid: -1 }, { timeoutMs: 5000 }).catch((e: { code?: string }) => e);
      if ((got as { code?: string }).code !== undefined) break;
    }
    await launcher.destroy();
  }
  const deadline = Date.now() + 10_000;
  for (const pid of hostPids) {
    while (existsSync(`/proc/${pid}`)) {
      if (Date.now() > deadline) throw new Error(`task with host pid ${pid} still exists after rollback`);
      await sleep(10);
    }
  }
}

export type { HelperChannel };
