// SysV shm segments removed (IPC_RMID) while attached. The restore makes every segment of the
// tree's IPC namespace at its id before the root is forked (src/restore/namespaces.ts), and each
// task attaches its segments at their addresses in the memory stage (remote-vma.ts, shmat). The
// kernel has no way to make a segment already marked removed, so such a segment is marked again
// here, on the root, once the resume stage starts: every task has attached it by then, and it
// goes with its last attachment as before.
import { native } from '../actors/native.js';
import { hostPidOf, type RestoreCtx } from '../restore/context.js';
import type { Checkpoint } from '../images/index.js';
import type { ResourceKind } from './types.js';

/** ipc_perm.mode's bit for a segment marked removed. */
const SHM_DEST = 0o1000;

function removedSegments(ctx: Pick<RestoreCtx, 'session'>): number[] {
  return (ctx.session.namespaces?.sysv?.shm ?? []).filter((s) => s.mode & SHM_DEST).map((s) => s.id);
}

export const sysvShmRemoved: ResourceKind<RestoreCtx> = {
  name: 'sysv-shm-removed',
  stage: 'resume',
  images: ['ipcns-shm-*'],
  appliesTo: (task, source) => task.ppid === 0 && !task.zombie && (!source || [...(source.checkpoint as Checkpoint).imageFiles.keys()].some((name) => name.startsWith('ipcns-shm-'))),
  describe: () => ['SysV segments removed while attached: marked removed again once every task attached them'],
  async restore(ctx) {
    const ids = removedSegments(ctx);
    if (ids.length) native.sysvShmRemove(`/proc/${hostPidOf(ctx)}/ns/ipc`, ids);
  },
};
