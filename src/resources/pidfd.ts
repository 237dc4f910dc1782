// pidfds: an fd referring to a process of the tree (pidfd_entry.nspid, its pid as the holder
// sees it). Made with the shared fds, when every task exists (the fork stage is over): crr opens a pidfd of the target's host
// PID and the first holder receives it; O_NONBLOCK (PIDFD_NONBLOCK) goes back on with fcntl;
// other holders of the description take a copy (restoreAnonFds). A target outside the tree is
// refused at plan time.
import { native } from '../actors/native.js';
import { StageError } from '../errors.js';
import type { Entry } from '../images/index.js';
import { helperOf, type RestoreCtx, type RestoreSession } from '../restore/context.js';
import { fdsOfType, O_NONBLOCK, restoreAnonFds } from './eventfd.js';
import { holdsFdOfType, offer, receive } from './shared-fds.js';
import type { ResourceKind } from './types.js';

export const FD_TYPE_PIDFD = 20;
const F_SETFL = 4;

const targetOf = (file: Entry) => Number((file['pidfd'] as Entry | undefined)?.['nspid'] ?? 0);

/** Plan-time check: every pidfd refers to a task of the tree. */
export function checkPidfds(session: RestoreSession): void {
  for (const [pid, set] of session.images) {
    for (const fd of set.fds.filter((f) => f.type === FD_TYPE_PIDFD)) {
      const target = targetOf(session.checkpoint.file(fd.id, `task ${pid} fd ${fd.fd}`));
      if (!session.images.has(target) || session.checkpoint.isZombie(target)) {
        throw new StageError({ stage: 'plan', pid, resource: 'pidfd', message: `fd ${fd.fd} is a pidfd of pid ${target}, which is not a live task of the tree; crr restores pidfds of its own tasks only` });
      }
    }
  }
}

export const pidfd: ResourceKind<RestoreCtx> = {
  name: 'pidfd',
  stage: 'shared-fds',
  images: ['files', 'fdinfo-*'],
  appliesTo: holdsFdOfType(FD_TYPE_PIDFD),
  describe: () => ['pidfds of tasks of the tree, opened by crr and received at their fd numbers'],
  async restore(ctx) {
    if (!fdsOfType(ctx, FD_TYPE_PIDFD).length) return;
    await restoreAnonFds(ctx, FD_TYPE_PIDFD, async (first) => {
      const target = ctx.session.runtimes.get(targetOf(first.file))?.hostPid;
      if (target === undefined) throw new StageError({ stage: ctx.stage, pid: ctx.pid, resource: ctx.resource, message: `fd ${first.fd}: pid ${targetOf(first.file)} was not restored` });
      offer(ctx, 'pidfd', String(first.id), native.pidfdOpen(target), 1);
      await receive(ctx, [{ kind: 'pidfd', id: String(first.id), fd: first.fd, cloexec: first.cloexec }]);
      const flags = Number((first.file['pidfd'] as Entry)['flags'] ?? 0);
      if (flags & O_NONBLOCK) await helperOf(ctx).request('fcntl', { fd: first.fd, cmd: F_SETFL, arg: O_NONBLOCK });
    });
  },
};
