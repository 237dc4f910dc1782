// eventfd files (counter, EFD_NONBLOCK, EFD_SEMAPHORE), and the way every anon-inode kind of
// issue 6 lands its object at exact fd numbers: the first task (tree order) holding a files.img
// id creates the object natively in its helper at its first fd of that id and dup3s it to its
// other fds; every other holder takes a copy with pidfd_getfd from the creator (an anon inode
// cannot be reopened through /proc the way a pipe can). The creator waits until every holder
// has its copy only implicitly: it never closes the object, it stays at its fd.
import type { Entry, FdinfoEntry } from '../images/index.js';
import { perKey } from '../memo.js';
import { helperOf, type RestoreCtx, type RestoreSession } from '../restore/context.js';
import { FD_CLOEXEC, holdsFdOfType, O_CLOEXEC } from './shared-fds.js';
import type { ResourceKind } from './types.js';

export const FD_TYPE_EVENTFD = 6;
export const O_NONBLOCK = 0o4000;
/** Kept in bit 0 of eventfd_file_entry.flags (the file's O_RDWR never sets it); CRIU drops it. */
export const EFD_SEMAPHORE = 1;

/** One fd of one anon-inode kind in this task, with its files.img entry. */
export interface AnonFd {
  readonly fd: number;
  readonly id: number;
  readonly cloexec: boolean;
  readonly file: Entry;
}

export function fdsOfType(ctx: Pick<RestoreCtx, 'images' | 'checkpoint' | 'pid'>, type: number): AnonFd[] {
  return ctx.images.fds
    .filter((fd: FdinfoEntry) => fd.type === type)
    .map((fd) => ({ fd: fd.fd, id: fd.id, cloexec: Boolean(fd.flags & FD_CLOEXEC), file: ctx.checkpoint.file(fd.id, `task ${ctx.pid} fd ${fd.fd}`) }));
}

const holdersByType = perKey((_: RestoreSession) => new Map<number, Map<number, number[]>>());

/**
 * Holders of each files.img id of `type`, in tree order (the first one creates the object).
 * Once per restore and type: it walks every task's fds, which per task was quadratic in a tree
 * whose tasks each hold such an fd (an epoll per worker).
 */
function holdersOf(ctx: RestoreCtx, type: number): Map<number, number[]> {
  const byType = holdersByType(ctx.session);
  let byId = byType.get(type);
  if (!byId) byType.set(type, (byId = allHoldersOf(ctx, type)));
  return byId;
}

function allHoldersOf(ctx: RestoreCtx, type: number): Map<number, number[]> {
  const byId = new Map<number, number[]>();
  for (const task of ctx.plan.tasks) {
    const set = ctx.session.images.get(task.pid);
    if (!set || task.zombie) continue;
    for (const fd of set.fds) {
      if (fd.type !== type) continue;
      const list = byId.get(fd.id) ?? [];
      if (!list.includes(task.pid)) list.push(task.pid);
      byId.set(fd.id, list);
    }
  }
  return byId;
}

/**
 * Lands every fd of `type` of this task. `create` makes the object at `first.fd` (with
 * `first.cloexec`) in the creator and may finish it (epoll watches, inotify marks).
 */
export async function restoreAnonFds(ctx: RestoreCtx, type: number, create: (first: AnonFd) => Promise<void>): Promise<void> {
  const fds = fdsOfType(ctx, type);
  if (!fds.length) return;
  const helper = helperOf(ctx);
  const holders = holdersOf(ctx, type);
  const kind = `anon-${type}`;
  for (const id of new Set(fds.map((f) => f.id))) {
    const mine = fds.filter((f) => f.id === id);
    const first = mine[0]!;
    const creator = holders.get(id)![0]!;
    if (creator === ctx.pid) {
      await create(first);
      ctx.shared.publish(kind, String(id), { pid: ctx.pid, fd: first.fd });
    } else {
      const made = (await ctx.shared.receive(kind, String(id))) as { pid: number; fd: number };
      await helper.request('getfd', { pid: made.pid, targetFd: made.fd, fd: first.fd, flags: first.cloexec ? O_CLOEXEC : 0 });
    }
    const dups = mine.slice(1).map((f) => ({ op: 'dup2', oldfd: first.fd, newfd: f.fd, flags: f.cloexec ? O_CLOEXEC : 0 }));
    if (dups.length) await helper.batch(dups);
  }
}

export const eventfd: ResourceKind<RestoreCtx> = {
  name: 'eventfd',
  stage: 'shared-fds',
  images: ['files', 'fdinfo-*'],
  appliesTo: holdsFdOfType(FD_TYPE_EVENTFD),
  describe: () => ['eventfds with their counters and flags'],
  async restore(ctx) {
    await restoreAnonFds(ctx, FD_TYPE_EVENTFD, async (first) => {
      const efd = first.file['efd'] as Entry;
      const flags = Number(efd['flags'] ?? 0);
      await helperOf(ctx).request('eventfd', {
        count: efd['counter'] ?? 0,
        flags: (flags & (O_NONBLOCK | EFD_SEMAPHORE)) | (first.cloexec ? O_CLOEXEC : 0),
        fd: first.fd,
      });
    });
  },
};
