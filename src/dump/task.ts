// Reads one frozen process's state: ptrace (registers, xstate, masks, pending signals, rseq),
// /proc (stat, status, limits) and a stub list in every thread for what only the thread knows.
import { StageError } from '../errors.js';
import { decodeStatus, parseLimits, parseStat, readProc } from './proc.js';
import { NR_TIMER_GETOVERRUN, parseProcTimers, posixTimerEntry } from './timers.js';
import { NR, syscallFailed, type Scratch } from './inject.js';
import { packCommands, STUB_CMD_SIZE, STUB_HEADER_OFFSET, STUB_HEADER_SIZE } from '../actors/stub.js';
import { emptyTlsDesc, type Regs } from './regs.js';
import type { BatchCommand, TaskControl } from './control.js';
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
  // All at once: the tracer thread takes them in one wake-up, not one round trip each.
  const got = await Promise.all(tids.map((tid) => ctl.getRegs(tid)));
  return new Map(tids.map((tid, i) => [tid, got[i]!]));
}

// One thread's probe block in the scratch area: [data][list header][commands]. The data part
// holds what the commands write (tid address, robust list head and length, stack_t, pdeath
// signal, three user_desc for get_thread_area, which reads each one's entry_number first).
const PROBE_DATA = { tidAddr: 0, rlHead: 8, rlLen: 16, ss: 24, pdeath: 48, tls: 56 } as const;
const PROBE_DATA_SIZE = 104;
const PROBE_COMMANDS = 8;
const PROBE_BLOCK = PROBE_DATA_SIZE + STUB_HEADER_SIZE + PROBE_COMMANDS * STUB_CMD_SIZE;
const ENOSYS_RESULT = BigInt.asUintN(64, -38n); // a command the list never reached
const PROBE_NAMES = ['prctl(PR_GET_TID_ADDRESS)', 'get_robust_list', 'sigaltstack', 'prctl(PR_GET_SECUREBITS)', 'prctl(PR_GET_PDEATHSIG)'];

function probeCommands(block: bigint): BatchCommand[] {
  const at = (off: number) => block + BigInt(off);
  return [
    { nr: NR.prctl, args: [PR.GET_TID_ADDRESS, at(PROBE_DATA.tidAddr), 0, 0, 0, 0] },
    { nr: NR.get_robust_list, args: [0, at(PROBE_DATA.rlHead), at(PROBE_DATA.rlLen), 0, 0, 0] },
    { nr: NR.sigaltstack, args: [0, at(PROBE_DATA.ss), 0, 0, 0, 0] },
    { nr: NR.prctl, args: [PR.GET_SECUREBITS, 0, 0, 0, 0, 0] },
    { nr: NR.prctl, args: [PR.GET_PDEATHSIG, at(PROBE_DATA.pdeath), 0, 0, 0, 0] },
    ...[0, 1, 2].map((i) => ({ nr: NR.get_thread_area, args: [at(PROBE_DATA.tls + i * 16), 0, 0, 0, 0, 0] })),
  ];
}

/** The probe block of one thread, data pre-filled, header counting its commands. */
function probeBlock(block: bigint): Buffer {
  const buf = Buffer.alloc(PROBE_BLOCK);
  [12, 13, 14].forEach((n, i) => emptyTlsDesc(n).copy(buf, PROBE_DATA.tls + i * 16));
  buf.writeBigUInt64LE(BigInt(PROBE_COMMANDS), PROBE_DATA_SIZE);
  packCommands(probeCommands(block)).copy(buf, PROBE_DATA_SIZE + STUB_HEADER_SIZE);
  return buf;
}

type Probed = Pick<ThreadState, 'tls' | 'clearTidAddr' | 'robustList' | 'altstack' | 'secbits' | 'pdeathSig'>;

