// Threads of a restored process: an injected clone3 with set_tid = the dumped TID (kernel notes
// step 6), driven stop by stop through the stub's bare `syscall; int3` entry because the
// PTRACE_EVENT_CLONE stop comes in the middle of it; the new thread is auto-attached (the task
// must be seized with traceClone) and stops before it runs any code. Also the per-thread kernel
// state every thread sets for itself (rseq, clear_child_tid, robust list, name, sigaltstack) and the
// list of a task's threads with their TIDs as the tracer sees them, kept for the later stages.
import { setTimeout as sleep } from 'node:timers/promises';
import { NativeError } from '../errors.js';
import { STUB_DATA_OFFSET, STUB_ENTRY_SYSCALL, STUB_SYSCALL_TRAP_END } from '../actors/stub.js';
import type { Stop, Tracer } from '../actors/tracer.js';
import type { TaskRuntime } from './context.js';
import { RemoteBatch } from './remote.js';
import { commBytes } from './remote-mm.js';
import { CLONE_THREAD_FLAGS, errnoName, isSyscallError, PR_SET_NAME, signed, SS_DISABLE, SYS } from './remote-sys.js';

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

/** struct clone_args (88 bytes) for a thread with an exact TID; set_tid points at one pid_t. */
export function cloneArgs(setTidAddr: bigint): Buffer {
  const buf = Buffer.alloc(88);
  buf.writeBigUInt64LE(BigInt(CLONE_THREAD_FLAGS), 0); // flags
  // pidfd, child_tid, parent_tid, exit_signal (0: a thread), stack, stack_size, tls stay 0
  buf.writeBigUInt64LE(setTidAddr, 64); // set_tid
  buf.writeBigUInt64LE(1n, 72); // set_tid_size: the innermost namespace only
  return buf;
}

function unexpectedStop(pid: number, what: string, stop: Stop): NativeError {
  return new NativeError({ code: 'UNEXPECTED_STOP', errno: 0, syscall: 'clone3', pid, detail: `${what}: stopped by ${stop.kind} ${stop.event ?? stop.signal ?? ''}` });
}

/**
 * Waits for the first stop of an auto-attached thread. The tracer thread only reaps (and so only
 * learns of a new tracee) while someone waits on a tracee it knows, so until the new thread is
 * known a short wait on the main thread (stopped, with nothing more to report) keeps it reaping.
 */
async function firstStop(tracer: Tracer, hostTid: number, mainHostPid: number, pid: number, timeoutMs: number): Promise<Stop> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await tracer.waitStop(hostTid, Math.max(1, deadline - Date.now()));
    } catch (e) {
      if ((e as { code?: string }).code !== 'ESRCH' || Date.now() > deadline) throw e;
    }
    const main = await tracer.waitStop(mainHostPid, 2).catch((e: { code?: string }) => {
      if (e.code === 'ETIMEDOUT') return undefined;
      throw e;
    });
    if (main) throw unexpectedStop(pid, `waiting for the new thread ${hostTid}`, main);
  }
}

/**
 * Creates one thread with TID `tid` in the task `hostPid` (stopped at a stub trap, scratch at
 * `scratch`). Resolves with its TID as the tracer sees it, the thread stopped before its first
 * instruction. The main thread is left at the bare entry's trap.
 */
export async function createThread(tracer: Tracer, hostPid: number, scratch: bigint, tid: number, pid: number): Promise<number> {
  const data = scratch + BigInt(STUB_DATA_OFFSET);
  const setTid = Buffer.alloc(8);
  setTid.writeInt32LE(tid, 0);
  tracer.processVmWrite(hostPid, data, Buffer.concat([cloneArgs(data + 88n), setTid]));
  await tracer.setRegs(hostPid, { ip: scratch + BigInt(STUB_ENTRY_SYSCALL), ax: SYS.clone3, di: data, si: 88, orig_ax: -1n });
  await tracer.cont(hostPid);
  const first = await tracer.waitStop(hostPid, 5000);
  let hostTid: number | undefined;
  if (first.kind === 'event' && first.event === 'clone') {
    hostTid = Number(first.eventMsg);
    await tracer.cont(hostPid);
    const trap = await tracer.waitStop(hostPid, 5000);
    if (trap.kind !== 'signal' || trap.signal !== 5) throw unexpectedStop(pid, `creating thread ${tid}`, trap);
  } else if (first.kind !== 'signal' || first.signal !== 5) {
    throw unexpectedStop(pid, `creating thread ${tid}`, first);
  }
  const regs = await tracer.getRegs(hostPid);
  if (regs.ip !== scratch + BigInt(STUB_SYSCALL_TRAP_END)) throw unexpectedStop(pid, `creating thread ${tid} (trap elsewhere)`, first);
  if (isSyscallError(regs.ax)) {
    const errno = Number(-signed(regs.ax));
    throw new NativeError({ code: errnoName(errno), errno, syscall: 'clone3', pid, detail: `thread ${tid}` });
  }
  if (hostTid === undefined) {
    // The thread exists but nobody traces it: it would run the stub's int3 and kill the process.
    throw new NativeError({ code: 'EPROTO', errno: 71, syscall: 'clone3', pid, detail: `thread ${tid} was not auto-attached: seize the task with traceClone` });
  }
  if (Number(signed(regs.ax)) !== tid) {
    throw new NativeError({ code: 'EPROTO', errno: 71, syscall: 'clone3', pid, detail: `thread got TID ${regs.ax}, wanted ${tid}` });
  }
  const stop = await firstStop(tracer, hostTid, hostPid, pid, 5000);
  if (stop.kind === 'exited' || stop.kind === 'killed') throw unexpectedStop(pid, `new thread ${tid}`, stop);
  return hostTid;
}

/** The per-thread kernel state a thread sets for itself, from its core image's thread_core/thread_info. */
export function addThreadState(batch: RemoteBatch, core: Record<string, unknown>, tid: number): void {
  const tc = (core['thread_core'] as Record<string, unknown> | undefined) ?? {};
  const info = (core['thread_info'] as Record<string, unknown> | undefined) ?? {};
  const rseq = tc['rseq_entry'] as Record<string, unknown> | undefined;
  if (rseq && BigInt((rseq['rseq_abi_pointer'] as bigint | number | undefined) ?? 0) !== 0n) {
    batch.call(SYS.rseq, [BigInt(rseq['rseq_abi_pointer'] as bigint), Number(rseq['rseq_abi_size']), 0, Number(rseq['signature'])], {
      what: `register rseq of thread ${tid}`,
    });
  }
  const clearTid = BigInt((info['clear_tid_addr'] as bigint | number | undefined) ?? 0);
  batch.call(SYS.set_tid_address, [clearTid], { what: `set clear_child_tid of thread ${tid}` });
  const rla = BigInt((tc['futex_rla'] as bigint | number | undefined) ?? 0);
  const rlaLen = Number(tc['futex_rla_len'] ?? 0);
  if (rlaLen > 0) batch.call(SYS.set_robust_list, [rla, rlaLen], { what: `set the robust list of thread ${tid}` });
  if (typeof tc['comm'] === 'string' && tc['comm']) {
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
