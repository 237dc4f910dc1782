// Freezing the tree: seize and interrupt every thread of every task under the root, walking
// /proc/PID/task/*/children, and repeating the walk until a whole pass finds nothing new (tasks
// and threads created while we were freezing are caught by the next pass). Also the thaw that
// undoes it for a failed dump or --leave-running.
import { setTimeout as sleep } from 'node:timers/promises';
import { CrrError } from '../errors.js';
import { listChildren, listThreads, parseStat, readProc, ProcError } from './proc.js';
import type { TaskControl } from './control.js';

/** One frozen process: its pid, threads (main first) and children in kernel order. */
export interface FrozenTask {
  pid: number;
  tids: number[];
  children: number[];
  ppid: number;
  pgid: number;
  sid: number;
  /** Set for a zombie below the root: its wait status (/proc stat field 52) and comm. */
  zombie?: { exitCode: number; comm: string };
}

/** What a thaw gives back: every thread seized (in order), its own signal mask, a taken SIGSTOP. */
export interface Seized {
  seized: number[];
  /** While frozen every thread blocks every signal: one arriving meanwhile stays queued. */
  masks: Map<number, bigint>;
  /** Tasks whose queued SIGSTOP the freeze took: it is sent again at the thaw. */
  takenSigstops: Set<number>;
}

export interface Frozen extends Seized {
  tasks: FrozenTask[];
  /** Tasks a stop signal had stopped (its group stop, or a SIGSTOP not yet taken): pid -> signal. */
  stopSignals: Map<number, number>;
}

/** A task the dump cannot take: gone, a zombie, or not ours to trace. */
export class TaskRefusedError extends CrrError {
  constructor(readonly pid: number, readonly reason: string, exitCode = 1) {
    super(`pid ${pid}: ${reason}`, exitCode);
  }
}

const MAX_PASSES = 50;

/**
 * Seizes the whole tree. On any failure every thread seized so far is detached again (their
 * registers were not changed yet) and the error is rethrown.
 */
export async function freezeTree(root: number, ctl: TaskControl, onSeized?: (tid: number) => void, preSeized: ReadonlySet<number> = new Set()): Promise<Frozen> {
  const seized = new Set<number>();
  const order: number[] = [];
  const masks = new Map<number, bigint>();
  const stopSignals = new Map<number, number>();
  const takenSigstops = new Set<number>();
  try {
    checkTaskUsable(root);
    for (let pass = 0; ; pass++) {
      if (pass >= MAX_PASSES) throw new CrrError(`pid ${root}: the tree kept changing while freezing (${MAX_PASSES} passes)`);
      let fresh = 0;
      const queue = [root];
      for (let i = 0; i < queue.length; i++) {
        const pid = queue[i]!;
        // A zombie below the root is dumped from /proc alone (like criu): never seized.
        if (pid !== root && isZombie(pid)) continue;
        if (pass === 0 || !seized.has(pid)) checkTaskUsable(pid);
        // A task's new threads all at once: the tracer takes them in one wake-up, not a round
        // trip each (10,000 threads). Every thread seized is recorded before any failure is
        // rethrown, so the thaw lets it go.
        const tids = listThreads(pid).filter((tid) => !seized.has(tid));
        const got = await Promise.allSettled(tids.map((tid) => seizeOne(ctl, pid, tid, preSeized.has(tid))));
        let failure: PromiseRejectedResult | undefined;
        got.forEach((r, i) => {
          if (r.status === 'rejected') {
            failure ??= r;
            return;
          }
          if (!r.value) return; // a thread that was exiting
          masks.set(tids[i]!, r.value.mask);
          if (r.value.stopSignal) stopSignals.set(pid, r.value.stopSignal);
          if (r.value.tookSigstop) takenSigstops.add(pid);
          seized.add(tids[i]!);
          order.push(tids[i]!);
          onSeized?.(tids[i]!);
          fresh++;
        });
        if (failure) throw failure.reason;
        queue.push(...listChildren(pid));
      }
      if (fresh === 0) break;
    }
    checkTaskUsable(root); // a root that ended while the others were seized is refused, not dumped as a zombie
    return { tasks: describeTree(root), seized: order, masks, stopSignals, takenSigstops };
  } catch (err) {
    await thaw(ctl, { seized: order, masks, takenSigstops });
    throw err;
  }
}

