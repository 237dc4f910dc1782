// Deleted files the tree had open or mapped (ghosts: ghost-file-ID.img, remap-fpath.img). Before
// any task opens a file, the root's ghost-files kind makes each ghost beside the path it had
// (a hidden name, src/restore/files.ts ghostPath) with its bytes, mode, owner and times; every
// fd, mapping and cwd of it opens that path (regFile gives it); a deleted cwd is an empty
// directory. Once every task holds what it needs, at resume, ghost-files-removed renames each
// back to its old path and removes it there, and the tree's files are deleted ones again under
// their old names; a failed restore removes them too.
import { chmodSync, chownSync, closeSync, fchmodSync, ftruncateSync, linkSync, mkdirSync, openSync, rmdirSync, unlinkSync, utimesSync, writeSync } from 'node:fs';
import { native } from '../actors/native.js';
import { StageError } from '../errors.js';
import type { Checkpoint, Entry } from '../images/index.js';
import { perKey } from '../memo.js';
import type { RestoreCtx, RestoreSession } from '../restore/context.js';
import { ghostsOf, regFile } from '../restore/files.js';
import { crrPathOf } from '../restore/mounts.js';
import type { PlanSource, ResourceKind, TaskPlan } from './types.js';

const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;

/** The ghosts this restore made (and the path each had when dumped), to remove at resume or on failure. */
const madePaths = perKey((_: RestoreSession) => [] as Array<{ made: string; original: string }>);

/**
 * Removes the ghosts made. At resume (`asDumped`) each first takes back the name it had, unless
 * something holds that name now, so the tasks' fds, mappings and cwds name it as they did
 * ("PATH (deleted)"); on a failed restore it goes as it is.
 */
function removeMade(session: RestoreSession, asDumped: boolean): void {
  for (const { made, original } of madePaths(session).splice(0)) {
    let path = made;
    if (asDumped) {
      try {
        native.renameNoReplace(made, original);
        path = original;
      } catch {
        // its old name is taken: it goes by the made one
      }
    }
    try {
      unlinkSync(path);
    } catch (err) {
      // A directory (a deleted cwd) goes by rmdir, even while a task is in it; else gone already.
      if ((err as NodeJS.ErrnoException).code === 'EISDIR') rmdirSync(path);
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
    ctx.signal.addEventListener('abort', () => removeMade(ctx.session, false), { once: true });
    const made = madePaths(ctx.session);
    const firstPath = new Map<number, string>();
    // The tasks' paths; crr's, below a root of the tree's own, differ.
    const crrPath = (path: string) => crrPathOf(ctx.session.namespaces?.mnt, path);
    for (const [fileId, ghost] of ghosts) {
      const path = crrPath(regFile(ctx.checkpoint, fileId, 'remap-fpath.img').name);
      const original = crrPath(String((ctx.checkpoint.file(fileId, 'remap-fpath.img')['reg'] as Entry)['name']));
      const first = firstPath.get(ghost);
      if (first === path) continue;
      try {
        if (first !== undefined) linkSync(first, path);
        else writeGhost(ctx.checkpoint, ghost, path);
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        throw new StageError({ stage: ctx.stage, pid: ctx.pid, resource: ctx.resource, message: `making deleted file ${path} (ghost ${ghost.toString(16)}): ${e.message}`, ...(e.code ? { code: e.code, errno: Math.abs(e.errno ?? 0), syscall: e.syscall ?? 'open' } : {}) });
      }
      made.push({ made: path, original });
      if (first === undefined) firstPath.set(ghost, path);
    }
  },
};

/**
 * The ghost's bytes, mode, owner and times at `path`, a file that must not exist yet. The bytes
 * follow the head whole, or (`chunks`, as CRIU writes a sparse file) in chunks, each an offset
 * and a length: the file gets its size first, and what no chunk covers stays a hole. A
 * directory's ghost (a deleted cwd) is made empty.
 */
function writeGhost(checkpoint: RestoreCtx['checkpoint'], ghost: number, path: string): void {
  const [head, ...chunks] = [...checkpoint.image(`ghost-file-${ghost.toString(16)}.img`).entries()];
  const e = head?.decode() as Entry | undefined;
  if (!head || !e) throw new Error('its image is empty');
  const mode = Number(e['mode'] ?? 0o600) & 0o7777;
  if ((Number(e['mode'] ?? 0) & S_IFMT) === S_IFDIR) {
    mkdirSync(path, mode);
    chmodSync(path, mode); // mkdir's mode went through the umask
    finishGhost(path, e);
    return;
  }
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
  finishGhost(path, e);
}

/** A made ghost's owner and times. */
function finishGhost(path: string, e: Entry): void {
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
    removeMade(ctx.session, true);
  },
};
