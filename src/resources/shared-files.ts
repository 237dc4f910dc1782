// Open file descriptions of regular files and devices that several fds hold: dup'd fds in one
// task, or fds inherited across fork (one offset: a parent and child writing through it append to
// each other, never overwrite). regfile and chardev open every fd on its own first; then the
// creator's description (the first holder's, tree order) replaces every other holder's, through
// the shared-fds mechanism. Descriptions held by one fd only are left as regfile opened them.
import { perKey } from '../memo.js';
import { helperOf, type RestoreCtx, type RestoreSession, type TaskImageSet } from '../restore/context.js';
import { FD_CLOEXEC, FD_TYPE_REG, copyFromTask, dupOps, holdersByFile, offer, receive, receiverCount, sharedRows, type FdHolder, type FdTables } from './shared-fds.js';
import type { PlanSource, ResourceKind, TaskPlan } from './types.js';

const KIND = 'file';

/** files.img ids of REG descriptions held by more than one fd, with their holders (creator first). */
export function sharedDescriptions(tasks: readonly TaskPlan[], tables: FdTables): Map<number, FdHolder[]> {
  const out = new Map<number, FdHolder[]>();
  for (const [id, holders] of holdersByFile(tasks, tables, new Set([FD_TYPE_REG]))) if (holders.length > 1) out.set(id, holders);
  return out;
}

const sharedOf = perKey((session: RestoreSession, ctx: RestoreCtx) => sharedDescriptions(ctx.plan.tasks, session.images));

/**
 * This task's fds that shared-files puts in place itself (the creator's description received, or
 * dup'd by the creator onto its other fds): regfile and chardev need not open them first.
 */
export function fdsSharedFilesPlaces(ctx: RestoreCtx): Set<number> {
  const out = new Set<number>();
  for (const fd of ctx.images.fds) {
    if (fd.type !== FD_TYPE_REG) continue;
    const holders = sharedOf(ctx.session, ctx).get(fd.id);
    if (!holders) continue;
    const creator = holders[0]!;
    if (creator.pid !== ctx.pid || creator.fd !== fd.fd) out.add(fd.fd);
  }
  return out;
}

export const sharedFiles: ResourceKind<RestoreCtx> = {
  name: 'shared-files',
  stage: 'shared-fds',
  images: ['files', 'fdinfo-*'],
  after: ['regfile', 'chardev'],
  appliesTo: (task) => !task.zombie,
  async restore(ctx) {
    // Walks this task's own fds, never a description's holders: a tree sharing its stdio has
    // thousands of holders per description, and walking them in every receiver was quadratic.
    const shared = sharedOf(ctx.session, ctx);
    const wants = [];
    const dups = [];
    const created = new Set<number>();
    for (const fd of ctx.images.fds) {
      if (fd.type !== FD_TYPE_REG) continue;
      const holders = shared.get(fd.id);
      if (!holders) continue;
      const creator = holders[0]!;
      if (creator.pid !== ctx.pid) {
        wants.push({ kind: KIND, id: String(fd.id), fd: fd.fd, cloexec: Boolean(fd.flags & FD_CLOEXEC) });
      } else if (!created.has(fd.id)) {
        created.add(fd.id);
        dups.push(...dupOps(creator.fd, holders, ctx.pid));
        const receivers = receiverCount(holders, ctx.pid);
        if (receivers) offer(ctx, KIND, String(fd.id), copyFromTask(ctx, creator.fd), receivers);
      }
    }
    if (dups.length) await helperOf(ctx).batch(dups);
    await receive(ctx, wants);
  },
  sharedObjects(tasks, source?: PlanSource) {
    if (!source) return [];
    const shared = sharedDescriptions(tasks, source.images as ReadonlyMap<number, TaskImageSet>);
    return sharedRows(KIND, [...shared].map(([id, holders]) => [String(id), holders]));
  },
};
