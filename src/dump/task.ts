// Reads one frozen process's state: ptrace (registers, xstate, masks, pending signals, rseq),
// /proc (stat, status, limits, comm) and one stub batch per thread for what only the task knows.
import { StageError } from '../errors.js';
import { decodeStatus, parseLimits, parseStat, readProc } from './proc.js';
import { NR_TIMER_GETOVERRUN, parseProcTimers, posixTimerEntry } from './timers.js';
import { NR, syscallFailed, type Scratch } from './inject.js';
import { emptyTlsDesc, type Regs } from './regs.js';
import type { TaskControl } from './control.js';
import type { TaskState, ThreadState } from './core.js';
import type { MmFromTask } from './mm.js';
import type { Entry } from './ids.js';

const PR = { GET_PDEATHSIG: 2, GET_DUMPABLE: 3, GET_SECUREBITS: 27, GET_CHILD_SUBREAPER: 37, GET_TID_ADDRESS: 40, GET_THP_DISABLE: 42 };
const NSIG = 64;

function check(pid: number, what: string, v: bigint): bigint {
  if (syscallFailed(v)) {
    throw new StageError({ stage: 'collect', pid, syscall: what, errno: Number(-BigInt.asIntN(64, v)), message: `injected ${what} failed` });
  }
  return v;
}

/** Registers of every thread as they were when frozen: the dump restores exactly these. */
export async function saveRegs(ctl: TaskControl, tids: number[]): Promise<Map<number, Regs>> {
  const out = new Map<number, Regs>();
  for (const tid of tids) out.set(tid, await ctl.getRegs(tid));
  return out;
}

/** The per-thread part: one batch in the thread itself, plus ptrace reads. */
export async function probeThread(ctl: TaskControl, scratch: Scratch, pid: number, tid: number, regs: Regs): Promise<ThreadState> {
  scratch.reset();
  const tidAddr = scratch.alloc(8);
  const rlHead = scratch.alloc(8);
  const rlLen = scratch.alloc(8);
  const ss = scratch.alloc(24);
  const pdeath = scratch.alloc(8);
  const tls = [12, 13, 14].map((n) => scratch.alloc(16, emptyTlsDesc(n)));
  const r = await scratch.run(tid, [
    { nr: NR.prctl, args: [PR.GET_TID_ADDRESS, tidAddr, 0, 0, 0, 0] },
    { nr: NR.get_robust_list, args: [0, rlHead, rlLen, 0, 0, 0] },
    { nr: NR.sigaltstack, args: [0, ss, 0, 0, 0, 0] },
    { nr: NR.prctl, args: [PR.GET_SECUREBITS, 0, 0, 0, 0, 0] },
    { nr: NR.prctl, args: [PR.GET_PDEATHSIG, pdeath, 0, 0, 0, 0] },
    ...tls.map((a) => ({ nr: NR.get_thread_area, args: [a, 0, 0, 0, 0, 0] })),
  ]);
  ['prctl(PR_GET_TID_ADDRESS)', 'get_robust_list', 'sigaltstack', 'prctl(PR_GET_SECUREBITS)', 'prctl(PR_GET_PDEATHSIG)'].forEach((n, i) => check(tid, n, r[i]!));
  const data = scratch.read(tidAddr, Number(tls[2]! + 16n - tidAddr));
  const at = (a: bigint) => Number(a - tidAddr);
  const status = decodeStatus(readProc(pid, `task/${tid}/status`));
  return {
    tid,
    regs,
    xsave: await ctl.getXstate(tid),
    tls: tls.map((a, i) => (syscallFailed(r[5 + i]!) ? emptyTlsDesc(12 + i) : data.subarray(at(a), at(a) + 16))),
    clearTidAddr: data.readBigUInt64LE(at(tidAddr)),
    robustList: { head: data.readBigUInt64LE(at(rlHead)), len: Number(data.readBigUInt64LE(at(rlLen))) },
    altstack: { sp: data.readBigUInt64LE(at(ss)), flags: data.readInt32LE(at(ss) + 8), size: data.readBigUInt64LE(at(ss) + 16) },
    blocked: await ctl.getSigmask(tid),
    pending: await ctl.peekSiginfo(tid, false),
    rseq: await ctl.getRseq(tid),
    secbits: Number(r[3]),
    pdeathSig: data.readInt32LE(at(pdeath)),
    comm: readProc(pid, `task/${tid}/comm`).replace(/\n$/, ''),
    stat: parseStat(readProc(pid, `task/${tid}/stat`)),
    status,
  };
}

