// Threads with their dumped TIDs, and the per-thread kernel state of every thread: the main
// thread sets its rseq, clear_child_tid, robust list and sigaltstack in one batch; each other
// thread is created by an injected clone3 (set_tid) in the main thread, stops before running
// anything, and runs the same batch for itself (threads start with no rseq: kernel notes trap 3).
// Registers, FPU state and masks come last, in the regs kind. All batches of one process use the
// one scratch area, so they run one after another.
import { hostPidOf, type RestoreCtx } from '../restore/context.js';
import { RemoteBatch } from '../restore/remote.js';
import { addThreadState, createThread, setRestoredThreads, type RestoredThread } from '../restore/remote-threads.js';
import { scratchOf } from './memory.js';
import type { ResourceKind } from './types.js';

export const threads: ResourceKind<RestoreCtx> = {
  name: 'threads',
  stage: 'threads',
  images: ['core-*'],
  appliesTo: (task) => !task.zombie,
  describe: (task) => [
    task.threads.length > 1 ? `clone3 threads ${task.threads.slice(1).join(', ')} with their TIDs` : 'one thread',
    'rseq, clear_child_tid, robust list, sigaltstack per thread',
  ],
  async restore(ctx) {
    const hostPid = hostPidOf(ctx);
    const scratch = scratchOf(ctx);
    const start = ctx.now();
    const main = new RemoteBatch(scratch);
    addThreadState(main, ctx.images.core as Record<string, unknown>, ctx.pid);
    await main.run(ctx.tracer, hostPid, { pid: ctx.pid });

    const restored: RestoredThread[] = [{ tid: ctx.pid, hostTid: hostPid }];
    for (const tid of ctx.task.threads) {
      if (tid === ctx.pid) continue;
      ctx.signal.throwIfAborted();
      const hostTid = await createThread(ctx.tracer, hostPid, scratch, tid, ctx.pid);
      restored.push({ tid, hostTid });
      // Recorded at once: rollback and later kinds must know every thread that exists.
      setRestoredThreads(ctx.runtime, [...restored]);
      const core = ctx.images.cores.get(tid);
      if (!core) throw new Error(`thread ${tid} of task ${ctx.pid} has no core image`);
      const own = new RemoteBatch(scratch);
      addThreadState(own, core as Record<string, unknown>, tid);
      await own.run(ctx.tracer, hostTid, { pid: ctx.pid });
    }
    setRestoredThreads(ctx.runtime, restored);
    ctx.record({ name: 'threads', start, end: ctx.now(), syscalls: restored.length });
  },
};
