// Pipes, the minimal way the helper can do natively: the first task (tree order) that holds a
// pipe creates it at two spare fds; every holder, the creator included, opens the pipe through
// /proc/<creator>/fd/<end> at its exact fd number with its own flags (a pipe reopened that way
// is the same pipe); the creator closes the spare ends once every holder has its fds. Opening an
// end never blocks because the creator holds both ends meanwhile. Queued data (pipes-data.img)
// is not restored yet: a pipe that had some is refused. Full pipe support is issue 6's.
import type { Entry } from '../images/index.js';
import { helperOf, hostPidOf, type RestoreCtx } from '../restore/context.js';
import type { ResourceKind, TaskPlan } from './types.js';

export const FD_TYPE_PIPE = 2;
const FD_CLOEXEC = 1;
const O_ACCMODE = 3;
const O_CLOEXEC = 0o2000000;
const CREATED = 'pipe';
const OPENED = 'pipe-opened';

interface PipeEnd {
  readonly fd: number;
  readonly pipeId: number;
  /** open(2) flags of the description: O_RDONLY or O_WRONLY, O_NONBLOCK. */
  readonly flags: number;
  readonly cloexec: boolean;
}

function pipeEnds(ctx: Pick<RestoreCtx, 'images' | 'checkpoint'>): PipeEnd[] {
  return ctx.images.fds
    .filter((fd) => fd.type === FD_TYPE_PIPE)
    .map((fd) => {
      const pipe = ctx.checkpoint.file(fd.id, `fd ${fd.fd}`)['pipe'] as Entry;
      return { fd: fd.fd, pipeId: Number(pipe['pipe_id']), flags: Number(pipe['flags'] ?? 0), cloexec: Boolean(fd.flags & FD_CLOEXEC) };
    });
}

/** Holders of each pipe by pipe id, in tree order (the first one creates it). */
function holders(ctx: RestoreCtx): Map<number, number[]> {
  const byPipe = new Map<number, number[]>();
  for (const task of ctx.plan.tasks) {
    const set = ctx.session.images.get(task.pid);
    if (!set || task.zombie) continue;
    for (const end of pipeEnds({ images: set, checkpoint: ctx.checkpoint })) {
      const list = byPipe.get(end.pipeId) ?? [];
      if (!list.includes(task.pid)) list.push(task.pid);
      byPipe.set(end.pipeId, list);
    }
  }
  return byPipe;
}

function queuedPipes(ctx: RestoreCtx): Set<number> {
  const queued = new Set<number>();
  if (!ctx.checkpoint.has('pipes-data.img')) return queued;
  for (const lazy of ctx.checkpoint.image('pipes-data.img').entries()) {
    const e = lazy.decode();
    if (Number(e['bytes'] ?? 0) > 0) queued.add(Number(e['pipe_id']));
  }
  return queued;
}

/** Two fd numbers the task does not use, for the creator's spare ends. */
function spareFds(ctx: RestoreCtx): [number, number] {
  const used = new Set(ctx.images.fds.map((fd) => fd.fd));
  const out: number[] = [];
  for (let n = 900; out.length < 2; n--) if (!used.has(n)) out.push(n);
  return [out[0]!, out[1]!];
}

export const pipe: ResourceKind<RestoreCtx> = {
  name: 'pipe',
  stage: 'shared-fds',
  images: ['files', 'fdinfo-*', 'pipes-data'],
  appliesTo: (task: TaskPlan) => !task.zombie,
  async restore(ctx) {
    const ends = pipeEnds(ctx);
    if (!ends.length) return;
    const helper = helperOf(ctx);
    const byPipe = holders(ctx);
    const queued = queuedPipes(ctx);
    const spares = new Map<number, [number, number]>();
    for (const pipeId of new Set(ends.map((e) => e.pipeId))) {
      if (byPipe.get(pipeId)![0] !== ctx.pid) continue;
      if (queued.has(pipeId)) throw new Error(`not supported: pipe ${pipeId} had queued data (pipes-data.img)`);
      const [r, w] = spareFds(ctx);
      await helper.request('pipe', { fds: [r, w], flags: O_CLOEXEC });
      spares.set(pipeId, [r, w]);
      ctx.shared.publish(CREATED, String(pipeId), { hostPid: hostPidOf(ctx), read: r, write: w });
    }
    const ops: Array<{ op: string } & Record<string, unknown>> = [];
    for (const end of ends) {
      const made = (await ctx.shared.receive(CREATED, String(end.pipeId))) as { hostPid: number; read: number; write: number };
      const spare = (end.flags & O_ACCMODE) === 0 ? made.read : made.write;
      const flags = (end.flags & ~O_CLOEXEC) | (end.cloexec ? O_CLOEXEC : 0);
      ops.push({ op: 'open', path: `/proc/${made.hostPid}/fd/${spare}`, flags, fd: end.fd });
    }
    await helper.batch(ops);
    for (const pipeId of new Set(ends.map((e) => e.pipeId))) ctx.shared.publish(OPENED, `${pipeId}:${ctx.pid}`, true);
    for (const [pipeId, [r, w]] of spares) {
      await Promise.all(byPipe.get(pipeId)!.map((pid) => ctx.shared.receive(OPENED, `${pipeId}:${pid}`)));
      await helper.batch([{ op: 'close', fd: r }, { op: 'close', fd: w }]);
    }
  },
};
