// POSIX timers for core's task_timers_entry.posix: the list comes from /proc/PID/timers (id,
// signal and sigev value, notify, clock), the remaining time and interval from an injected
// timer_gettime and the overrun count from an injected timer_getoverrun, both in the task.
import type { Entry } from './ids.js';

export const NR_TIMER_GETTIME = 224;
export const NR_TIMER_GETOVERRUN = 225;

/** SIGEV_* of <asm-generic/siginfo.h>, by the word /proc/PID/timers prints. */
const NOTIFY: Record<string, number> = { signal: 0, none: 1, thread: 2 };
const SIGEV_THREAD_ID = 4;

/** One timer as /proc/PID/timers describes it. */
export interface ProcPosixTimer {
  id: number;
  signo: number;
  sigval: bigint;
  /** sigev_notify as the kernel holds it (SIGEV_THREAD_ID is a flag on top of SIGEV_SIGNAL). */
  notify: number;
  /** The thread a SIGEV_THREAD_ID timer signals, else 0. */
  notifyTid: number;
  clockId: number;
}

/**
 * Parses /proc/PID/timers blocks: "ID: n", "signal: signo/sigval-hex", "notify: word/pid.N" or
 * "word/tid.N" (tid means SIGEV_THREAD_ID), "ClockID: n".
 */
export function parseProcTimers(text: string): ProcPosixTimer[] {
  const out: ProcPosixTimer[] = [];
  for (const block of text.split(/(?=^ID:)/m)) {
    const field = (name: string) => new RegExp(`^${name}:\\s*(.*)$`, 'm').exec(block)?.[1]?.trim();
    const id = field('ID');
    if (id === undefined) continue;
    const sig = /^(\d+)\/([0-9a-fA-F]+)/.exec(field('signal') ?? '');
    const notify = /^(\w+)\/(pid|tid)\.(\d+)/.exec(field('notify') ?? '');
    const byTid = notify?.[2] === 'tid';
    out.push({
      id: Number(id),
      signo: Number(sig?.[1] ?? 0),
      sigval: sig ? BigInt(`0x${sig[2]}`) : 0n,
      notify: (NOTIFY[notify?.[1] ?? 'signal'] ?? 0) | (byTid ? SIGEV_THREAD_ID : 0),
      notifyTid: byTid ? Number(notify![3]) : 0,
      clockId: Number(field('ClockID') ?? 0),
    });
  }
  return out;
}

/** posix_timer_entry: `spec` is the struct itimerspec timer_gettime wrote (interval, then value). */
export function posixTimerEntry(t: ProcPosixTimer, spec: Buffer, overrun: bigint): Entry {
  const e: Entry = {
    it_id: t.id,
    clock_id: t.clockId >>> 0,
    si_signo: t.signo,
    it_sigev_notify: t.notify,
    sival_ptr: t.sigval,
    overrun: Number(overrun),
    isec: spec.readBigUInt64LE(0),
    insec: spec.readBigUInt64LE(8),
    vsec: spec.readBigUInt64LE(16),
    vnsec: spec.readBigUInt64LE(24),
  };
  if (t.notify & SIGEV_THREAD_ID) e.notify_thread_id = t.notifyTid;
  return e;
}