const SIGSTOP = 19;
const EVERY_SIGNAL = (1n << 64n) - 1n;

/**
 * Seizes and stops one thread; undefined when it was exiting. Its own mask is returned and every
 * signal blocked, so that none is taken while the dump runs code in it. A thread in the group stop
 * of a stop signal, or with a SIGSTOP queued, traps once more for each when next resumed (the
 * interrupt's trap stays behind the group stop's report): those traps are taken here, as CRIU
 * does, and then the thread runs the dump's code like any other.
 */
async function seizeOne(ctl: TaskControl, pid: number, tid: number, seizedAlready = false): Promise<{ mask: bigint; stopSignal?: number; tookSigstop: boolean } | undefined> {
  // Seized, it would not stop until the wait ends, and a tracee that never stopped cannot be
  // detached: refused before the seize.
  const vfork = seizedAlready ? undefined : vforkWait(pid, tid);
  if (vfork) throw new TaskRefusedError(pid, `thread ${tid} is ${vfork}`, 1);
  try {
    if (!seizedAlready) await ctl.seize(tid);
  } catch (err) {
    const code = (err as { code?: string }).code;
    // A task not frozen yet may end on its own meanwhile (a shell's short-lived child): the
    // kernel says EPERM to a seize of an exiting thread. Its parent is frozen, so it stays a
    // zombie, dumped as one (the next pass sees it so).
    if (code === 'EPERM' && (await exitedOnItsOwn(pid, tid))) return undefined;
    if (code === 'EPERM') throw new TaskRefusedError(pid, `not permitted to trace thread ${tid} (EPERM${whyNotTraceable(tid)})`, 1);
    if (code === 'ESRCH') {
      checkTaskUsable(pid); // gone or zombie: a clear error; otherwise it was a dying thread
      return undefined;
    }
    throw err;
  }
  let mask: bigint | undefined;
  try {
    if (!seizedAlready) await ctl.interrupt(tid); // a frozen cgroup's thread was interrupted before its thaw (freezer.ts)
    let stop = await ctl.waitStop(tid, 5000);
    // A signal that came before the interrupt: the thread takes it (its handler runs, or a stop
    // signal stops it), then reports the interrupt. Resumed without it, it would be lost.
    for (let taken = 0; stop.kind === 'signal' && taken < 64; taken++) {
      await ctl.cont(tid, stop.signal);
      stop = await ctl.waitStop(tid, 5000);
    }
    mask = await ctl.getSigmask(tid);
    await ctl.setSigmask(tid, EVERY_SIGNAL);
    const queuedStops = queuedSigstops(pid, tid);
    const traps = (stop.kind === 'group-stop' ? 1 : 0) + queuedStops;
    for (let i = 0; i < traps; i++) {
      await ctl.cont(tid);
      await ctl.waitStop(tid, 5000);
    }
    const stopSignal = stop.kind === 'group-stop' ? stop.signal : queuedStops ? SIGSTOP : undefined;
    return { mask, tookSigstop: queuedStops > 0, ...(stopSignal ? { stopSignal } : {}) };
  } catch (err) {
    // Seized but not recorded as seized: let it go here (with its own mask), or it stays traced
    // by this process and the next dump of it (same process, e.g. a retry or a test) fails with EPERM.
    if (mask !== undefined) await ctl.setSigmask(tid, mask).catch(() => undefined);
    // One that never stopped (a detach then fails) is let go by the tracer when it next stops.
    await ctl.detach(tid).catch(() => ctl.release?.(tid)).catch(() => undefined);
    if ((err as { code?: string }).code === 'ETIMEDOUT') throw new TaskRefusedError(pid, `thread ${tid} did not stop within 5 s of its PTRACE_INTERRUPT (${whyNotStopping(pid, tid)})`, 1);
    throw err;
  }
}

