// Threads of a restored process, made in bulk so 10,000 threads cost a few tracer round trips:
// one stub batch of clone3 calls (set_tid = each dumped TID; kernel notes step 6) in the main
// thread, untraced (a PTRACE_EVENT_CLONE stop per thread cost a tracer wake-up each); every new
// thread runs its own short list (rseq, robust list, name, sigaltstack, scheduling: state a
// thread can only set for itself) from its block of the scratch area and parks in pause(), then
// all are seized at once. Also the list of a task's threads with their TIDs as the tracer sees
// them, kept for the later stages.
import { readdirSync, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { NativeError } from '../errors.js';
import { setU64, STUB_CLONE_CHILD_LIST, STUB_CMD_SIZE, STUB_DATA_OFFSET, STUB_HEADER_SIZE, STUB_MAX_COMMANDS, STUB_SCRATCH_SIZE, STUB_STOP_ON_ERROR } from '../actors/stub.js';
import { NT_X86_XSTATE, type Regs, type Tracer } from '../actors/tracer.js';
import type { TaskRuntime } from './context.js';
import { checkResults } from './remote.js';
import { align8, ThreadList, type ThreadBatch } from './remote-thread-lists.js';
import { commBytes } from './remote-mm.js';
import { GPREG_FIELDS, xstateBuffer } from './remote-regs.js';
import { CLONE_THREAD_FLAGS, errnoName, isSyscallError, PR_SET_NAME, PRIO_PROCESS, signed, SS_DISABLE, SYS } from './remote-sys.js';

export interface RestoredThread {
  /** TID in the restored task's PID namespace (as dumped). */
  readonly tid: number;
  /** TID as crr's tracer sees it. */
  readonly hostTid: number;
}

const threadsOf = new WeakMap<TaskRuntime, RestoredThread[]>();

/** Every thread of a task once the threads stage ran; the main thread first. */
export function restoredThreads(runtime: TaskRuntime, mainHostPid: number): RestoredThread[] {
  return threadsOf.get(runtime) ?? [{ tid: runtime.pid, hostTid: mainHostPid }];
}

export function setRestoredThreads(runtime: TaskRuntime, threads: RestoredThread[]): void {
  threadsOf.set(runtime, threads);
}

const fpuOf = new WeakMap<TaskRuntime, Record<string, unknown>>();

/** The FPU Entry a task's threads were created with (see shareFpuState), if any. */
export function inheritedFpregs(runtime: TaskRuntime): Record<string, unknown> | undefined {
  return fpuOf.get(runtime);
}

/**
 * Gives the main thread the FPU state `fpregs` before it makes the other threads: clone3 copies
 * its caller's FPU registers into the new thread (the stub uses none), so each thread whose image
 * holds that same state (idle threads of a process share one decoded Entry) needs no
 * PTRACE_SETREGSET in the regs kind (10,000 of them were 35-90 ms). The main thread gets its own
 * state back there, last.
 */
export async function shareFpuState(tracer: Tracer, hostPid: number, runtime: TaskRuntime, fpregs: Record<string, unknown>): Promise<void> {
  const current = await tracer.getRegset(hostPid, NT_X86_XSTATE);
  await tracer.setRegset(hostPid, NT_X86_XSTATE, xstateBuffer(current, fpregs));
  fpuOf.set(runtime, fpregs);
}

const CLONE_CHILD_CLEARTID = 0x200000;
const CLONE_ARGS_SIZE = 88;
/** clone_args then the one pid_t set_tid points at, 8-aligned. */
const CLONE_SLOT = CLONE_ARGS_SIZE + 8;

/**
 * struct clone_args (88 bytes) for a thread with an exact TID, written at `at` in `view` (zeroed:
 * pidfd, parent_tid, exit_signal (0: a thread), stack, stack_size and tls stay 0); set_tid points
 * at one pid_t. A non-zero clearTid is the thread's clear_child_tid (CLONE_CHILD_CLEARTID sets it
 * as set_tid_address would, saving that call in the thread).
 */
function writeCloneArgs(view: DataView, at: number, setTidAddr: bigint, clearTid: bigint): void {
  view.setUint32(at, CLONE_THREAD_FLAGS | (clearTid !== 0n ? CLONE_CHILD_CLEARTID : 0), true); // flags (all in the low half)
  setU64(view, at + 16, clearTid); // child_tid
  setU64(view, at + 64, setTidAddr); // set_tid
  view.setUint32(at + 72, 1, true); // set_tid_size: the innermost namespace only
}

/** The clear_child_tid address of a thread's core image (0 when none). */
export function clearTidOf(core: Record<string, unknown>): bigint {
  const info = (core['thread_info'] as Record<string, unknown> | undefined) ?? {};
  return BigInt((info['clear_tid_addr'] as bigint | number | undefined) ?? 0);
}

/** The ptrace options of a restored task (barrier.ts) but TRACECLONE: see createThreads. */
const PTRACE_O_TRACESYSGOOD = 0x1;
const PTRACE_O_EXITKILL = 0x100000;
const PTRACE_O_SUSPEND_SECCOMP = 0x200000;

/** The ptrace options createThreads leaves on a task's threads, main thread included. */
export function threadPtraceOptions(suspendSeccomp: boolean): number {
  return PTRACE_O_TRACESYSGOOD | PTRACE_O_EXITKILL | (suspendSeccomp ? PTRACE_O_SUSPEND_SECCOMP : 0);
}

export interface WantedThread {
  readonly tid: number;
  readonly clearTid: bigint;
  /** The thread's own commands (rseq, robust list...), run by the thread itself as it starts. */
  build(list: ThreadBatch): void;
}

/**
 * Creates the threads `wanted` in the task `hostPid` (stopped, the stub at `scratch`) without a
 * tracer stop per thread: TRACECLONE goes off, the main thread runs a batch of clone3s
 * (CRR_STUB_CLONE_CHILD_LIST), each new thread runs its own list from the scratch area and
 * blocks in pause(tid); once every round's have, all are seized and interrupted together and
 * named by the TID their pause holds (rdi). Rounds as large as the data area holds (~2,000
 * threads). `onCreated` hears of every thread seized, failure or not. Resolves with the
 * threads, stopped in pause() with their lists done. A failure before the seizing leaves the
 * threads made so far parked untraced: they die with the task the rollback kills.
 */
export async function createThreads(
  tracer: Tracer,
  hostPid: number,
  scratch: bigint,
  pid: number,
  wanted: readonly WantedThread[],
  options: {
    suspendSeccomp: boolean;
    /** A promise while wanted[index]'s image is not there yet (it is decoded meanwhile). */
    imageReady?: (index: number) => Promise<void> | undefined;
  },
  onCreated: (created: RestoredThread[]) => void,
): Promise<RestoredThread[]> {
  const ptraceOptions = threadPtraceOptions(options.suspendSeccomp);
  await tracer.setOptions(hostPid, ptraceOptions);
  const created: RestoredThread[] = [];
  /** Dumped TIDs of the threads clone3 made so far. */
  const madeTids = new Set<number>();
  const areaStart = STUB_DATA_OFFSET;
  let next = 0;
  /** The next round's lists and clone3 commands, built in JS only (nothing is sent yet). */
  const prepare = async (): Promise<PreparedRound | undefined> => {
    if (next >= wanted.length) return undefined;
    const round: Array<{ w: WantedThread; at: number; list: ThreadList }> = [];
    let end = areaStart;
    while (next < wanted.length && round.length < STUB_MAX_COMMANDS) {
      const ready = options.imageReady?.(next);
      if (ready) await ready; // most are decoded already: no await (a microtask turn) each
      const w = wanted[next]!;
      const listAt = end + CLONE_SLOT;
      const list = new ThreadList(scratch + BigInt(listAt));
      w.build(list);
      list.call(SYS.pause, [w.tid], { what: `park thread ${w.tid}` }); // rdi names it in a register dump
      if (align8(listAt + list.length) > STUB_SCRATCH_SIZE) {
        if (round.length === 0) throw new RangeError(`thread ${w.tid}: its list outgrows the scratch area`);
        break;
      }
      round.push({ w, at: end, list });
      end = align8(listAt + list.length);
      next++;
    }
    const data = Buffer.alloc(end - areaStart);
    const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
    const commands = round.map(({ w, at, list }) => {
      const slot = scratch + BigInt(at);
      writeCloneArgs(view, at - areaStart, slot + BigInt(CLONE_ARGS_SIZE), w.clearTid);
      data.writeInt32LE(w.tid, at - areaStart + CLONE_ARGS_SIZE);
      list.packInto(data, at + CLONE_SLOT - areaStart, 0); // a child's failure must not reach the int3: checked below
      return { nr: SYS.clone3, args: [slot, CLONE_ARGS_SIZE, scratch + BigInt(at + CLONE_SLOT + list.headerOffset)], flags: STUB_STOP_ON_ERROR | STUB_CLONE_CHILD_LIST };
    });
    return { round, data, commands };
  };
  try {
    let prepared = await prepare();
    while (prepared) {
      const { round, data, commands } = prepared;
      const batch = tracer.runBatch(hostPid, { scratch, commands, timeoutMs: 5000 + round.length, data: { addr: scratch + BigInt(areaStart), bytes: data } });
      batch.catch(() => {}); // awaited below, after the next round is built
      // The next round is built in JS while the tracer runs this one's clone3s (10,000 threads:
      // ~5 rounds of 15-100 ms of JS each, and as long in the kernel); it is sent only once this
      // round's threads have run their lists, the data area being theirs until then.
      let following: PreparedRound | undefined;
      let unprepared: unknown; // thrown once this round's results are checked
      try {
        following = await prepare();
      } catch (err) {
        unprepared = err;
      }
      const got = await batch;
      let made = 0;
      while (made < got.executed && !isSyscallError(signed(got.results[made]!))) made++;
      for (let i = 0; i < made; i++) {
        const { w } = round[i]!;
        if (Number(got.results[i]!) !== w.tid) throw new NativeError({ code: 'EPROTO', errno: 71, syscall: 'clone3', pid, detail: `thread got TID ${got.results[i]}, wanted ${w.tid}` });
        madeTids.add(w.tid);
      }
      const back = await waitForLists(tracer, hostPid, scratch, round.slice(0, made), areaStart, 5000 + made);
      for (let i = 0; i < made; i++) checkThreadList(back, round[i]!.at + CLONE_SLOT - areaStart, round[i]!.list, pid);
      if (made < round.length) {
        const result = made < got.executed ? signed(got.results[made]!) : -71n;
        const errno = Number(-result);
        throw new NativeError({ code: errnoName(errno), errno, syscall: 'clone3', pid, detail: `thread ${round[made]!.w.tid}` });
      }
      if (unprepared !== undefined) throw unprepared;
      prepared = following;
    }
    // All are seized once, at the end: one listing of /proc/PID/task (a listing per round also
    // listed every earlier round's threads again: ~150 ms for 10,000). Each parked thread names
    // itself: pause(tid) holds its dumped TID in rdi. A task with one thread has none to list
    // (~35 us a task).
    if (madeTids.size === 0) return created;
    const tids = readdirSync(`/proc/${hostPid}/task`).map(Number).filter((t) => t !== hostPid);
    const rdis = await tracer.seizeThreads(hostPid, tids, ptraceOptions, 5000 + tids.length);
    const hostOf = new Map<number, number>();
    tids.forEach((t, k) => {
      const tid = Number(rdis[k]!);
      if (!madeTids.has(tid) || hostOf.has(tid)) throw new NativeError({ code: 'EPROTO', errno: 71, syscall: 'clone3', pid, detail: `thread ${t} (host) is parked as no thread made here (rdi ${rdis[k]})` });
      hostOf.set(tid, t);
      created.push({ tid, hostTid: t });
    });
    for (const tid of madeTids) {
      if (!hostOf.has(tid)) throw new NativeError({ code: 'EPROTO', errno: 71, syscall: 'clone3', pid, detail: `thread ${tid} not found in /proc/${hostPid}/task` });
    }
  } finally {
    onCreated(created);
  }
  return created;
}

/**
 * Checks the results of a new thread's own list (all but its final pause), packed at `at` in
 * `back`. Results are scanned as two u32 halves first: the bigints checkResults reads were
 * ~30,000 allocations per 10,000 threads, and a list almost never fails.
 */
function checkThreadList(back: Buffer, at: number, list: ThreadList, pid: number): void {
  const first = at + list.headerOffset + STUB_HEADER_SIZE + 64;
  const own = list.calls.length - 1;
  let plain = true;
  for (let k = 0; k < own && plain; k++) {
    const result = first + k * STUB_CMD_SIZE;
    // -4095..-1 (an errno) is a high half of all ones and a low half from 0xfffff001
    if (list.calls[k]!.expect !== undefined || (back.readUInt32LE(result + 4) === 0xffffffff && back.readUInt32LE(result) >= 0xfffff001)) plain = false;
  }
  if (plain) return;
  const results = list.calls.slice(0, own).map((_, k) => back.readBigInt64LE(first + k * STUB_CMD_SIZE));
  checkResults(list.calls.slice(0, own), results, own, pid);
}

interface PreparedRound {
  readonly round: Array<{ w: WantedThread; at: number; list: ThreadList }>;
  readonly data: Buffer;
  readonly commands: Array<{ nr: number; args: bigint[] | Array<number | bigint>; flags: number }>;
}

/**
 * Waits until every new thread of a round has run its list up to its final pause (the data
 * area is reused next round); resolves with the area as read last. The threads run untraced,
 * so this polls: they need only be scheduled once each.
 */
async function waitForLists(tracer: Tracer, hostPid: number, scratch: bigint, round: ReadonlyArray<{ at: number; list: ThreadList }>, areaStart: number, timeoutMs: number): Promise<Buffer> {
  const deadline = performance.now() + timeoutMs;
  if (round.length === 0) return Buffer.alloc(0);
  const length = round[round.length - 1]!.at + CLONE_SLOT + round[round.length - 1]!.list.length - areaStart;
  for (let from = 0; ; ) {
    const back = tracer.processVmRead(hostPid, scratch + BigInt(areaStart), length);
    while (from < round.length) {
      const { at, list } = round[from]!;
      const executed = Number(back.readBigUInt64LE(at + CLONE_SLOT + list.headerOffset - areaStart + 8));
      if (executed < list.calls.length - 1) break;
      from++;
    }
    if (from === round.length) return back;
    if (performance.now() > deadline) throw new NativeError({ code: 'ETIMEDOUT', errno: 110, syscall: 'clone3', pid: hostPid, detail: `${round.length - from} new threads did not run their lists` });
    await sleep(from === 0 ? 1 : 0);
  }
}

/** Registers of a thread as user_regs_struct bytes (GPREG_FIELDS is the struct order). */
export function packRegs(regs: Regs): Buffer {
  const words = new BigUint64Array(GPREG_FIELDS.length);
  GPREG_FIELDS.forEach((f, i) => {
    words[i] = BigInt.asUintN(64, regs[f]);
  });
  return Buffer.from(words.buffer);
}

/** A thread's scheduling policy (SCHED_*), real-time priority and nice value: the kernel's numbers. */
export interface Scheduling {
  readonly policy: number;
  readonly priority: number;
  readonly nice: number;
}

/** What thread_core says (sched_policy, sched_prio, sched_nice; absent means SCHED_OTHER, 0, 0). */
export function schedulingOf(core: Record<string, unknown>): Scheduling {
  const tc = (core['thread_core'] as Record<string, unknown> | undefined) ?? {};
  return { policy: Number(tc['sched_policy'] ?? 0), priority: Number(tc['sched_prio'] ?? 0), nice: Number(tc['sched_nice'] ?? 0) };
}

/** crr's own scheduling, which the first helper, and so every task's main thread, inherits. */
export function ownScheduling(stat = readFileSync('/proc/thread-self/stat', 'utf8')): Scheduling {
  // Fields after the command's closing parenthesis, from field 3 (state) on: nice is field 19,
  // rt_priority 40, policy 41 (proc(5)).
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { policy: Number(fields[41 - 3]), priority: Number(fields[40 - 3]), nice: Number(fields[19 - 3]) };
}

/**
 * Policy and priority, then nice, each only where it differs from what the thread inherits (at
 * clone3, the main thread's; the main thread, crr's): most trees need no call at all. Both calls
 * act on the calling thread, which is why they are in the thread's own list.
 */
function addScheduling(batch: ThreadBatch, wanted: Scheduling, tid: number, inherited: Scheduling): void {
  if (wanted.policy !== inherited.policy || wanted.priority !== inherited.priority) {
    const param = Buffer.alloc(8);
    param.writeInt32LE(wanted.priority, 0);
    batch.reserve(param.length, 1);
    batch.call(SYS.sched_setscheduler, [0, wanted.policy, batch.put(param)], { what: `set the scheduling policy ${wanted.policy} (priority ${wanted.priority}) of thread ${tid}` });
  }
  if (wanted.nice !== inherited.nice) batch.call(SYS.setpriority, [PRIO_PROCESS, 0, wanted.nice], { what: `set nice ${wanted.nice} of thread ${tid}` });
}

/** The per-thread kernel state a thread sets for itself, from its core image's thread_core/thread_info. */
export function addThreadState(
  batch: ThreadBatch,
  core: Record<string, unknown>,
  tid: number,
  options: { clearTidSet?: boolean; inheritedComm?: string; inheritedScheduling: Scheduling },
): void {
  const tc = (core['thread_core'] as Record<string, unknown> | undefined) ?? {};
  addScheduling(batch, schedulingOf(core), tid, options.inheritedScheduling);
  const info = (core['thread_info'] as Record<string, unknown> | undefined) ?? {};
  const rseq = tc['rseq_entry'] as Record<string, unknown> | undefined;
  if (rseq && BigInt((rseq['rseq_abi_pointer'] as bigint | number | undefined) ?? 0) !== 0n) {
    batch.call(SYS.rseq, [BigInt(rseq['rseq_abi_pointer'] as bigint), Number(rseq['rseq_abi_size']), 0, Number(rseq['signature'])], {
      what: `register rseq of thread ${tid}`,
    });
  }
  const clearTid = BigInt((info['clear_tid_addr'] as bigint | number | undefined) ?? 0);
  if (!options.clearTidSet) batch.call(SYS.set_tid_address, [clearTid], { what: `set clear_child_tid of thread ${tid}` });
  const rla = BigInt((tc['futex_rla'] as bigint | number | undefined) ?? 0);
  const rlaLen = Number(tc['futex_rla_len'] ?? 0);
  if (rlaLen > 0) batch.call(SYS.set_robust_list, [rla, rlaLen], { what: `set the robust list of thread ${tid}` });
  if (typeof tc['comm'] === 'string' && tc['comm'] && tc['comm'] !== options.inheritedComm) {
    batch.reserve(16, 1);
    batch.call(SYS.prctl, [PR_SET_NAME, batch.put(commBytes(tc['comm'])), 0, 0, 0], { what: `set the name of thread ${tid}` });
  }
  const sas = tc['sas'] as Record<string, unknown> | undefined;
  if (sas && Number(sas['ss_flags'] ?? SS_DISABLE) !== SS_DISABLE) {
    const ss = Buffer.alloc(24);
    ss.writeBigUInt64LE(BigInt((sas['ss_sp'] as bigint | number | undefined) ?? 0), 0);
    ss.writeInt32LE(Number(sas['ss_flags'] ?? 0), 8);
    ss.writeBigUInt64LE(BigInt((sas['ss_size'] as bigint | number | undefined) ?? 0), 16);
    batch.reserve(24, 1);
    batch.call(SYS.sigaltstack, [batch.put(ss), 0], { what: `set the alternate signal stack of thread ${tid}` });
  }
}
