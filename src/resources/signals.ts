// Pending signals: every siginfo the image queued for the process (signals_s) or for one thread
// (signals_p) is queued again from inside the task with rt_sigqueueinfo/rt_tgsigqueueinfo (from
// the task itself, so any si_code is allowed). All signals but SIGTRAP are blocked while the
// restorer runs, so they stay pending until the real mask is set and the task is detached.
import { hostPidOf, type RestoreCtx } from '../restore/context.js';
import { RemoteBatch } from '../restore/remote.js';
import { SYS } from '../restore/remote-sys.js';
import { restoredThreads } from '../restore/remote-threads.js';
import { scratchOf } from './memory.js';
import type { ResourceKind } from './types.js';

const SIGINFO_SIZE = 128;

/** The siginfo buffers of a signal_queue_entry. */
export function queuedSiginfos(queue: unknown): Buffer[] {
  const signals = ((queue as Record<string, unknown> | undefined)?.['signals'] as Array<Record<string, unknown>> | undefined) ?? [];
  return signals.map((s) => Buffer.from(s['siginfo'] as Uint8Array)).filter((b) => b.length >= 12);
}

function padded(info: Buffer): Buffer {
  const out = Buffer.alloc(SIGINFO_SIZE);
  info.copy(out, 0, 0, Math.min(info.length, SIGINFO_SIZE));
  return out;
}

export const signals: ResourceKind<RestoreCtx> = {
  name: 'signals',
  stage: 'finish',
  images: ['core-*'],
  after: ['creds'],
  appliesTo: (task) => !task.zombie,
  describe: () => ['queue the pending signals of the process and of each thread'],
  async restore(ctx) {
    const hostPid = hostPidOf(ctx);
    const batch = new RemoteBatch(scratchOf(ctx));
    const tc = ctx.images.core['tc'] as Record<string, unknown> | undefined;
    for (const info of queuedSiginfos(tc?.['signals_s'])) {
      batch.reserve(SIGINFO_SIZE, 1);
      const sig = info.readInt32LE(0);
      batch.call(SYS.rt_sigqueueinfo, [ctx.pid, sig, batch.put(padded(info))], { what: `queue signal ${sig} for the process` });
    }
    for (const thread of restoredThreads(ctx.runtime, hostPid)) {
      const core = ctx.images.cores.get(thread.tid) as Record<string, unknown> | undefined;
      const threadCore = core?.['thread_core'] as Record<string, unknown> | undefined;
      for (const info of queuedSiginfos(threadCore?.['signals_p'])) {
        batch.reserve(SIGINFO_SIZE, 1);
        const sig = info.readInt32LE(0);
        batch.call(SYS.rt_tgsigqueueinfo, [ctx.pid, thread.tid, sig, batch.put(padded(info))], { what: `queue signal ${sig} for thread ${thread.tid}` });
      }
    }
    if (batch.size === 0) return;
    const start = ctx.now();
    await batch.run(ctx.tracer, hostPid, { pid: ctx.pid });
    ctx.record({ name: 'pending signals', start, end: ctx.now(), syscalls: batch.size });
  },
};
