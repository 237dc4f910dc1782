// Pipes: each pipe is created once, by the first task (tree order) that holds any end of it; its
// descriptions (files.img PIPE entries: usually one read end and one write end, more when an end
// was reopened through /proc) get their flags (O_NONBLOCK, O_DIRECT), the pipe its size
// (F_SETPIPE_SZ) and its queued bytes (pipes-data.img), and then every fd of every task that held
// a description gets that very description through the shared-fds mechanism (shared-fds.ts).
import { native } from '../actors/native.js';
import type { Entry } from '../images/index.js';
import { perKey } from '../memo.js';
import { helperOf, type RestoreCtx, type RestoreSession, type TaskImageSet } from '../restore/context.js';
import {
  copyFromTask,
  dupOps,
  FD_CLOEXEC,
  fillPipe,
  holdersByFile,
  holdsFdOfType,
  offer,
  O_CLOEXEC,
  receive,
  receiverCount,
  sharedRows,
  spareFds,
  type FdHolder,
  type FdTables,
  type Want,
} from './shared-fds.js';
import type { PlanSource, ResourceKind, TaskPlan } from './types.js';

export const FD_TYPE_PIPE = 2;
const O_ACCMODE = 3;
const O_RDONLY = 0;
const O_WRONLY = 1;
const F_SETFL = 4;
const F_SETPIPE_SZ = 1031;
const DEFAULT_PIPE_SIZE = 65536;

interface Described {
  readonly checkpoint: { file(id: number, from: string): Entry };
}

/** One pipe of the tree: its descriptions (files.img ids) with their flags and holders. */
export interface PipeGroup {
  readonly pipeId: number;
  readonly creator: number;
  readonly descriptions: ReadonlyArray<{ id: number; flags: number; holders: readonly FdHolder[] }>;
}

/** Every pipe held by a non-zombie task, by pipe id, in tree order (works for FIFOs too). */
export function groupByPipe(
  tasks: readonly TaskPlan[],
  tables: FdTables,
  source: Described,
  fdType: number,
  entryOf: (file: Entry) => Entry,
): Map<number, PipeGroup> {
  const out = new Map<number, { pipeId: number; creator: number; descriptions: Array<{ id: number; flags: number; holders: FdHolder[] }> }>();
  for (const [id, holders] of holdersByFile(tasks, tables, new Set([fdType]))) {
    const file = source.checkpoint.file(id, `task ${holders[0]!.pid} fd ${holders[0]!.fd}`);
    const entry = entryOf(file);
    const pipeId = Number(entry['pipe_id']);
    const group = out.get(pipeId) ?? { pipeId, creator: holders[0]!.pid, descriptions: [] };
    group.descriptions.push({ id, flags: Number(entry['flags'] ?? 0), holders });
    out.set(pipeId, group);
  }
  // The creator is the first holder in tree order among all descriptions of the pipe.
  const order = new Map(tasks.map((task, index) => [task.pid, index]));
  for (const group of out.values()) {
    const first = group.descriptions.flatMap((d) => d.holders).sort((a, b) => order.get(a.pid)! - order.get(b.pid)!)[0]!;
    group.creator = first.pid;
  }
  return out;
}

/** Queued bytes and buffer size per pipe id, from pipes-data.img or fifo-data.img. */
export function pipeData(checkpoint: RestoreCtx['checkpoint'], image: string): Map<number, { size?: number; data: Uint8Array }> {
  const out = new Map<number, { size?: number; data: Uint8Array }>();
  if (!checkpoint.has(image)) return out;
  for (const lazy of checkpoint.image(image).entries()) {
    const e = lazy.decode();
    const size = e['size'] === undefined ? undefined : Number(e['size']);
    out.set(Number(e['pipe_id']), { size, data: lazy.payload ?? new Uint8Array() });
  }
  return out;
}

/** Every pipe of the tree, grouped once per restore (not once per task holding one). */
const groupsOf = perKey((session: RestoreSession, ctx: RestoreCtx) => groupByPipe(ctx.plan.tasks, session.images, ctx, FD_TYPE_PIPE, (file) => file['pipe'] as Entry));

