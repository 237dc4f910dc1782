// The threads of a task beyond its main one, with their dumped TIDs: each is created by a clone3
// batch in the main thread (set_tid, and clear_child_tid through CLONE_CHILD_CLEARTID) and runs
// its own short list as it starts (threads start with no rseq: kernel notes trap 3; nor robust
// list, nor sigaltstack), then is seized; each thread's list also sets its scheduling policy and
// nice where they differ from what it inherited. The main thread's own state was set at the end
// of the memory stage (src/resources/main-thread.ts). Registers, FPU state and masks come last,
// in the regs kind (but for the FPU state the threads inherit from the main thread at clone3:
// shareFpuState).
import { hostPidOf, type RestoreCtx } from '../restore/context.js';
import { threadCoreDecoded, threadCoresReady } from '../restore/load.js';
import type { ThreadBatch } from '../restore/remote-thread-lists.js';
import { addThreadState, clearTidOf, createThreads, schedulingOf, setRestoredThreads, shareFpuState, threadPtraceOptions, type RestoredThread } from '../restore/remote-threads.js';
import { scratchOf } from './memory.js';
import { needsSeccompSuspend } from './seccomp.js';
import type { ResourceKind } from './types.js';

/**
 * From this many other threads on, they are made with the first one's FPU state (shareFpuState):
 * it costs the main thread two tracer round trips and saves a PTRACE_SETREGSET per thread alike.
 */
const SHARE_FPU_FROM = 8;

export const threads: ResourceKind<RestoreCtx> = {
  name: 'threads',
  stage: 'threads',
  images: ['core-*'],
  // A task of one thread has nothing here: its state was set with the memory stage's batch.
  appliesTo: (task) => !task.zombie && task.threads.length > 1,
  describe: (task) => [`clone3 threads ${task.threads.slice(1).join(', ')} with their TIDs`, 'rseq, clear_child_tid, robust list, sigaltstack per thread'],
  async restore(ctx) {
    const hostPid = hostPidOf(ctx);
    const scratch = scratchOf(ctx);
    const start = ctx.now();
    const mainCore = ctx.images.core as Record<string, unknown>;
    // New threads inherit the main thread's name, set by now (the main-thread or the mm kind's commands).
    const commOf = (part: string) => (mainCore[part] as Record<string, unknown> | undefined)?.['comm'] as string | undefined;
    const mainComm = commOf('thread_core') || commOf('tc');
    // What every new thread inherits at clone3: the main thread's scheduling, as just set.
    const mainScheduling = schedulingOf(mainCore);
    // A task with many threads may still be decoding their cores (load.ts): each round of
    // createThreads waits only for its own threads' cores, read when it builds their lists.
    const others = ctx.task.threads.filter((tid) => tid !== ctx.pid);
    const coreOf = (tid: number) => {
      const core = ctx.images.cores.get(tid) as Record<string, unknown> | undefined;
      if (!core) throw new Error(`thread ${tid} of task ${ctx.pid} has no core image`);
      return core;
    };
    const wanted = others.map((tid) => ({
      tid,
      get clearTid() {
        return clearTidOf(coreOf(tid));
      },
      build: (list: ThreadBatch) =>
        addThreadState(list, coreOf(tid), tid, { clearTidSet: true, inheritedScheduling: mainScheduling, ...(mainComm ? { inheritedComm: mainComm } : {}) }),
    }));
    ctx.signal.throwIfAborted();
    // Recorded as they come: rollback and later kinds must know every thread that exists.
    const record = (created: RestoredThread[]) => setRestoredThreads(ctx.runtime, [{ tid: ctx.pid, hostTid: hostPid }, ...created]);
    // Seccomp filters are installed later (the seccomp kind): until then no thread needs
    // PTRACE_O_SUSPEND_SECCOMP. What the cores decoded so far say is the guess; should a later
    // core say otherwise, every thread gets the option below, before any filter exists.
    const suspendSeccomp = needsSeccompSuspend(ctx.images);
    const imageReady = (index: number) => threadCoreDecoded(ctx.images, others[index]!);
    if (others.length >= SHARE_FPU_FROM) {
      await imageReady(0);
      const fpregs = (coreOf(others[0]!)['thread_info'] as Record<string, unknown> | undefined)?.['fpregs'] as Record<string, unknown> | undefined;
      if (fpregs) await shareFpuState(ctx.tracer, hostPid, ctx.runtime, fpregs);
    }
    const created = await createThreads(ctx.tracer, hostPid, scratch, ctx.pid, wanted, { suspendSeccomp, imageReady }, record);
    const restored: RestoredThread[] = [{ tid: ctx.pid, hostTid: hostPid }, ...created];
    setRestoredThreads(ctx.runtime, restored);
    // The kinds after this one (creds, signals, seccomp, regs) use every thread's core.
    await threadCoresReady(ctx.images);
    if (!suspendSeccomp && needsSeccompSuspend(ctx.images)) {
      for (const thread of restored) await ctx.tracer.setOptions(thread.hostTid, threadPtraceOptions(true));
    }
    ctx.record({ name: 'threads', start, end: ctx.now(), syscalls: restored.length });
  },
};
