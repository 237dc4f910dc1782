// Interval timers (ITIMER_REAL/VIRTUAL/PROF) and POSIX timers of a process, from the task core's
// `timers`: one remote batch in the main thread once every thread exists (a SIGEV_THREAD_ID timer
// names one). POSIX timers get their dumped ids back through prctl(PR_TIMER_CREATE_RESTORE_IDS):
// while it is on, timer_create takes the id from *created_timer_id instead of picking one, so a
// program's timer_t values stay valid. Remaining times are set relative, as dumped; an overrun
// count cannot be set (no kernel interface): pending timer signals keep theirs in their siginfo.
import { StageError } from '../errors.js';
import { hostPidOf, type RestoreCtx } from '../restore/context.js';
import { RemoteBatch } from '../restore/remote.js';
import { SYS } from '../restore/remote-sys.js';
import { scratchOf } from './memory.js';
import type { ResourceKind } from './types.js';

const NR_TIMER_CREATE = 222;
const NR_TIMER_SETTIME = 223;
const PR_TIMER_CREATE_RESTORE_IDS = 77;
const RESTORE_IDS_OFF = 0;
const RESTORE_IDS_ON = 1;
const SIGEV_THREAD_ID = 4;
const ITIMERS = ['real', 'virt', 'prof'] as const;

type Rec = Record<string, unknown>;
const big = (v: unknown) => BigInt((v as bigint | number | undefined) ?? 0);

export interface ItimerValue {
  which: number;
  interval: { sec: bigint; usec: bigint };
  value: { sec: bigint; usec: bigint };
}

export interface PosixTimer {
  id: number;
  clockId: number;
  signo: number;
  notify: number;
  sigval: bigint;
  notifyTid: number;
  interval: { sec: bigint; nsec: bigint };
  value: { sec: bigint; nsec: bigint };
  overrun: number;
}

/** The armed itimers of a task core (a disarmed one, value 0, needs nothing). */
export function itimersOf(tc: Rec | undefined): ItimerValue[] {
  const timers = tc?.['timers'] as Rec | undefined;
  const out: ItimerValue[] = [];
  ITIMERS.forEach((name, which) => {
    const t = timers?.[name] as Rec | undefined;
    if (!t) return;
    const value = { sec: big(t['vsec']), usec: big(t['vusec']) };
    if (value.sec === 0n && value.usec === 0n) return;
    out.push({ which, interval: { sec: big(t['isec']), usec: big(t['iusec']) }, value });
  });
  return out;
}

/** The POSIX timers of a task core; clock ids are signed (CPU clocks are negative). */
export function posixTimersOf(tc: Rec | undefined): PosixTimer[] {
  const posix = ((tc?.['timers'] as Rec | undefined)?.['posix'] as Rec[] | undefined) ?? [];
  return posix.map((p) => ({
    id: Number(p['it_id']),
    clockId: Number(p['clock_id']) | 0,
    signo: Number(p['si_signo']),
    notify: Number(p['it_sigev_notify']),
    sigval: big(p['sival_ptr']),
    notifyTid: Number(p['notify_thread_id'] ?? 0),
    interval: { sec: big(p['isec']), nsec: big(p['insec']) },
    value: { sec: big(p['vsec']), nsec: big(p['vnsec']) },
    overrun: Number(p['overrun'] ?? 0),
  }));
}

/** struct sigevent (64 bytes): value, signo, notify, then the thread id for SIGEV_THREAD_ID. */
export function sigeventBytes(t: PosixTimer): Buffer {
  const b = Buffer.alloc(64);
  b.writeBigUInt64LE(BigInt.asUintN(64, t.sigval), 0);
  b.writeInt32LE(t.signo, 8);
  b.writeInt32LE(t.notify, 12);
  if (t.notify & SIGEV_THREAD_ID) b.writeInt32LE(t.notifyTid, 16);
  return b;
}

/** Two timespec/timeval pairs: interval first, then the remaining value (itimerspec, itimerval). */
function pairBytes(a: bigint, b: bigint, c: bigint, d: bigint): Buffer {
  const out = Buffer.alloc(32);
  [a, b, c, d].forEach((v, i) => out.writeBigInt64LE(v, i * 8));
  return out;
}

export const timers: ResourceKind<RestoreCtx> = {
  name: 'timers',
  stage: 'finish',
  images: ['core-*'],
  after: ['threads'],
  // Left out of the plan for a task whose core has no armed timer (restore() would do nothing).
  appliesTo: (task, source) => {
    if (task.zombie) return false;
    const core = (source?.images.get(task.pid) as { core?: Rec } | undefined)?.core;
    if (!core) return true;
    const tc = core['tc'] as Rec | undefined;
    return itimersOf(tc).length > 0 || posixTimersOf(tc).length > 0;
  },
  describe: () => ['itimers and POSIX timers (same ids, clocks, sigevents, remaining times)'],
  async restore(ctx) {
    const tc = ctx.images.core['tc'] as Rec | undefined;
    const itimers = itimersOf(tc);
    const posix = posixTimersOf(tc);
    if (!itimers.length && !posix.length) return;
    const batch = new RemoteBatch(scratchOf(ctx));
    for (const it of itimers) {
      batch.reserve(32, 1);
      const val = batch.put(pairBytes(it.interval.sec, it.interval.usec, it.value.sec, it.value.usec));
      batch.call(SYS.setitimer, [it.which, val, 0], { what: `itimer ${ITIMERS[it.which]}` });
    }
    if (posix.length) {
      batch.call(SYS.prctl, [PR_TIMER_CREATE_RESTORE_IDS, RESTORE_IDS_ON, 0, 0, 0], { what: 'timer ids chosen by timer_create (PR_TIMER_CREATE_RESTORE_IDS, Linux 6.13+)' });
      for (const t of posix) {
        batch.reserve(64 + 8 + 32, 2);
        const ev = batch.put(sigeventBytes(t));
        const idBuf = Buffer.alloc(8);
        idBuf.writeInt32LE(t.id, 0);
        const idAddr = batch.put(idBuf);
        batch.call(NR_TIMER_CREATE, [t.clockId, ev, idAddr], { what: `POSIX timer ${t.id} (clock ${t.clockId})` });
        if (t.value.sec !== 0n || t.value.nsec !== 0n) {
          const spec = batch.put(pairBytes(t.interval.sec, t.interval.nsec, t.value.sec, t.value.nsec));
          batch.call(NR_TIMER_SETTIME, [t.id, 0, spec, 0], { what: `arm POSIX timer ${t.id}` });
        }
      }
      batch.call(SYS.prctl, [PR_TIMER_CREATE_RESTORE_IDS, RESTORE_IDS_OFF, 0, 0, 0], { what: 'timer ids back to kernel-chosen' });
    }
    const start = ctx.now();
    try {
      await batch.run(ctx.tracer, hostPidOf(ctx), { pid: ctx.pid });
    } catch (err) {
      const e = err as { syscall?: string; errno?: number; detail?: string };
      if (e.errno === 22 /* EINVAL */ && String(e.detail).includes('PR_TIMER_CREATE_RESTORE_IDS')) {
        throw new StageError({ stage: ctx.stage, pid: ctx.pid, resource: ctx.resource, syscall: 'prctl', errno: 22, message: 'this kernel cannot create POSIX timers with chosen ids (PR_TIMER_CREATE_RESTORE_IDS needs Linux 6.13+)', cause: err });
      }
      throw err;
    }
    ctx.record({ name: 'timers', start, end: ctx.now(), syscalls: batch.size });
  },
};
