// The main thread's own kernel state: its scheduling, rseq, clear_child_tid, robust list, name
// and alternate signal stack. It is the memory stage's last part: its commands go in the same
// remote batch as the address space, mm fields and sigactions (one tracer round trip for all),
// and it comes before the threads stage because the threads made there inherit the main
// thread's name and scheduling at clone3. Other threads set their own in their first list
// (src/resources/threads.ts).
import { hostPidOf, type RestoreCtx } from '../restore/context.js';
import { handedName, runHanded, takeHanded } from '../restore/remote.js';
import { addThreadState, ownScheduling } from '../restore/remote-threads.js';
import { perKey } from '../memo.js';
import { scratchOf } from './memory.js';
import type { ResourceKind } from './types.js';

/** crr's scheduling, read once per restore: the first helper inherited it, and every task from it. */
const ownSchedulingFor = perKey((_session: object) => ownScheduling());

export const mainThread: ResourceKind<RestoreCtx> = {
  name: 'main-thread',
  stage: 'memory',
  images: ['core-*'],
  after: ['sigact'],
  appliesTo: (task) => !task.zombie,
  describe: () => ["the main thread's scheduling, rseq, clear_child_tid, robust list, name and sigaltstack"],
  async restore(ctx) {
    const start = ctx.now();
    // After what memory, mm and sigact handed on: their commands run first, in this round trip.
    const handed = takeHanded(ctx, scratchOf(ctx), 'main thread', start);
    const { batch } = handed;
    addThreadState(batch, ctx.images.core as Record<string, unknown>, ctx.pid, { inheritedScheduling: ownSchedulingFor(ctx.session) });
    if (batch.size === 0) return;
    await runHanded(ctx, handed, hostPidOf(ctx));
    ctx.record({ name: handedName(handed), start: handed.start, end: ctx.now(), syscalls: batch.size });
  },
};
