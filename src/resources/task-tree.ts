// The task tree: every task forked with its exact PID (clone3 + set_tid) by its parent's helper,
// sessions taken right after fork, then process groups once the whole tree exists (leaders
// first; a group whose leader has exited gets a short-lived placeholder with the leader's PID),
// and zombies recreated last with their exit status. Two kinds: `task-tree` in the fork stage,
// `process-groups` in the shared-fds stage (it waits for leaders across tasks, and that stage
// runs every task at once, so a waiting member never starves its leader of a slot).
import type { HelperChannel } from '../actors/helper.js';
import { StageError } from '../errors.js';
import { asStageError } from '../machines/errors.js';
import { helperOf, type RestoreCtx } from '../restore/context.js';
import { fillNamespaces } from '../restore/namespaces.js';
import type { ResourceKind, TaskPlan } from './types.js';

/**
 * How a task gets its session: its own setsid, its parent's, crr's (the root with --shell-job),
 * or one whose leader has exited ('orphan': a daemon's double fork, its first child's session,
 * the daemon reparented to its PID namespace's init). Such a session is made again by a helper
 * with the leader's PID that calls setsid and forks the task, then goes, as the first child did.
 */
export type SessionSource = 'own' | 'inherit' | 'shell-job' | 'orphan';

/**
 * Plan-time check of one task's session; throws a StageError naming the task when it cannot be
 * made. `nsInit`: the PID of the tree's task that is its fresh PID namespace's init (a checkpoint
 * whose root was pid 1, restored with --pid-namespace), to whom an orphan goes back.
 */
export function sessionSource(task: TaskPlan, tasks: readonly TaskPlan[], shellJob: boolean, nsInit?: number): SessionSource {
  if (task.sid === task.pid) return 'own';
  const parent = tasks.find((other) => other.pid === task.ppid);
  if (!parent) {
    if (shellJob) return 'shell-job';
    throw new StageError({
      stage: 'plan',
      pid: task.pid,
      resource: 'task-tree',
      message: `the root task was in session ${task.sid}, which is outside the checkpoint: restore it with --shell-job`,
    });
  }
  if (parent.sid === task.sid) return 'inherit';
  const leaderGone = !tasks.some((other) => other.pid === task.sid);
  const alone = tasks.filter((other) => other.sid === task.sid).length === 1;
  if (leaderGone && alone && !task.zombie && task.ppid === nsInit) return 'orphan';
  const why = !leaderGone
    ? 'a session left by its parent'
    : 'a session whose leader has exited: crr makes it again for one task, a child of the PID namespace init its checkpoint was dumped with, restored with --pid-namespace';
  throw new StageError({
    stage: 'plan',
    pid: task.pid,
    resource: 'task-tree',
    message: `not supported: task is in session ${task.sid} but its parent ${parent.pid} is in session ${parent.sid} (${why})`,
  });
}

/** The task that is its fresh PID namespace's init in this restore, if one is. */
export function namespaceInit(ctx: Pick<RestoreCtx, 'session' | 'plan'>): number | undefined {
  return ctx.session.options.pidNamespace && ctx.plan.tasks.some((t) => t.pid === 1 && t.ppid === 0) ? 1 : undefined;
}

/**
 * A task in a session whose leader has exited: a helper with the leader's PID makes the session
 * (setsid), forks the task, disarms its parent-death signal and hands it to `parent` (the PID
 * namespace's init, to whom the kernel reparents it), then goes.
 */
async function forkIntoOrphanSession(parent: HelperChannel, task: TaskPlan, flags: number): Promise<HelperChannel> {
  if (flags & (CLONE_FS | CLONE_FILES)) {
    throw new StageError({ stage: 'fork', pid: task.pid, resource: 'task-tree', message: `not supported: a task in a session whose leader has exited that shares its parent's ${flags & CLONE_FS ? 'fs' : 'fd table'}` });
  }
  const leader = await parent.fork({ pid: task.sid });
  try {
    await leader.setsid();
    const child = await leader.fork({ pid: task.pid, flags });
    await leader.handOver(child, parent);
    return child;
  } finally {
    await leader.destroy();
  }
}