function probeResult(tid: number, data: Buffer, r: bigint[]): Probed {
  PROBE_NAMES.forEach((n, i) => check(tid, n, r[i]!));
  return {
    tls: [0, 1, 2].map((i) => (syscallFailed(r[5 + i]!) ? emptyTlsDesc(12 + i) : Buffer.from(data.subarray(PROBE_DATA.tls + i * 16, PROBE_DATA.tls + i * 16 + 16)))),
    clearTidAddr: data.readBigUInt64LE(PROBE_DATA.tidAddr),
    robustList: { head: data.readBigUInt64LE(PROBE_DATA.rlHead), len: Number(data.readBigUInt64LE(PROBE_DATA.rlLen)) },
    altstack: { sp: data.readBigUInt64LE(PROBE_DATA.ss), flags: data.readInt32LE(PROBE_DATA.ss + 8), size: data.readBigUInt64LE(PROBE_DATA.ss + 16) },
    secbits: Number(r[3]),
    pdeathSig: data.readInt32LE(PROBE_DATA.pdeath),
  };
}

/**
 * The injected part for many threads: every thread runs its own probe list from its own block
 * of the scratch area, all at once (one write, one tracer operation, one read per round of
 * ~1,400 threads). Without the tracer's thread lists, one batch per thread.
 */
async function probeInjected(ctl: TaskControl, scratch: Scratch, pid: number, tids: number[]): Promise<Map<number, Probed>> {
  const out = new Map<number, Probed>();
  const lists = ctl.threadLists?.bind(ctl);
  // Thread lists go from the list header on (the main thread runs nothing meanwhile); a single
  // batch keeps its header there, so its block goes in the data area.
  const area = lists ? scratch.base + BigInt(STUB_HEADER_OFFSET) : scratch.alloc(PROBE_BLOCK);
  const perRound = lists ? Math.floor(Number(scratch.base + BigInt(scratch.dataEnd) - area) / PROBE_BLOCK) : 1;
  const resultAt = (k: number) => PROBE_DATA_SIZE + STUB_HEADER_SIZE + k * STUB_CMD_SIZE + 64;
  for (let start = 0; start < tids.length; start += perRound) {
    const round = tids.slice(start, start + perRound);
    const image = Buffer.alloc(round.length * PROBE_BLOCK);
    round.forEach((_, i) => probeBlock(area + BigInt(i * PROBE_BLOCK)).copy(image, i * PROBE_BLOCK));
    ctl.writeMemory(pid, area, image);
    let single: bigint[] | undefined;
    if (lists) await lists(pid, scratch.base, round.map((tid, i) => ({ tid, header: area + BigInt(i * PROBE_BLOCK + PROBE_DATA_SIZE) })));
    else single = await ctl.batch(round[0]!, scratch.base, probeCommands(area));
    const back = ctl.readMemory(pid, [{ addr: area, len: image.length }]);
    round.forEach((tid, i) => {
      const block = back.subarray(i * PROBE_BLOCK, (i + 1) * PROBE_BLOCK);
      const executed = single ? single.length : Number(block.readBigUInt64LE(PROBE_DATA_SIZE + 8));
      const r = Array.from({ length: PROBE_COMMANDS }, (_, k) =>
        k >= executed ? ENOSYS_RESULT : single ? single[k]! : block.readBigUInt64LE(resultAt(k)),
      );
      out.set(tid, probeResult(tid, block, r));
    });
  }
  return out;
}

/**
 * The per-thread part of every thread of a task: its probe list (probeInjected), ptrace reads
 * (all posted at once) and /proc (status and stat; comm is stat's).
 */
export async function probeThreads(ctl: TaskControl, scratch: Scratch, pid: number, tids: number[], regs: Map<number, Regs>, masks: Map<number, bigint>): Promise<ThreadState[]> {
  scratch.reset();
  const injected = await probeInjected(ctl, scratch, pid, tids);
  const [xsaves, pendings, rseqs] = await Promise.all([
    Promise.all(tids.map((tid) => ctl.getXstate(tid))),
    Promise.all(tids.map((tid) => ctl.peekSiginfo(tid, false))),
    Promise.all(tids.map((tid) => ctl.getRseq(tid))),
  ]);
  return tids.map((tid, i) => {
    const stat = parseStat(readProc(pid, `task/${tid}/stat`));
    return {
      tid,
      regs: regs.get(tid)!,
      xsave: xsaves[i]!,
      ...injected.get(tid)!,
      blocked: masks.get(tid)!,
      pending: pendings[i]!,
      rseq: rseqs[i],
      comm: stat.comm,
      stat,
      status: decodeStatus(readProc(pid, `task/${tid}/status`)),
    };
  });
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