/** Whether the thread is exiting (a zombie or gone within 200 ms), not alive and refusing the seize. */
async function exitedOnItsOwn(pid: number, tid: number): Promise<boolean> {
  // Sleeping or stopped: not on its way out.
  return (await untilEnded(() => threadWait(pid, tid)?.state ?? 'gone', 200, (state) => !/^[RD]$/.test(state))) !== undefined;
}

/**
 * Waits up to `ms` for a task or thread on its way out (`state()` R or D) to be gone or a zombie:
 * that state, or undefined when it stays (or `staying` says from its state that it will).
 */
async function untilEnded(state: () => string, ms: number, staying: (state: string) => boolean): Promise<string | undefined> {
  for (let waited = 0; ; waited += 10) {
    const now = state();
    if (now === 'gone' || now === 'Z' || now === 'X') return now;
    if (staying(now) || waited >= ms) return undefined;
    await sleep(10);
  }
}

/** What a thread that does not stop for the tracer is doing, from /proc. */
function whyNotStopping(pid: number, tid: number): string {
  const { state, wchan } = threadWait(pid, tid) ?? { state: 'gone', wchan: '' };
  return `state ${state}${wchan && wchan !== '0' ? ` in ${wchan}` : ''}: it stops only when the kernel lets it go; crr lets it go untraced then`;
}

/** Set when the thread is a vfork parent waiting for its child: says so. */
function vforkWait(pid: number, tid: number): string | undefined {
  const wait = threadWait(pid, tid);
  // A vfork parent sleeps in wait_for_vfork_done, which /proc names by its caller.
  if (wait?.state !== 'D' || !(wait.wchan.includes('vfork') || wait.wchan === 'kernel_clone')) return undefined;
  return `a vfork parent waiting for its child to exec or exit (state D in ${wait.wchan}): dump once it has`;
}

function threadWait(pid: number, tid: number): { state: string; wchan: string } | undefined {
  try {
    return { state: parseStat(readProc(pid, `task/${tid}/stat`)).state, wchan: readProc(pid, `task/${tid}/wchan`).trim() };
  } catch {
    return undefined;
  }
}

/** SIGSTOPs queued for the thread: its own, and for the main thread its process's. */
function queuedSigstops(pid: number, tid: number): number {
  let status: string;
  try {
    status = readProc(pid, `task/${tid}/status`);
  } catch {
    return 0;
  }
  const has = (field: string) => (BigInt(`0x${new RegExp(`^${field}:\\s*([0-9a-f]+)`, 'm').exec(status)?.[1] ?? '0'}`) >> BigInt(SIGSTOP - 1)) & 1n;
  return Number(has('SigPnd') + (tid === pid ? has('ShdPnd') : 0n));
}

/** Why PTRACE_SEIZE said EPERM to a live thread, from /proc: traced already (by whom). */
function whyNotTraceable(tid: number): string {
  let status: string;
  try {
    status = readProc(tid, 'status');
  } catch {
    return ': it is gone';
  }
  const tracer = Number(/^TracerPid:\s*(\d+)/m.exec(status)?.[1] ?? 0);
  if (tracer === process.pid) return ': this process traces it already';
  if (tracer) return `: already traced by pid ${tracer}`;
  return '';
}

/**
 * For an error met while dumping a frozen task: if the task is gone or a zombie now, something
 * outside the dump killed it (a frozen task does not exit on its own), and that is the error to
 * report rather than the /proc read or the remote call that failed because of it.
 */
