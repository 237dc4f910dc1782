// FIFOs (named pipes) by path: each FIFO is opened once, by the first task (tree order) holding any
// description of it, and every other holder gets that very description through shared-fds.
// The creator first opens the path O_RDWR|O_NONBLOCK on a spare fd (the keeper): with a reader and a
// writer present, opening either end with its real flags never blocks, and the pipe buffer lives
// while the size (F_SETPIPE_SZ) and queued bytes (fifo-data.img) go back in. The keeper is closed
// once every description holds the FIFO. files.img has a FIFO entry per description whose regf_id
// is a REG entry with the path and the description's flags (CRIU's layout).
import { statSync } from 'node:fs';
import { native } from '../actors/native.js';
import { StageError } from '../errors.js';
import type { Entry } from '../images/index.js';
import { perKey } from '../memo.js';
import { helperOf, type RestoreCtx, type RestoreSession, type TaskImageSet } from '../restore/context.js';
import { groupByPipe, heldPipes, pipeData, type PipeGroup } from './pipe.js';
import { copyFromTask, dupOps, fillPipe, holdsFdOfType, offer, O_CLOEXEC, receive, receiverCount, sharedRows, spareFds } from './shared-fds.js';
import type { PlanSource, ResourceKind, TaskPlan } from './types.js';

export const FD_TYPE_FIFO = 3;
const O_RDWR = 2;
const O_NONBLOCK = 0o4000;
const F_SETPIPE_SZ = 1031;
const DEFAULT_PIPE_SIZE = 65536;
const S_IFMT = 0o170000;
const S_IFIFO = 0o010000;

interface Described {
  readonly checkpoint: { file(id: number, from: string): Entry };
}

/** A FIFO description as the pipe grouping wants it: pipe_id, and the flags and path of its REG entry. */
function fifoView(source: Described): (file: Entry) => Entry {
  return (file) => {
    const fifo = file['fifo'] as Entry;
    const reg = source.checkpoint.file(Number(fifo['regf_id']), `fifo ${String(fifo['id'])}`)['reg'] as Entry;
    return { pipe_id: fifo['pipe_id'], flags: reg['flags'] ?? 0, name: reg['name'] };
  };
}

/** Path of each FIFO (by pipe id) and the groups, computed once per restore. */
interface FifoPlan {
  groups: Map<number, PipeGroup>;
  paths: Map<number, string>;
}

function planOf(tasks: readonly TaskPlan[], tables: ReadonlyMap<number, TaskImageSet>, source: Described): FifoPlan {
  const paths = new Map<number, string>();
  const view = fifoView(source);
  const groups = groupByPipe(tasks, tables, source, FD_TYPE_FIFO, (file) => {
    const v = view(file);
    paths.set(Number(v['pipe_id']), String(v['name']));
    return v;
  });
  return { groups, paths };
}

const sessionPlan = perKey((session: RestoreSession, ctx: RestoreCtx) => planOf(ctx.plan.tasks, session.images, ctx));

/** The FIFO must be at its path again: crr reopens it, it never makes one. */
function checkPath(ctx: RestoreCtx, path: string, pipeId: number): void {
  let mode = 0;
  try {
    mode = statSync(path).mode;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new StageError({ stage: 'shared-fds', pid: ctx.pid, resource: 'fifo', code, message: `FIFO ${path} (pipe id ${pipeId}) is missing (${code})` });
  }
  if ((mode & S_IFMT) !== S_IFIFO) {
    throw new StageError({ stage: 'shared-fds', pid: ctx.pid, resource: 'fifo', code: 'EFILEMISMATCH', message: `${path} (pipe id ${pipeId}) is not a FIFO now (mode 0${mode.toString(8)})` });
  }
}

/** Opens one FIFO in this task, fills it and offers each description to its holders. */
async function createFifo(ctx: RestoreCtx, group: PipeGroup, path: string, queued: { size?: number; data: Uint8Array } | undefined): Promise<void> {
  checkPath(ctx, path, group.pipeId);
  const helper = helperOf(ctx);
  const [keeper, ...spares] = spareFds(ctx, 1 + group.descriptions.length);
  const ops: Array<{ op: string } & Record<string, unknown>> = [{ op: 'open', path, flags: O_RDWR | O_NONBLOCK | O_CLOEXEC, fd: keeper }];
  if (queued?.size && queued.size !== DEFAULT_PIPE_SIZE) ops.push({ op: 'fcntl', fd: keeper, cmd: F_SETPIPE_SZ, arg: queued.size });
  group.descriptions.forEach((d, i) => ops.push({ op: 'open', path, flags: (d.flags & ~O_CLOEXEC) | O_CLOEXEC, fd: spares[i] }));
  try {
    await helper.batch(ops);
  } catch (err) {
    if (err instanceof Error) err.message += ` [fifo ${path}, pipe id ${group.pipeId}]`;
    throw err;
  }
  const copies = new Map<number, number>();
  try {
    group.descriptions.forEach((d, i) => copies.set(d.id, copyFromTask(ctx, spares[i]!)));
    if (queued?.data.length) {
      const keeperCopy = copyFromTask(ctx, keeper!);
      try {
        fillPipe(keeperCopy, queued.data);
      } finally {
        native.close(keeperCopy);
      }
    }
    const finish = group.descriptions.flatMap((d, i) => dupOps(spares[i]!, d.holders, ctx.pid));
    await helper.batch([...finish, ...[keeper!, ...spares.slice(0, group.descriptions.length)].map((fd) => ({ op: 'close', fd }))]);
  } catch (err) {
    for (const copy of copies.values()) native.close(copy);
    throw err;
  }
  for (const d of group.descriptions) offer(ctx, 'fifo', String(d.id), copies.get(d.id)!, receiverCount(d.holders, ctx.pid));
}

export const fifo: ResourceKind<RestoreCtx> = {
  name: 'fifo',
  stage: 'shared-fds',
  images: ['files', 'fdinfo-*', 'fifo-data'],
  appliesTo: holdsFdOfType(FD_TYPE_FIFO),
  describe(task) {
    return task.zombie ? [] : ['open FIFOs by path (keeper O_RDWR first), queued bytes, share each description'];
  },
  async restore(ctx) {
    if (!ctx.images.fds.some((fd) => fd.type === FD_TYPE_FIFO)) return;
    const plan = sessionPlan(ctx.session, ctx);
    const { held, wants } = heldPipes(ctx, plan.groups, FD_TYPE_FIFO, 'fifo');
    const data = held.some((g) => g.creator === ctx.pid) ? pipeData(ctx.checkpoint, 'fifo-data.img') : new Map();
    for (const group of held) if (group.creator === ctx.pid) await createFifo(ctx, group, plan.paths.get(group.pipeId)!, data.get(group.pipeId));
    await receive(ctx, wants);
  },
  sharedObjects(tasks, source?: PlanSource) {
    if (!source) return [];
    const { groups } = planOf(tasks, source.images as ReadonlyMap<number, TaskImageSet>, source as unknown as Described);
    return sharedRows('fifo', [...groups.values()].map((g) => [String(g.pipeId), [...g.descriptions.flatMap((d) => d.holders)].sort((a, b) => (a.pid === g.creator ? -1 : b.pid === g.creator ? 1 : 0))]));
  },
};
