// Regular files (and directories) at their exact fd numbers, with the open flags, close-on-exec
// and file offset they had. Files were checked at plan time (src/restore/files.ts); a file that
// vanished since is an open() failure naming the fd. Character devices open the same way but are
// their own kind (chardev.ts) because they have no size, offset or build-id to trust.
import type { FdinfoEntry } from '../images/index.js';
import { helperOf, type RestoreCtx } from '../restore/context.js';
import { S_IFCHR, S_IFMT, regFile, type RegFile } from '../restore/files.js';
import { FD_CLOEXEC, FD_TYPE_REG, O_CLOEXEC } from './shared-fds.js';
import { fdsSharedFilesPlaces } from './shared-files.js';
import type { ResourceKind } from './types.js';

export { FD_TYPE_REG };
// Flags that only mean something at creation: the file exists and must not be truncated again.
const CREATION_FLAGS = 0o100 /* O_CREAT */ | 0o200 /* O_EXCL */ | 0o1000 /* O_TRUNC */ | 0o400; /* O_NOCTTY */
// A file made with O_TMPFILE keeps that flag (__O_TMPFILE with O_DIRECTORY) in its description;
// it is opened again by path (a ghost), where O_DIRECTORY fails with ENOTDIR.
const O_TMPFILE_BIT = 0o20000000;
const O_TMPFILE = O_TMPFILE_BIT | 0o200000; /* O_DIRECTORY */

/** The flags that open a file's description again at its path. */
function reopenFlags(flags: number): number {
  return flags & ~CREATION_FLAGS & ~(flags & O_TMPFILE_BIT ? O_TMPFILE : 0);
}

export function isCharDevice(file: RegFile): boolean {
  return file.mode !== undefined && (file.mode & S_IFMT) === S_IFCHR;
}

/**
 * The REG fds of this task whose files are (or are not) character devices, but those the
 * shared-files kind puts in place (a description shared with another fd): opening them here
 * only to have them replaced cost a helper round trip per task in a tree sharing its stdio.
 */
export function regFds(ctx: RestoreCtx, devices: boolean): Array<{ fd: FdinfoEntry; file: RegFile }> {
  const placedLater = fdsSharedFilesPlaces(ctx);
  return ctx.images.fds
    .filter((fd) => fd.type === FD_TYPE_REG && !placedLater.has(fd.fd))
    .map((fd) => ({ fd, file: regFile(ctx.checkpoint, fd.id, `task ${ctx.pid} fd ${fd.fd}`) }))
    .filter(({ file }) => isCharDevice(file) === devices);
}

/** One round trip: open each file at its fd (and seek when asked); the batch stops at the first failure. */
export async function openAtFds(ctx: RestoreCtx, fds: Array<{ fd: FdinfoEntry; file: RegFile }>, seek: boolean): Promise<void> {
  if (!fds.length) return;
  const ops: Array<{ op: string } & Record<string, unknown>> = [];
  for (const { fd, file } of fds) {
    const flags = reopenFlags(file.flags) | (fd.flags & FD_CLOEXEC ? O_CLOEXEC : 0);
    ops.push({ op: 'open', path: file.name, flags, fd: fd.fd });
    if (seek && file.pos > 0n) ops.push({ op: 'lseek', fd: fd.fd, offset: Number(file.pos) });
  }
  try {
    await helperOf(ctx).batch(ops);
  } catch (err) {
    const index = (err as { index?: number }).index;
    const op = index !== undefined ? ops[index] : undefined;
    if (op && err instanceof Error) err.message += ` [fd ${String(op['fd'])}: ${fds.find(({ fd }) => fd.fd === op['fd'])?.file.name ?? '?'}]`;
    throw err;
  }
}

export const regfile: ResourceKind<RestoreCtx> = {
  name: 'regfile',
  stage: 'shared-fds',
  images: ['files', 'fdinfo-*'],
  appliesTo: (task) => !task.zombie,
  async restore(ctx) {
    await openAtFds(ctx, regFds(ctx, false), true);
  },
};