/** The task-wide part, run in the main thread: sigactions, itimers, brk and friends, pipe sizes. */
export async function probeProcess(ctl: TaskControl, scratch: Scratch, pid: number, pipeFds: number[]): Promise<{ task: TaskState; mm: MmFromTask; pipeSizes: Map<number, number> }> {
  scratch.reset();
  const acts = Array.from({ length: NSIG }, () => scratch.alloc(32));
  const itv = [0, 1, 2].map(() => scratch.alloc(32));
  const subreaper = scratch.alloc(8);
  const timers = parseProcTimers(safeRead(pid, 'timers'));
  const timerVals = timers.map(() => scratch.alloc(32));
  const cmds = [
    ...acts.map((a, i) => ({ nr: NR.rt_sigaction, args: [i + 1, 0, a, 8, 0, 0] })),
    ...itv.map((a, i) => ({ nr: NR.getitimer, args: [i, a, 0, 0, 0, 0] })),
    { nr: NR.brk, args: [0, 0, 0, 0, 0, 0] },
    { nr: NR.prctl, args: [PR.GET_DUMPABLE, 0, 0, 0, 0, 0] },
    { nr: NR.prctl, args: [PR.GET_THP_DISABLE, 0, 0, 0, 0, 0] },
    { nr: NR.prctl, args: [PR.GET_CHILD_SUBREAPER, subreaper, 0, 0, 0, 0] },
    { nr: NR.personality, args: [0xffffffff, 0, 0, 0, 0, 0] },
    ...pipeFds.map((fd) => ({ nr: NR.fcntl, args: [fd, 1032 /* F_GETPIPE_SZ */, 0, 0, 0, 0] })),
    ...timers.map((t, i) => ({ nr: NR.timer_gettime, args: [t.id, timerVals[i]!, 0, 0, 0, 0] })),
    ...timers.map((t) => ({ nr: NR_TIMER_GETOVERRUN, args: [t.id, 0, 0, 0, 0, 0] })),
  ];
  const r = await scratch.run(pid, cmds);
  r.forEach((v, i) => check(pid, cmds[i]!.nr === NR.rt_sigaction ? 'rt_sigaction' : `syscall ${cmds[i]!.nr}`, v));
  const mem = scratch.read(acts[0]!, Number(subreaper + 8n - acts[0]!));
  const at = (a: bigint) => Number(a - acts[0]!);
  const u64 = (a: bigint, o = 0) => mem.readBigUInt64LE(at(a) + o);
  const base = NSIG + 3;
  const status = decodeStatus(readProc(pid, 'status'));
  void status;
  const overruns = r.slice(r.length - timers.length);
  const posix: Entry[] = timers.map((t, i) => posixTimerEntry(t, scratch.read(timerVals[i]!, 32), overruns[i]!));
  const pipeSizes = new Map<number, number>();
  pipeFds.forEach((fd, i) => pipeSizes.set(fd, Number(r[base + 5 + i])));
  return {
    task: {
      personality: Number(r[base + 4]),
      itimers: itv.map((a) => ({ isec: u64(a, 0), iusec: u64(a, 8), vsec: u64(a, 16), vusec: u64(a, 24) })),
      rlimits: parseLimits(readProc(pid, 'limits')),
      sharedPending: await ctl.peekSiginfo(pid, true),
      // Like CRIU, one entry per signal but SIGKILL and SIGSTOP (their action cannot change).
      sigactions: acts.filter((_, i) => i + 1 !== 9 && i + 1 !== 19).map((a) => ({ handler: u64(a, 0), flags: u64(a, 8), restorer: u64(a, 16), mask: u64(a, 24) })),
      loginuid: Number(readProc(pid, 'loginuid').trim()) >>> 0,
      oomScoreAdj: Number(readProc(pid, 'oom_score_adj').trim()),
      childSubreaper: mem.readInt32LE(at(subreaper)) !== 0,
      posixTimers: posix,
    },
    mm: { brk: r[base]!, dumpable: Number(r[base + 1]), thpDisabled: r[base + 2] !== 0n },
    pipeSizes,
  };
}

function safeRead(pid: number, file: string): string {
  try {
    return readProc(pid, file);
  } catch {
    return '';
  }
}
