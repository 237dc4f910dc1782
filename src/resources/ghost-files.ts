// Deleted files the tree had open or mapped (ghosts: ghost-file-ID.img, remap-fpath.img). Before
// any task opens a file, the root's ghost-files kind makes each ghost beside the path it had
// (a hidden name, src/restore/files.ts ghostPath) with its bytes, mode, owner and times; every
// fd and mapping of it opens that path (regFile gives it). Once every task holds what it needs,
// at resume, ghost-files-removed unlinks them, and the tree's files are deleted ones again; a
// failed restore unlinks them too.
import { chownSync, closeSync, fchmodSync, ftruncateSync, linkSync, openSync, unlinkSync, utimesSync, writeSync } from 'node:fs';
import { StageError } from '../errors.js';
import type { Checkpoint, Entry } from '../images/index.js';
import { perKey } from '../memo.js';
import type { RestoreCtx, RestoreSession } from '../restore/context.js';
import { ghostsOf, regFile } from '../restore/files.js';
import type { PlanSource, ResourceKind, TaskPlan } from './types.js';

/** The paths this restore made, to unlink at resume or on failure. */
const madePaths = perKey((_: RestoreSession) => [] as string[]);

function unlinkMade(session: RestoreSession): void {
  const paths = madePaths(session);
  for (const path of paths.splice(0)) {
    try {
      unlinkSync(path);
    } catch {
      // gone already
    }
  }
}

/** The root, when the checkpoint has ghosts (or the planner has no images to tell). */
const rootWithGhosts = (task: TaskPlan, source?: PlanSource) => task.ppid === 0 && !task.zombie && (!source || (source.checkpoint as Checkpoint).has('remap-fpath.img'));

export const ghostFiles: ResourceKind<RestoreCtx> = {
  name: 'ghost-files',
  stage: 'fork',
  after: ['task-tree'],
  images: ['remap-fpath', 'ghost-file-*'],
  appliesTo: rootWithGhosts,
  describe: () => ['deleted files the tree holds, made again (hidden, beside their old paths) until every task has opened them'],
  async restore(ctx) {
    const ghosts = ghostsOf(ctx.checkpoint);
    if (!ghosts.size) return;
    ctx.signal.addEventListener('abort', () => unlinkMade(ctx.session), { once: true });
    const made = madePaths(ctx.session);
    const firstPath = new Map<number, string>();
    for (const [fileId, ghost] of ghosts) {
      const path = regFile(ctx.checkpoint, fileId, 'remap-fpath.img').name;
      const first = firstPath.get(ghost);
      if (first === path) continue;
      try {
        if (first !== undefined) linkSync(first, path);
        else writeGhost(ctx.checkpoint, ghost, path);
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        throw new StageError({ stage: ctx.stage, pid: ctx.pid, resource: ctx.resource, message: `making deleted file ${path} (ghost ${ghost.toString(16)}): ${e.message}`, ...(e.code ? { code: e.code, errno: Math.abs(e.errno ?? 0), syscall: e.syscall ?? 'open' } : {}) });
      }
      made.push(path);
      if (first === undefined) firstPath.set(ghost, path);
    }
  },
};

/**
 * The ghost's bytes, mode, owner and times at `path`, a file that must not exist yet. The bytes
 * follow the head whole, or (`chunks`, as CRIU writes a sparse file) in chunks, each an offset
 * and a length: the file gets its size first, and what no chunk covers stays a hole.
 */
function writeGhost(checkpoint: RestoreCtx['checkpoint'], ghost: number, path: string): void {
  const [head, ...chunks] = [...checkpoint.image(`ghost-file-${ghost.toString(16)}.img`).entries()];
  const e = head?.decode() as Entry | undefined;
  if (!head || !e) throw new Error('its image is empty');
  const mode = Number(e['mode'] ?? 0o600) & 0o7777;
  const fd = openSync(path, 'wx', mode);
  try {
    fchmodSync(fd, mode); // the open's mode went through the umask
    const put = (data: Uint8Array, at: number) => {
      for (let done = 0; done < data.length; ) done += writeSync(fd, data, done, data.length - done, at + done);
    };
    if (e['chunks']) {
      ftruncateSync(fd, Number(e['size'] ?? 0));
      for (const chunk of chunks) put(chunk.payload ?? new Uint8Array(), Number(chunk.decode()['off']));
    } else put(head.payload ?? new Uint8Array(), 0);
  } finally {
    closeSync(fd);
  }
  chownSync(path, Number(e['uid'] ?? 0), Number(e['gid'] ?? 0));
  const seconds = (t: unknown) => {
    const tv = (t ?? {}) as Record<string, unknown>;
    return Number(tv['tv_sec'] ?? 0) + Number(tv['tv_usec'] ?? 0) / 1e6;
  };
  if (e['mtim']) utimesSync(path, seconds(e['atim'] ?? e['mtim']), seconds(e['mtim']));
}

export const ghostFilesRemoved: ResourceKind<RestoreCtx> = {
  name: 'ghost-files-removed',
  stage: 'resume',
  images: ['remap-fpath'],
  appliesTo: rootWithGhosts,
  describe: () => ['the deleted files made for the restore, unlinked again'],
  async restore(ctx) {
    unlinkMade(ctx.session);
  },
};
