// A task's cwd, root and umask (fs-PID.img), set by its helper with plain syscalls. Paths come
// from files.img by id; the cwd is entered before the root changes so that a cwd outside a
// chroot (legal, if odd) comes back too.
import type { Entry } from '../images/index.js';
import { helperOf, type RestoreCtx } from '../restore/context.js';
import type { ResourceKind } from './types.js';

function pathOf(ctx: RestoreCtx, id: number, what: string): string {
  const reg = ctx.checkpoint.file(id, `fs-${ctx.pid}.img ${what}`)['reg'] as Entry | undefined;
  if (!reg) throw new Error(`${what} (file id ${id}) is not a path`);
  return String(reg['name']);
}

export const fs: ResourceKind<RestoreCtx> = {
  name: 'fs',
  stage: 'task-state',
  images: ['fs-*', 'files'],
  appliesTo: (task) => !task.zombie,
  async restore(ctx) {
    const state = ctx.images.fs;
    if (!state) throw new Error(`fs-${ctx.pid}.img is missing`);
    const cwd = pathOf(ctx, state.cwd_id, 'cwd');
    const root = pathOf(ctx, state.root_id, 'root');
    const ops: Array<{ op: string } & Record<string, unknown>> = [{ op: 'chdir', path: cwd }];
    if (root !== '/') ops.push({ op: 'chroot', path: root });
    ops.push({ op: 'umask', mask: state.umask });
    await helperOf(ctx).batch(ops);
  },
};
