// The last steps of a task (kernel notes step 7): every other thread gets its registers, full
// NT_X86_XSTATE and blocked mask; the main thread unmaps the scratch area with the stub's bare
// `syscall; int3` under PTRACE_SYSCALL and, stopped at that syscall's exit (no stub code left to
// return to), gets its own. `detach` (the resume stage, entered only when every task is done)
// then lets every thread of every task go.
import { readdirSync, readFileSync } from 'node:fs';
import { NT_X86_XSTATE, type Tracer } from '../actors/tracer.js';
import { STUB_SCRATCH_SIZE } from '../actors/stub.js';
import { NativeError } from '../errors.js';
import { hostPidOf, type RestoreCtx } from '../restore/context.js';
import { finalRegs, packFinalRegs, xstateBuffer, xstateSets } from '../restore/remote-regs.js';
import { errnoName, signed, SYS } from '../restore/remote-sys.js';
import { inheritedFpregs, restoredThreads } from '../restore/remote-threads.js';
import { scratchOf } from './memory.js';
import type { ResourceKind } from './types.js';

/** The blocked mask of a thread: its own (thread_core), or the task's for images that keep it there. */
export function blockedMask(core: Record<string, unknown>): bigint {
  const threadCore = core['thread_core'] as Record<string, unknown> | undefined;
  const tc = core['tc'] as Record<string, unknown> | undefined;
  const v = threadCore?.['blk_sigset'] ?? tc?.['blk_sigset'] ?? 0n;
  return BigInt.asUintN(64, BigInt(v as bigint | number));
}

/** Registers, xstate and signal mask of one stopped thread, from its core image. */
export async function setThreadCpu(tracer: Tracer, hostTid: number, core: Record<string, unknown>): Promise<void> {
  const info = (core['thread_info'] as Record<string, unknown> | undefined) ?? {};
  await tracer.setRegs(hostTid, finalRegs((info['gpregs'] as Record<string, unknown> | undefined) ?? {}));
  const fpregs = info['fpregs'] as Record<string, unknown> | undefined;
  if (fpregs) {
    const current = await tracer.getRegset(hostTid, NT_X86_XSTATE);
    await tracer.setRegset(hostTid, NT_X86_XSTATE, xstateBuffer(current, fpregs));
  }
  await tracer.setSigmask(hostTid, blockedMask(core));
}

/**
 * setThreadCpu for many stopped threads in one tracer operation. Every thread's xstate is built
 * over one template, the task's current buffer (`template`, or the first thread's read here):
 * the same kernel, so the same size and features. Threads whose FPU Entry is `inherited` have
 * that state since they were made: none is set.
 */
export async function setThreadsCpu(
  tracer: Tracer,
  threads: ReadonlyArray<{ tid: number; hostTid: number }>,
  coreOf: (tid: number) => Record<string, unknown>,
  options: { template?: Promise<Buffer>; inherited?: Record<string, unknown> } = {},
): Promise<void> {
  if (threads.length === 0) return;
  const cores = threads.map((t) => coreOf(t.tid));
  const infos = cores.map((core) => (core['thread_info'] as Record<string, unknown> | undefined) ?? {});
  const regsBuf = packFinalRegs(infos.map((info) => (info['gpregs'] as Record<string, unknown> | undefined) ?? {}));
  const withFpu = infos.every((info) => info['fpregs'] !== undefined);
  let xstate: { buffers: Buffer; indexOf: Buffer } | undefined;
  if (withFpu) {
    const template = await (options.template ?? tracer.getRegset(threads[0]!.hostTid, NT_X86_XSTATE));
    xstate = xstateSets(template, infos.map((info) => info['fpregs'] as Record<string, unknown>), options.inherited);
  } else {
    for (let i = 0; i < threads.length; i++) if (infos[i]!['fpregs']) await setThreadCpu(tracer, threads[i]!.hostTid, cores[i]!);
  }
  await tracer.setThreadsCpu({
    tids: threads.map((t) => t.hostTid),
    regs: regsBuf,
    masks: cores.map(blockedMask),
    ...(xstate ? { xstate: xstate.buffers, xstateOf: xstate.indexOf } : {}),
  });
}

