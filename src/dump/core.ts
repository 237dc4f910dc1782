// core-TID.img entries: thread_info (registers, FPU, TLS, clear_child_tid), the task core (only
// in the main thread's image: state, comm, personality, blocked mask, itimers, rlimits, shared
// pending signals, sigactions, seccomp mode) and the thread core (robust list, scheduling,
// sigaltstack, per-thread pending signals and blocked mask, creds, rseq).
import type { Entry } from './ids.js';
import type { ProcStat, ProcStatus } from './proc.js';
import { fixSyscallRestart, fpregsEntry, gpregsEntry, tlsEntry, type Regs } from './regs.js';

export const MARCH_X86_64 = 1;
export const TASK_ALIVE = 1;
export const TASK_DEAD = 2;
export const TASK_STOPPED = 3;

/** What was read from inside one thread (injected syscalls and ptrace). */
export interface ThreadState {
  tid: number;
  regs: Regs;
  xsave: Buffer;
  tls: Buffer[]; // three struct user_desc
  clearTidAddr: bigint;
  robustList: { head: bigint; len: number };
  altstack: { sp: bigint; size: bigint; flags: number };
  blocked: bigint;
  pending: Uint8Array[]; // siginfo_t each
  rseq?: { ptr: bigint; len: number; sig: number };
  secbits: number;
  pdeathSig: number;
  comm: string;
  stat: ProcStat;
  status: ProcStatus;
}

/** What was read from inside the task as a whole. */
export interface TaskState {
  personality: number;
  itimers: Array<{ isec: bigint; iusec: bigint; vsec: bigint; vusec: bigint }>; // real, virt, prof
  rlimits: Array<{ cur: bigint; max: bigint }>;
  sharedPending: Uint8Array[];
  sigactions: Array<{ handler: bigint; flags: bigint; restorer: bigint; mask: bigint }>;
  loginuid: number;
  oomScoreAdj: number;
  childSubreaper: boolean;
  posixTimers: Entry[];
  /** The stop signal of a task stopped when dumped. */
  stopSignal?: number;
}

/** Capability sets are stored as two u32 words, low first. */
function capWords(v: bigint): number[] {
  return [Number(v & 0xffffffffn), Number(v >> 32n)];
}

export function credsEntry(st: ProcStatus, secbits: number): Entry {
  const e: Entry = {
    uid: st.uids[0],
    gid: st.gids[0],
    euid: st.uids[1],
    egid: st.gids[1],
    suid: st.uids[2],
    sgid: st.gids[2],
    fsuid: st.uids[3],
    fsgid: st.gids[3],
    cap_inh: capWords(st.capInh),
    cap_prm: capWords(st.capPrm),
    cap_eff: capWords(st.capEff),
    cap_bnd: capWords(st.capBnd),
    secbits,
    cap_amb: capWords(st.capAmb),
  };
  if (st.groups.length) e.groups = st.groups;
  if (st.noNewPrivs) e.no_new_privs = st.noNewPrivs;
  return e;
}

function signalQueue(infos: Uint8Array[]): Entry {
  return infos.length ? { signals: infos.map((siginfo) => ({ siginfo })) } : {};
}

function threadCore(t: ThreadState, isMain: boolean, cgSet: number): Entry {
  const e: Entry = {
    futex_rla: t.robustList.head,
    futex_rla_len: t.robustList.len,
    sched_nice: t.stat.nice,
    sched_policy: t.stat.policy,
  };
  if (t.stat.policy === 1 || t.stat.policy === 2) e.sched_prio = t.stat.rtPriority;
  if (!isMain) e.blk_sigset = t.blocked;
  e.sas = { ss_sp: t.altstack.sp, ss_size: t.altstack.size, ss_flags: t.altstack.flags };
  if (t.pdeathSig) e.pdeath_sig = t.pdeathSig;
  e.signals_p = signalQueue(t.pending);
  e.creds = credsEntry(t.status, t.secbits);
  e.comm = t.comm;
  if (t.rseq) e.rseq_entry = { rseq_abi_pointer: t.rseq.ptr, rseq_abi_size: t.rseq.len, signature: t.rseq.sig };
  e.cg_set = cgSet;
  return e;
}

function taskCore(main: ThreadState, task: TaskState, seccompMode: number): Entry {
  const names = ['real', 'virt', 'prof'];
  const timers: Entry = {};
  task.itimers.forEach((t, i) => (timers[names[i]!] = t));
  const e: Entry = {
    task_state: task.stopSignal ? TASK_STOPPED : TASK_ALIVE,
    exit_code: 0,
    personality: task.personality,
    flags: main.stat.flags,
    blk_sigset: main.blocked,
    comm: main.comm,
    timers,
    rlimits: { rlimits: task.rlimits },
    signals_s: signalQueue(task.sharedPending),
    loginuid: task.loginuid,
    oom_score_adj: task.oomScoreAdj,
    sigactions: task.sigactions.map((s) => ({
      sigaction: s.handler,
      flags: s.flags,
      restorer: s.restorer,
      mask: s.mask,
      compat_sigaction: false,
    })),
    child_subreaper: task.childSubreaper,
  };
  if (task.stopSignal) e.stop_signo = task.stopSignal;
  if (seccompMode) e.seccomp_mode = seccompMode;
  if (task.posixTimers.length) e.timers = { ...timers, posix: task.posixTimers };
  return e;
}

/** The core entry of one thread; `task` is given for the main thread only. */
/** A thread's core; `cgSet` its cgroup set (cgroup.img; 1 is crr's own). */
export function coreEntry(t: ThreadState, task: TaskState | undefined, seccompMode = 0, cgSet = 1): Entry {
  const e: Entry = {
    mtype: MARCH_X86_64,
    thread_info: {
      clear_tid_addr: t.clearTidAddr,
      gpregs: gpregsEntry(fixSyscallRestart(t.regs)),
      fpregs: fpregsEntry(t.xsave),
      tls: t.tls.map(tlsEntry),
    },
  };
  if (task) e.tc = { ...taskCore(t, task, seccompMode), cg_set: cgSet };
  e.thread_core = threadCore(t, task !== undefined, cgSet);
  return e;
}

/**
 * The core entry of a zombie, as criu writes it: a task core only (no thread_info, no
 * thread_core), state DEAD, the wait status from /proc/PID/stat as exit_code, and comm.
 */
export function zombieCoreEntry(exitCode: number, comm: string): Entry {
  return {
    mtype: MARCH_X86_64,
    tc: { task_state: TASK_DEAD, exit_code: exitCode, personality: 0, flags: 0, blk_sigset: 0n, comm },
  };
}