/** Decoded wait status of a zombie: CRIU stores the kernel's exit_code (status << 8 | signal). */
export function zombieExit(exitCode: number): { status: number } | { signal: number } {
  const signal = exitCode & 0x7f;
  return signal ? { signal } : { status: (exitCode >> 8) & 0xff };
}

const CLONE_FS = 0x200;
const CLONE_FILES = 0x400;

/**
 * A task that shared its parent's fs (cwd, root, umask: same fs_id in ids-PID.img, from
 * clone(CLONE_FS)) is forked with CLONE_FS again. Sharing with a task other than the parent
 * cannot be made by fork: such a task gets its own copy (same values).
 */
export function sharesParentFs(ctx: Pick<RestoreCtx, 'task' | 'session'>): boolean {
  const mine = ctx.session.images.get(ctx.task.pid)?.ids?.fs_id;
  const parents = ctx.session.images.get(ctx.task.ppid)?.ids?.fs_id;
  return mine !== undefined && mine === parents && !ctx.task.zombie;
}

/**
 * A task that shares its parent's fd table (load.ts refused every other sharing) is forked with
 * CLONE_FILES: one table again, its fds restored once by the table's owner.
 */
export function sharesParentFiles(ctx: Pick<RestoreCtx, 'images' | 'task'>): boolean {
  const table = ctx.images.fdTable;
  return table !== undefined && table.slot > 0 && !ctx.task.zombie;
}

export const taskTree: ResourceKind<RestoreCtx> = {
  name: 'task-tree',
  stage: 'fork',
  images: ['pstree', 'core-*'],
  describe(task) {
    const what = task.zombie ? 'zombie' : `${task.threads.length} thread(s)`;
    return [`fork pid ${task.pid} (parent ${task.ppid || 'crr'}), session ${task.sid}, group ${task.pgid}, ${what}`];
  },
  async restore(ctx) {
    const { session, task } = ctx;
    const parentRuntime = session.runtimes.get(task.ppid);
    // The root's parent is the launcher or its namespace init, whose set-up the plan step started.
    if (!parentRuntime) await session.launcherReady;
    const parent = parentRuntime ? parentRuntime.helper : session.rootParent;
    if (!parent) throw new Error(`the parent of task ${task.pid} has no helper`);
    // A task that made namespaces of its own (nested in the tree's) is forked into new ones.
    const nested = session.namespaces?.nested?.get(task.pid);
    const flags = (sharesParentFs(ctx) ? CLONE_FS : 0) | (sharesParentFiles(ctx) ? CLONE_FILES : 0) | (nested?.unshare ?? 0);
    // A root that was its PID namespace's pid 1 is the fresh namespace's init (launcher.ts).
    const adopted = !parentRuntime ? session.rootInit : undefined;
    const source = sessionSource(task, ctx.plan.tasks, session.options.shellJob, namespaceInit(ctx));
    const child = adopted ?? (source === 'orphan' ? await forkIntoOrphanSession(parent, task, flags) : await parent.fork({ pid: task.pid, flags }));
    ctx.runtime.helper = child;
    ctx.runtime.hostPid = child.hostPid;
    if (nested) fillNamespaces(child.hostPid, nested);
    if (!adopted && child.pid !== task.pid) {
      throw new StageError({ stage: 'fork', pid: task.pid, resource: 'task-tree', message: `clone3 gave pid ${child.pid}` });
    }
    if (ctx.images.fdTable) {
      // In a shared table the mm kind closes only this task's own restorer fds, its channel among them.
      const { channelFd } = (await child.getpid()) as unknown as { channelFd?: number };
      if (channelFd !== undefined) ctx.runtime.preopened.set('channel', channelFd);
    }
    if (source === 'own') {
      // Not awaited: the fork stage ends one round trip earlier, and the child's start-up and
      // this answer overlap the machine's next steps. process-groups waits for it.
      const sessionSet = child.setsid().catch((err: unknown) => {
        throw asStageError(err, { stage: 'fork', pid: task.pid, resource: 'task-tree' });
      });
      sessionSet.catch(() => undefined); // reported by process-groups, which awaits it
      ctx.runtime.sessionSet = sessionSet;
    }
  },
};

