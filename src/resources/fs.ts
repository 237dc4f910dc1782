// A task's cwd, root and umask (fs-PID.img), set by its helper with plain syscalls. Paths come
// from files.img by id; the cwd is entered before the root changes so that a cwd outside a
// chroot (legal, if odd) comes back too.
import { readFileSync, readlinkSync } from 'node:fs';
import { perKey } from '../memo.js';
import { helperOf, type RestoreCtx, type RestoreSession } from '../restore/context.js';
import { regFile } from '../restore/files.js';
import type { ResourceKind } from './types.js';

function pathOf(ctx: RestoreCtx, id: number, what: string): string {
  // A deleted cwd is a ghost directory: regFile names where the restore made it.
  return regFile(ctx.checkpoint, id, `fs-${ctx.pid}.img ${what}`).name;
}

/** cwd, root and umask every helper has inherited from the launcher (read once per restore). */
interface Inherited {
  readonly cwd?: string;
  readonly root?: string;
  readonly umask?: number;
}
const inherited = perKey((session: RestoreSession): Inherited => {
  const pid = session.launcher?.hostPid;
  const read = <T>(what: () => T): T | undefined => {
    try {
      return pid === undefined ? undefined : what();
    } catch {
      return undefined; // unknown: set it
    }
  };
  const umask = read(() => /^Umask:\s+([0-7]+)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]);
  return {
    cwd: read(() => readlinkSync(`/proc/${pid}/cwd`)),
    root: read(() => readlinkSync(`/proc/${pid}/root`)),
    umask: umask === undefined ? undefined : parseInt(umask, 8),
  };
});

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
    // When task-state runs every helper still has the launcher's cwd, root and umask (all forks
    // are done, nothing set them): values equal to those need no round trip (a tree restored
    // from where it was started: none at all).
    const now = root === '/' && inherited(ctx.session).root === '/' ? inherited(ctx.session) : {};
    const ops: Array<{ op: string } & Record<string, unknown>> = [];
    if (cwd !== now.cwd) ops.push({ op: 'chdir', path: cwd });
    if (root !== '/') ops.push({ op: 'chroot', path: root });
    if (state.umask !== now.umask) ops.push({ op: 'umask', mask: state.umask });
    if (ops.length) await helperOf(ctx).batch(ops);
  },
};
