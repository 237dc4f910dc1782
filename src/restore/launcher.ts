// The launcher: the first helper, Node's own child and never traced (libuv reaps its children).
// It forks the root task (or, for a fresh PID namespace, a pid-1 init helper that forks the
// root), is a child subreaper so every task orphaned by a rollback comes back to it to be
// reaped, and afterwards either waits for the root (crr stays the tree's parent) or exits
// (--restore-detached). Rollback kills every task by PID and reaps it here.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { spawnHelper, type HelperChannel } from '../actors/helper.js';
import type { Tracer } from '../actors/tracer.js';
import { NativeError } from '../errors.js';
import type { Checkpoint } from '../images/index.js';
import type { RestoreSession, TaskRuntime } from './context.js';

const PR_SET_CHILD_SUBREAPER = 36;
const CLONE_NEWPID = 0x20000000;
const CLONE_NEWTIME = 0x80;
const SYS_UNSHARE = 272;
const SYS_MMAP = 9;
const SYS_MUNMAP = 11;
const SYS_MOUNT = 165;
const CLONE_NEWNS = 0x20000;
const PROT_READ = 1;
const PROT_WRITE = 2;
const MAP_PRIVATE = 2;
const MAP_ANONYMOUS = 0x20;
const MS_NOSUID = 2;
const MS_NODEV = 4;
const MS_NOEXEC = 8;
const MS_REC = 0x4000;
const MS_PRIVATE = 1 << 18;
const SIGKILL = 9;
const FOREVER_MS = 2 ** 31 - 1;

/**
 * Spawns the launcher ahead of need: restore() starts it before the images load, so the fork
 * and exec of the helper overlap the decoding (they were most of the 1-task plan step). An
 * early launcher nobody takes must be given to discardLauncher().
 */
export function prestartLauncher(): Promise<HelperChannel> {
  const launcher = spawnHelper();
  launcher.catch(() => undefined); // a failure is reported by the step that awaits it
  return launcher;
}

/** Lets an early launcher go when the restore ends before the plan step took it. */
export async function discardLauncher(early: Promise<HelperChannel>): Promise<void> {
  const launcher = await early.catch(() => undefined);
  await launcher?.destroy();
}

export async function startLauncher(session: RestoreSession, tracer: Tracer, early?: Promise<HelperChannel>): Promise<void> {
  const launcher = await (early ?? spawnHelper());
  session.launcher = launcher;
  await launcher.request('prctl', { option: PR_SET_CHILD_SUBREAPER, a2: 1 });
  const offsets = timeOffsets(session.checkpoint);
  if (!session.options.pidNamespace && !offsets) {
    session.rootParent = launcher;
    return;
  }
  // A parent of its own for the root: pid 1 of a fresh PID namespace (when it dies the kernel
  // kills every process inside), and/or the holder of the checkpoint's time namespace.
  const parent = await launcher.fork({ flags: session.options.pidNamespace ? CLONE_NEWPID : 0 });
  session.rootParent = parent;
  await parent.request('prctl', { option: PR_SET_CHILD_SUBREAPER, a2: 1 });
  if (session.options.pidNamespace) await mountOwnProc(parent, tracer);
  if (offsets) await enterTimeNamespace(parent, offsets, tracer);
}

/**
 * A mount namespace with a /proc of the new PID namespace, set up in the root's parent before
 * any task exists: with the host's /proc, a restored task reading /proc/<its own view of a pid>
 * finds another process or none (the tree program's zombie check; anything parsing
 * /proc/<getpid()>). Propagation is made private first so the mount never reaches the host.
 * Injected (the helper has no mount op) like the time namespace below.
 */
async function mountOwnProc(parent: HelperChannel, tracer: Tracer): Promise<void> {
  const host = parent.hostPid;
  await tracer.seize(host, { exitKill: true });
  try {
    await tracer.interrupt(host);
    await tracer.waitStop(host, 5000);
    const inject = async (nr: number, args: Array<number | bigint>, syscall: string, detail: string): Promise<bigint> => {
      const got = BigInt(await tracer.injectSyscall(host, nr, args));
      if (got < 0n && got > -4096n) throw new NativeError({ code: 'EPROCNS', errno: Number(-got), syscall, pid: parent.pid, detail });
      return got;
    };
    await inject(SYS_UNSHARE, [CLONE_NEWNS], 'unshare', 'CLONE_NEWNS');
    const page = await inject(SYS_MMAP, [0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0], 'mmap', 'a page for mount paths');
    // "/" at 0, "proc" at 2, "/proc" at 7
    tracer.processVmWrite(host, page, Buffer.from('/\0proc\0/proc\0', 'latin1'));
    await inject(SYS_MOUNT, [0, page, 0, MS_REC | MS_PRIVATE, 0], 'mount', 'make / private');
    await inject(SYS_MOUNT, [page + 2n, page + 7n, page + 2n, MS_NOSUID | MS_NODEV | MS_NOEXEC, 0], 'mount', 'proc on /proc');
    await inject(SYS_MUNMAP, [page, 4096], 'munmap', 'the mount paths page');
  } finally {
    await tracer.detach(host).catch(() => undefined);
  }
}

interface TimeOffsets {
  readonly monotonic: bigint;
  readonly boottime: bigint;
}

/**
 * The clock offsets that make CLOCK_MONOTONIC and CLOCK_BOOTTIME go on from their values at dump
 * time (timens-0.img), as CRIU does: programs that sleep until an absolute monotonic deadline
 * (python's time.sleep) would otherwise sleep for the uptime difference between the machines.
 */
function timeOffsets(checkpoint: Checkpoint): TimeOffsets | undefined {
  if (!checkpoint.has('timens-0.img')) return undefined;
  const entry = checkpoint.image('timens-0.img').only();
  const ns = (ts: unknown) => {
    const t = (ts ?? {}) as Record<string, unknown>;
    return BigInt(Number(t['tv_sec'] ?? 0)) * 1_000_000_000n + BigInt(Number(t['tv_nsec'] ?? 0));
  };
  const uptime = readFileSync('/proc/uptime', 'utf8').split(' ')[0]!;
  const [secs, frac = '0'] = uptime.split('.');
  const boottimeNow = BigInt(secs!) * 1_000_000_000n + BigInt(frac.padEnd(9, '0').slice(0, 9));
  return { monotonic: ns(entry['monotonic']) - process.hrtime.bigint(), boottime: ns(entry['boottime']) - boottimeNow };
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

/**
 * unshare(CLONE_NEWTIME) injected into the root's parent (a grandchild of Node, so it may be
 * traced; the helper has no op for it), then the offsets written through /proc before any task
 * enters the namespace: children forked afterwards start inside it with the dumped clocks.
 */
async function enterTimeNamespace(parent: HelperChannel, offsets: TimeOffsets, tracer: Tracer): Promise<void> {
  const host = parent.hostPid;
  await tracer.seize(host, { exitKill: true });
  try {
    await tracer.interrupt(host);
    await tracer.waitStop(host, 5000);
    const got = await tracer.injectSyscall(host, SYS_UNSHARE, [CLONE_NEWTIME]);
    if (got < 0n) throw new NativeError({ code: 'EUNSHARE', errno: Number(-got), syscall: 'unshare', pid: parent.pid, detail: 'CLONE_NEWTIME' });
  } finally {
    await tracer.detach(host).catch(() => undefined);
  }
  writeFileSync(`/proc/${host}/timens_offsets`, offsetLine('monotonic', offsets.monotonic) + offsetLine('boottime', offsets.boottime));
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
  if (session.rootParent && session.rootParent !== session.launcher) session.rootParent.kill(SIGKILL);
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
