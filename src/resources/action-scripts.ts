// CRIU's action scripts at restore (criu --action-script; the NOTIFY messages of its RPC, which
// runc answers by running a container's hooks): the caller's `actionScript` is awaited at the
// points CRIU runs them, and a failure fails the restore. pre-restore runs before the load and
// post-resume after the resume (src/restore/index.ts); the two kinds here are the ones inside:
// - setup-namespaces and post-setup-namespaces, once the root task exists in the tree's
//   namespaces and before it forks anything (a runtime enters them by the root's PID to set up
//   the container's network);
// - post-restore, orphan-pts-master (with each new pty master, for the caller to keep: a
//   container's terminal), network-unlock and pre-resume, once every task is restored and before
//   any is let go: every task's resume stage waits for the one run the first of them starts.
import { native } from '../actors/native.js';
import { hostPidOf, type RestoreCtx } from '../restore/context.js';
import type { ResourceKind } from './types.js';

/** The actions a restore runs, in order, with the PID they carry (the root's, in crr's PID namespace). */
export type RestoreAction = 'pre-restore' | 'setup-namespaces' | 'post-setup-namespaces' | 'post-restore' | 'orphan-pts-master' | 'network-unlock' | 'pre-resume' | 'post-resume';
/** `fd`: orphan-pts-master's new pty master, crr's fd, closed once the script has it. */
export type ActionScript<Action extends string> = (action: Action, rootPid?: number, fd?: number) => Promise<void>;

export const setupNamespacesActions: ResourceKind<RestoreCtx> = {
  name: 'action-setup-namespaces',
  stage: 'fork',
  images: [],
  after: ['task-tree'],
  appliesTo: (task, source) => task.ppid === 0 && (!source || source.actionScripts === true),
  describe: () => ['action scripts setup-namespaces and post-setup-namespaces, when the caller has them'],
  async restore(ctx) {
    const script = ctx.session.options.actionScript;
    if (!script) return;
    await script('setup-namespaces', hostPidOf(ctx));
    await script('post-setup-namespaces');
  },
};

export const postRestoreActions: ResourceKind<RestoreCtx> = {
  name: 'action-post-restore',
  stage: 'resume',
  images: [],
  appliesTo: (task, source) => !task.zombie && (!source || source.actionScripts === true),
  describe: () => ['action scripts post-restore, orphan-pts-master (each new pty master), network-unlock and pre-resume (once, before any task resumes), when the caller has them'],
  async restore(ctx) {
    const script = ctx.session.options.actionScript;
    if (!script) return;
    const root = ctx.plan.tasks.find((task) => task.ppid === 0)!;
    ctx.session.actionsBeforeResume ??= (async () => {
      const rootPid = ctx.session.runtimes.get(root.pid)?.hostPid;
      await script('post-restore', rootPid);
      for (const master of ctx.session.orphanMasters?.splice(0) ?? []) {
        try {
          await script('orphan-pts-master', rootPid, master);
        } finally {
          native.close(master);
        }
      }
      await script('network-unlock');
      await script('pre-resume');
    })();
    await ctx.session.actionsBeforeResume;
  },
};