/** Creates one pipe in this task, fills it and offers each description to its holders. */
async function createPipe(ctx: RestoreCtx, group: PipeGroup, queued: { size?: number; data: Uint8Array } | undefined): Promise<void> {
  const helper = helperOf(ctx);
  const [readSpare, writeSpare, ...extra] = spareFds(ctx, 2 + group.descriptions.length);
  const ops: Array<{ op: string } & Record<string, unknown>> = [{ op: 'pipe', fds: [readSpare, writeSpare], flags: O_CLOEXEC }];
  if (queued?.size && queued.size !== DEFAULT_PIPE_SIZE) ops.push({ op: 'fcntl', fd: readSpare, cmd: F_SETPIPE_SZ, arg: queued.size });
  // The first read-only and first write-only descriptions are the pipe's own ends; any other one
  // was reopened through /proc and is reopened the same way.
  const at = new Map<number, number>();
  let readTaken = false;
  let writeTaken = false;
  for (const [index, d] of group.descriptions.entries()) {
    const mode = d.flags & O_ACCMODE;
    if (mode === O_RDONLY && !readTaken) {
      readTaken = true;
      at.set(d.id, readSpare!);
    } else if (mode === O_WRONLY && !writeTaken) {
      writeTaken = true;
      at.set(d.id, writeSpare!);
    } else {
      at.set(d.id, extra[index]!);
      ops.push({ op: 'open', path: `/proc/self/fd/${mode === O_WRONLY ? writeSpare : readSpare}`, flags: mode | O_CLOEXEC, fd: extra[index] });
    }
    ops.push({ op: 'fcntl', fd: at.get(d.id)!, cmd: F_SETFL, arg: d.flags & ~O_ACCMODE & ~O_CLOEXEC });
  }
  try {
    await helper.batch(ops);
  } catch (err) {
    if (err instanceof Error) err.message += ` [pipe ${group.pipeId}${queued?.size ? `, size ${queued.size}` : ''}]`;
    throw err;
  }
  const copies = new Map<number, number>();
  try {
    for (const d of group.descriptions) copies.set(d.id, copyFromTask(ctx, at.get(d.id)!));
    if (queued?.data.length) {
      const any = copies.values().next().value ?? copyFromTask(ctx, readSpare!);
      try {
        fillPipe(any, queued.data);
      } finally {
        if (!copies.size) native.close(any);
      }
    }
    const finish = group.descriptions.flatMap((d) => dupOps(at.get(d.id)!, d.holders, ctx.pid));
    const spares = new Set([readSpare!, writeSpare!, ...at.values()]);
    await helper.batch([...finish, ...[...spares].map((fd) => ({ op: 'close', fd }))]);
  } catch (err) {
    for (const copy of copies.values()) native.close(copy);
    throw err;
  }
  for (const d of group.descriptions) offer(ctx, 'pipe', String(d.id), copies.get(d.id)!, receiverCount(d.holders, ctx.pid));
}

const groupOfDescription = perKey((groups: ReadonlyMap<number, PipeGroup>) => {
  const byDescription = new Map<number, PipeGroup>();
  for (const group of groups.values()) for (const d of group.descriptions) byDescription.set(d.id, group);
  return byDescription;
});

/**
 * The pipes (or FIFOs) this task holds a description of, and the fds it receives from those
 * other tasks create. From the task's own fds: walking every group and every holder in each
 * task was quadratic in a tree whose tasks share a pipe.
 */
export function heldPipes(ctx: RestoreCtx, groups: ReadonlyMap<number, PipeGroup>, fdType: number, kind: string, fromCrr: (group: PipeGroup) => boolean = () => false): { held: PipeGroup[]; wants: Want[] } {
  const byDescription = groupOfDescription(groups);
  const held = new Set<PipeGroup>();
  const wants: Want[] = [];
  for (const fd of ctx.images.fds) {
    if (fd.type !== fdType) continue;
    const group = byDescription.get(fd.id);
    if (!group) continue;
    held.add(group);
    if (group.creator !== ctx.pid || fromCrr(group)) wants.push({ kind, id: String(fd.id), fd: fd.fd, cloexec: Boolean(fd.flags & FD_CLOEXEC) });
  }
  return { held: [...held], wants };
}

/** crr's fd given for a pipe (criu's --inherit-fd fd[N]:pipe:[ID]), if any. */
function inheritedFd(ctx: RestoreCtx, group: PipeGroup): number | undefined {
  return ctx.session.options.inheritedFds?.[`pipe:[${group.pipeId}]`];
}

/**
 * A pipe the caller gives (a container's stdio, which its runtime made anew): every holder,
 * the creator too, receives a copy of crr's fd instead of a pipe made here. The pipe is the
 * caller's, so bytes queued in the old one are not put into it; a tree that held more than one
 * of its descriptions (both ends) cannot be given them by one fd.
 */
function offerInherited(ctx: RestoreCtx, group: PipeGroup, fd: number): void {
  if (group.descriptions.length !== 1) {
    throw new Error(`inherited fd ${fd} for pipe:[${group.pipeId}]: the tree holds ${group.descriptions.length} descriptions of that pipe (both ends), one fd can stand for only one`);
  }
  const [d] = group.descriptions;
  const self = native.pidfdOpen(process.pid);
  try {
    offer(ctx, 'pipe', String(d!.id), native.pidfdGetfd(self, fd), receiverCount(d!.holders, -1));
  } finally {
    native.close(self);
  }
}

export const pipe: ResourceKind<RestoreCtx> = {
  name: 'pipe',
  stage: 'shared-fds',
  images: ['files', 'fdinfo-*', 'pipes-data'],
  appliesTo: holdsFdOfType(FD_TYPE_PIPE),
  async restore(ctx) {
    if (!ctx.images.fds.some((fd) => fd.type === FD_TYPE_PIPE)) return;
    const { held, wants } = heldPipes(ctx, groupsOf(ctx.session, ctx), FD_TYPE_PIPE, 'pipe', (group) => inheritedFd(ctx, group) !== undefined);
    const data = held.some((g) => g.creator === ctx.pid) ? pipeData(ctx.checkpoint, 'pipes-data.img') : new Map();
    for (const group of held) {
      if (group.creator !== ctx.pid) continue;
      const given = inheritedFd(ctx, group);
      if (given !== undefined) offerInherited(ctx, group, given);
      else await createPipe(ctx, group, data.get(group.pipeId));
    }
    await receive(ctx, wants);
  },
  sharedObjects(tasks, source?: PlanSource) {
    if (!source) return [];
    const groups = groupByPipe(tasks, source.images as ReadonlyMap<number, TaskImageSet>, source as unknown as Described, FD_TYPE_PIPE, (file) => file['pipe'] as Entry);
    return sharedRows('pipe', [...groups.values()].map((g) => [String(g.pipeId), [...g.descriptions.flatMap((d) => d.holders)].sort((a, b) => (a.pid === g.creator ? -1 : b.pid === g.creator ? 1 : 0))]));
  },
};