export async function killedWhileFrozen(pid: number, cause: unknown): Promise<TaskRefusedError | undefined> {
  // A task SIGKILLed a moment ago may still be exiting (R or D, not yet Z): wait for it a little.
  // One still in its tracing stop ('t') was not killed.
  const state = await untilEnded(() => taskState(pid), 1000, (now) => now === 't');
  if (state === undefined) return undefined;
  const how = state === 'gone' ? 'is gone' : 'is a zombie';
  const err = new TaskRefusedError(pid, `${how}: it was killed while frozen for the dump, by a signal from outside crr (a stale-PID kill?); first failure: ${(cause as Error)?.message ?? String(cause)}`, 1);
  (err as { cause?: unknown }).cause = cause;
  return err;
}

function taskState(pid: number): string {
  try {
    return parseStat(readProc(pid, 'stat')).state;
  } catch {
    return 'gone';
  }
}

/** Refuses zombies and vanished tasks with a clear message. */
export function checkTaskUsable(pid: number): void {
  let state: string;
  try {
    state = parseStat(readProc(pid, 'stat')).state;
  } catch (err) {
    if (err instanceof ProcError) throw new TaskRefusedError(pid, 'no such process', 3);
    throw err;
  }
  if (state === 'Z' || state === 'X') throw new TaskRefusedError(pid, 'is a zombie (it has exited and waits to be reaped); crr dump cannot dump it', 1);
}

/** Whether pid is a zombie now (a task that vanished is not: checkTaskUsable says so). */
function isZombie(pid: number): boolean {
  const state = taskState(pid);
  return state === 'Z' || state === 'X';
}

/** The frozen tree, pre-order from the root (the order pstree.img lists tasks in). */
export function describeTree(root: number): FrozenTask[] {
  const out: FrozenTask[] = [];
  const visit = (pid: number, ppid: number) => {
    const stat = parseStat(readProc(pid, 'stat'));
    if (stat.state === 'Z' || stat.state === 'X') {
      // A zombie has no children of its own (they went to a reaper) and one "thread": itself.
      out.push({ pid, tids: [pid], children: [], ppid, pgid: stat.pgid, sid: stat.sid, zombie: { exitCode: stat.exitCode, comm: stat.comm } });
      return;
    }
    const tids = listThreads(pid);
    const main = tids.indexOf(pid);
    if (main > 0) tids.unshift(...tids.splice(main, 1));
    const children = listChildren(pid, tids);
    out.push({ pid, tids, children, ppid, pgid: stat.pgid, sid: stat.sid });
    for (const c of children) visit(c, pid);
  };
  visit(root, 0);
  return out;
}

/**
 * Detaches every thread seized with its own mask back (best effort: a thread that vanished is not
 * an error here). A task in a group stop goes back into it at the detach (the kernel keeps the
 * group stopped); a SIGSTOP the freeze took from a queue is queued again first, while every
 * thread is still held.
 */
export async function thaw(ctl: TaskControl, frozen: Seized, regs?: Map<number, unknown>): Promise<void> {
  for (const pid of frozen.takenSigstops) {
    try {
      process.kill(pid, 'SIGSTOP');
    } catch {
      // already gone
    }
  }
  for (const tid of frozen.seized) {
    try {
      const mask = frozen.masks.get(tid);
      if (mask !== undefined) await ctl.setSigmask(tid, mask);
      await ctl.detach(tid, regs?.get(tid));
    } catch {
      // already gone
    }
  }
}

/** pstree.img entries. */
/** pstree.img's entries; `v` numbers PIDs as the images do (the tree's PID namespace's). */
export function pstreeEntries(tasks: FrozenTask[], v: (pid: number) => number = (pid) => pid): Array<Record<string, unknown>> {
  return tasks.map((t) => ({ pid: v(t.pid), ppid: v(t.ppid), pgid: v(t.pgid), sid: v(t.sid), threads: t.tids.map(v) }));
}