/** Sessions-and-groups key in the shared table: a group exists (its leader or placeholder is in it). */
const GROUP = 'pgroup';
/** A task has joined its group (and session): a zombie leader may now exit. */
const JOINED = 'pgroup-joined';

/** The first task (tree order) of a group whose leader is not in the tree makes the placeholder. */
function placeholderMaker(task: TaskPlan, tasks: readonly TaskPlan[]): boolean {
  if (tasks.some((other) => other.pid === task.pgid)) return false;
  return tasks.find((other) => other.pgid === task.pgid && !other.zombie)?.pid === task.pid;
}

export const processGroups: ResourceKind<RestoreCtx> = {
  name: 'process-groups',
  stage: 'shared-fds',
  images: ['pstree'],
  describe(task) {
    if (task.pgid === task.pid) return [`lead process group ${task.pgid}`];
    return [`join process group ${task.pgid}${task.zombie ? ', then exit as a zombie' : ''}`];
  },
  async restore(ctx) {
    const { task, shared } = ctx;
    const tasks = ctx.plan.tasks;
    const helper = helperOf(ctx);
    // Its own session first (task-tree sent the setsid): the group is known only after it.
    await ctx.runtime.sessionSet;
    const isRoot = !tasks.some((other) => other.pid === task.ppid);
    if (isRoot && ctx.session.options.shellJob && task.sid !== task.pid) {
      shared.publish(JOINED, String(task.pid), true);
      return; // stays in crr's own group
    }
    // Known without a round trip once the helper has inherited or set it (HelperChannel.pgid).
    const current = helper.pgid ?? (await helper.getpid()).pgid;
    let placeholder: HelperChannel | undefined;
    if (task.pgid === task.pid) {
      if (current !== task.pid) await helper.setpgid(0);
      shared.publish(GROUP, String(task.pgid), true);
    } else {
      if (placeholderMaker(task, tasks)) {
        // One already in the group (an orphan session's, inherited from its leader) is the group.
        if (current !== task.pgid) placeholder = await makePlaceholder(ctx, task.pgid);
        shared.publish(GROUP, String(task.pgid), true);
      } else {
        await shared.receive(GROUP, String(task.pgid));
      }
      if (current !== task.pgid) await helper.setpgid(task.pgid);
    }
    shared.publish(JOINED, String(task.pid), true);
    if (placeholder !== undefined) {
      await waitForMembers(ctx, (other) => other.pgid === task.pgid);
      await placeholder.destroy(); // SIGKILL through its pidfd, reaped by this task's helper
    }
    if (task.zombie) {
      // A zombie leading a group or session must outlive every member's setpgid.
      await waitForMembers(ctx, (other) => other.pgid === task.pid || other.sid === task.pid);
      const exitCode = Number((ctx.images.core['tc'] as Record<string, unknown> | undefined)?.['exit_code'] ?? 0);
      const how = zombieExit(exitCode);
      ctx.runtime.zombie = true;
      if ('signal' in how) await helper.request('kill', { pid: task.pid, sig: how.signal }).catch(() => undefined);
      else await helper.request('exit', { status: how.status });
      await helper.exited;
    }
  },
};

async function waitForMembers(ctx: RestoreCtx, member: (task: TaskPlan) => boolean): Promise<void> {
  const members = ctx.plan.tasks.filter((other) => other.pid !== ctx.pid && member(other));
  await Promise.all(members.map((other) => ctx.shared.receive(JOINED, String(other.pid))));
}

/** A child with the exited leader's PID that leads the group until its members are in it. */
async function makePlaceholder(ctx: RestoreCtx, pgid: number): Promise<HelperChannel> {
  const helper = helperOf(ctx);
  const holder = await helper.fork({ pid: pgid });
  try {
    await holder.setpgid(0);
  } catch (err) {
    await holder.destroy();
    throw err;
  }
  return holder;
}
