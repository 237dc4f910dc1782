// The fown kind: signal-driven I/O. A file's owner (the process, thread or process group its
// SIGIO and SIGURG go to), its signal (F_SETSIG) and O_ASYNC, as each files.img entry's fown and
// flags say. Set once every fd of the task is in place (task-state), by each task holding the
// file (a shared description gets the same values again): F_SETOWN_EX first, so that O_ASYNC
// never signals another owner.
import { fileSubMessage } from '../images/checkpoint.js';
import type { Checkpoint, Entry, FdinfoEntry } from '../images/index.js';
import { helperOf, type RestoreCtx, type TaskImageSet } from '../restore/context.js';
import type { Op } from './socket-options.js';
import type { PlanSource, ResourceKind, TaskPlan } from './types.js';

const FASYNC = 0o20000;
const F_SETFL = 4;
const F_SETSIG = 10;
/** The status flags F_SETFL sets (the kernel's SETFL_MASK): O_APPEND, O_NONBLOCK, FASYNC, O_DIRECT, O_NOATIME. */
const SETFL_MASK = 0o2000 | 0o4000 | FASYNC | 0o40000 | 0o1000000;

interface Owner {
  readonly type: number;
  readonly pid: number;
  readonly signum: number;
}

/** What a files.img entry asks: its owner and signal, and its status flags when O_ASYNC is among them. */
function signalDriven(file: Entry | undefined): { owner?: Owner; asyncFlags?: number } | undefined {
  // The per-kind sub-message (reg, pipe, usk, isk...) holds flags and fown.
  if (!file) return undefined;
  const sub = fileSubMessage(file);
  const fown = sub['fown'] as Entry | undefined;
  const owner = fown && (Number(fown['pid']) || Number(fown['signum'])) ? { type: Number(fown['pid_type'] ?? 1), pid: Number(fown['pid'] ?? 0), signum: Number(fown['signum'] ?? 0) } : undefined;
  const flags = Number(sub['flags'] ?? 0);
  if (!owner && !(flags & FASYNC)) return undefined;
  return { ...(owner ? { owner } : {}), ...(flags & FASYNC ? { asyncFlags: flags & SETFL_MASK } : {}) };
}

function ops(checkpoint: Checkpoint, fds: readonly FdinfoEntry[]): Op[] {
  const out: Op[] = [];
  for (const fd of fds) {
    const want = signalDriven(checkpoint.files().get(fd.id));
    if (!want) continue;
    const { owner, asyncFlags } = want;
    if (owner?.pid) out.push({ op: 'set_owner', fd: fd.fd, type: owner.type, pid: owner.pid });
    if (owner?.signum) out.push({ op: 'fcntl', fd: fd.fd, cmd: F_SETSIG, arg: owner.signum });
    if (asyncFlags !== undefined) out.push({ op: 'fcntl', fd: fd.fd, cmd: F_SETFL, arg: asyncFlags });
  }
  return out;
}

export const fown: ResourceKind<RestoreCtx> = {
  name: 'fown',
  stage: 'task-state',
  images: ['files', 'fdinfo-*'],
  appliesTo: (task: TaskPlan, source?: PlanSource) => {
    if (task.zombie) return false;
    const fds = (source?.images.get(task.pid) as TaskImageSet | undefined)?.fds;
    return fds === undefined || ops(source!.checkpoint as Checkpoint, fds).length > 0;
  },
  describe: () => ['signal-driven I/O: each file\'s owner and signal (F_SETOWN_EX, F_SETSIG), O_ASYNC'],
  async restore(ctx) {
    const list = ops(ctx.checkpoint, ctx.images.fds);
    if (list.length) await helperOf(ctx).batch(list);
  },
};