export const regs: ResourceKind<RestoreCtx> = {
  name: 'regs',
  stage: 'finish',
  images: ['core-*'],
  after: ['creds', 'signals', 'seccomp'],
  appliesTo: (task) => !task.zombie,
  describe: () => ['unmap the scratch area; registers, xstate and blocked mask of every thread'],
  async restore(ctx) {
    const hostPid = hostPidOf(ctx);
    const scratch = scratchOf(ctx);
    const start = ctx.now();
    const threads = restoredThreads(ctx.runtime, hostPid);
    // The tracer gets the template read, the other threads' state and the munmap at once: two
    // round trips for the task in all, not one per step (a 1-thread task made five).
    const template = ctx.tracer.getRegset(hostPid, NT_X86_XSTATE);
    const coreOf = (tid: number) => (ctx.images.cores.get(tid) ?? {}) as Record<string, unknown>;
    const others = setThreadsCpu(ctx.tracer, threads.slice(1), coreOf, { template, inherited: inheritedFpregs(ctx.runtime) });
    const unmapped = ctx.tracer.runSyscall(hostPid, { scratch, nr: SYS.munmap, args: [scratch, STUB_SCRATCH_SIZE], stopAtExit: true });
    const [result] = await Promise.all([unmapped, others, template]);
    if (signed(result) !== 0n) {
      const errno = Number(-signed(result));
      throw new NativeError({ code: errnoName(errno), errno, syscall: 'munmap', pid: ctx.pid, detail: 'unmapping the scratch area' });
    }
    ctx.runtime.scratch = undefined;
    await setThreadsCpu(ctx.tracer, [{ tid: ctx.pid, hostTid: hostPid }], () => ctx.images.core as Record<string, unknown>, { template });
    ctx.record({ name: 'registers', start, end: ctx.now(), syscalls: 1 });
  },
};

export const detach: ResourceKind<RestoreCtx> = {
  name: 'detach',
  stage: 'resume',
  images: [],
  after: ['action-post-restore'],
  appliesTo: (task) => !task.zombie,
  describe: () => ['detach every thread: the task runs (or, stopped when dumped, stops again)'],
  async restore(ctx) {
    const hostPid = hostPidOf(ctx);
    const threads = restoredThreads(ctx.runtime, hostPid);
    const stopSignal = ctx.checkpoint.stopSignal(ctx.pid);
    if (stopSignal) {
      const masks = threads.map((t) => ({ hostTid: t.hostTid, mask: blockedMask((ctx.images.cores.get(t.tid) ?? {}) as Record<string, unknown>) }));
      await enterGroupStop(ctx.tracer, hostPid, masks, stopSignal);
    }
    await ctx.tracer.detachAll([...threads.slice(1), threads[0]!].map((t) => t.hostTid));
    ctx.runtime.seized = false;
  },
};

const EVERY_SIGNAL = (1n << 64n) - 1n;
const SIGSTOP = 19;

/**
 * Puts a task that was stopped when dumped into the group stop of its stop signal before it runs
 * a thing, its threads still traced (`threads[0]` the main one): each blocks every other signal,
 * so the stop is the one signal taken (a signal restored as queued stays queued until the task
 * is continued, as it was). The main thread is resumed with the signal (ptrace sends it to that
 * thread) and takes it; the group stop it starts holds every other thread as it is resumed, so
 * none runs restored code. Each gets its own mask back in the group stop, which the detach
 * keeps. A terminal stop signal stops no orphaned process group (the kernel drops it): there it
 * is SIGSTOP.
 */
async function enterGroupStop(tracer: Tracer, hostPid: number, threads: ReadonlyArray<{ hostTid: number; mask: bigint }>, stopSignal: number): Promise<void> {
  const signal = stopSignal !== SIGSTOP && processGroupOrphaned(hostPid) ? SIGSTOP : stopSignal;
  const onlyStop = EVERY_SIGNAL & ~(1n << BigInt(signal - 1));
  for (const t of threads) await tracer.setSigmask(t.hostTid, onlyStop);
  for (const [i, t] of threads.entries()) {
    await tracer.cont(t.hostTid, i === 0 ? signal : 0);
    let stop = await tracer.waitStop(t.hostTid, 5000);
    // Sent at a syscall stop, the signal is queued and then taken: reported as it is delivered.
    if (i === 0 && stop.kind === 'signal' && stop.signal === signal) {
      await tracer.cont(t.hostTid, signal);
      stop = await tracer.waitStop(t.hostTid, 5000);
    }
    if (stop.kind !== 'group-stop') {
      throw new NativeError({ code: 'EPROTO', errno: 71, syscall: 'ptrace(PTRACE_CONT)', pid: t.hostTid, detail: `entering the group stop of signal ${signal}: stopped by ${stop.kind} ${stop.signal ?? ''} instead` });
    }
  }
  for (const t of threads) await tracer.setSigmask(t.hostTid, t.mask);
}

/**
 * Whether a process's group is orphaned: no member has a parent in another group of the same
 * session (what the kernel checks before a terminal stop signal stops it).
 */
function processGroupOrphaned(hostPid: number): boolean {
  const own = procStat(hostPid);
  if (!own) return false;
  for (const name of readdirSync('/proc')) {
    const member = /^\d+$/.test(name) ? procStat(Number(name)) : undefined;
    if (member?.pgrp !== own.pgrp) continue;
    const parent = procStat(member.ppid);
    if (parent && parent.pgrp !== own.pgrp && parent.session === own.session) return false;
  }
  return true;
}

function procStat(pid: number): { ppid: number; pgrp: number; session: number } | undefined {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ');
    return { ppid: Number(fields[1]), pgrp: Number(fields[2]), session: Number(fields[3]) };
  } catch {
    return undefined;
  }
}
