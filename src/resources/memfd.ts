// memfd files and mappings (files.img entries of type MEMFD, memfd.img inodes, VMAs with
// VMA_AREA_MEMFD): one memfd per inode for the whole tree, made by the first task (tree order)
// that holds an fd of it or maps it, with its name and MFD_ALLOW_SEALING unless the seals were
// exactly F_SEAL_SEAL (a memfd made without it), sized and filled from
// pagemap-shmem-<shmid>.img, given mode, owner and its seals; every other task takes it with
// pidfd_getfd (src/resources/shmem.ts does the same for shared anonymous memory). Each open
// description is then a fresh open of /proc/self/fd/<object> with the dumped flags and offset
// (landed like the other issue-6 fds: the first holder opens it, others pidfd_getfd it), and
// the memory kind maps the object at each memfd VMA ('memfd:<file id>' in runtime.preopened).
import { fchmodSync, fchownSync, ftruncateSync } from 'node:fs';
import { StageError } from '../errors.js';
import type { Checkpoint, Entry } from '../images/index.js';
import { perKey } from '../memo.js';
import { helperOf, type RestoreCtx, type TaskImageSet } from '../restore/context.js';
import { restoreAnonFds } from './eventfd.js';
import { O_CLOEXEC, spareFds } from './shared-fds.js';
import { OBJECT_FDS_BELOW, VMA_AREA_MEMFD, fillFromShmemImage, holdersOfObjects, landObject, memfdKey, objectRows, sessionHolders } from './shmem.js';
import type { PlanSource, ResourceKind, TaskPlan } from './types.js';

export const FD_TYPE_MEMFD = 18;
const MFD_ALLOW_SEALING = 2;
const F_ADD_SEALS = 1033;
const F_SEAL_SEAL = 1;
/** Below the shmem objects' fds, so the two kinds never pick the same numbers. */
const MEMFD_FDS_BELOW = OBJECT_FDS_BELOW - 100;

/** memfd.img entries by inode_id, decoded once per checkpoint. */
export const memfdInodes = perKey((checkpoint: Checkpoint) => {
  const table = new Map<number, Entry>();
  if (!checkpoint.has('memfd.img')) return table;
  for (const e of checkpoint.image('memfd.img').entries()) {
    const entry = e.decode();
    table.set(Number(entry['inode_id']), entry);
  }
  return table;
});

function inodeOfFile(checkpoint: Checkpoint, fileId: number): number {
  const memfd = checkpoint.file(fileId, 'a memfd fd or mapping')['memfd'] as Entry | undefined;
  if (!memfd) throw new Error(`files.img id ${fileId} is not a memfd`);
  return Number(memfd['inode_id']);
}

/** files.img ids of a task's memfd VMAs. */
function mappedFileIds(set: Pick<TaskImageSet, 'mm'>): number[] {
  const vmas = (set.mm?.['vmas'] as Entry[] | undefined) ?? [];
  return [...new Set(vmas.filter((v) => Number(v['status'] ?? 0) & VMA_AREA_MEMFD).map((v) => Number(v['shmid'])))];
}

/** memfd inode ids a task holds (fds and mappings). */
export function inodesOfTask(checkpoint: Checkpoint, set: Pick<TaskImageSet, 'mm' | 'fds'>): number[] {
  const files = [...set.fds.filter((fd) => fd.type === FD_TYPE_MEMFD).map((fd) => fd.id), ...mappedFileIds(set)];
  return [...new Set(files.map((id) => inodeOfFile(checkpoint, id)))];
}

export const memfd: ResourceKind<RestoreCtx> = {
  name: 'memfd',
  stage: 'shared-fds',
  images: ['memfd', 'files', 'fdinfo-*', 'mm-*', 'pagemap-shmem-*', 'pages-*'],
  appliesTo: (task) => !task.zombie,
  describe: () => ['memfd inodes (name, contents, mode, seals) once per tree; memfd fds with flags and offsets'],
  sharedObjects(tasks: readonly TaskPlan[], source?: PlanSource) {
    if (!source) return [];
    const checkpoint = source.checkpoint as Checkpoint;
    return objectRows('memfd', holdersOfObjects(tasks, source.images, (set) => inodesOfTask(checkpoint, set)));
  },
  async restore(ctx) {
    const inodes = inodesOfTask(ctx.checkpoint, ctx.images);
    if (!inodes.length) return;
    const helper = helperOf(ctx);
    const table = memfdInodes(ctx.checkpoint);
    const holders = sessionHolders(ctx, 'memfd', (set) => inodesOfTask(ctx.checkpoint, set));
    const objectFds = spareFds(ctx, inodes.length, MEMFD_FDS_BELOW);
    const fdOfInode = new Map<number, number>();
    for (const [i, inodeId] of inodes.entries()) {
      const mie = table.get(inodeId);
      if (!mie) throw new StageError({ stage: ctx.stage, pid: ctx.pid, resource: ctx.resource, message: `memfd inode ${inodeId} is not in memfd.img` });
      const seals = Number(mie['seals'] ?? 0);
      const creator = holders.get(String(inodeId))?.[0] ?? ctx.pid;
      const fd = objectFds[i]!;
      await landObject(ctx, 'memfd', String(inodeId), creator, fd, (copy) => {
        fillFromShmemImage(ctx.checkpoint, Number(mie['shmid']), copy);
        ftruncateSync(copy, Number(mie['size'] ?? 0)); // after: the last page is dumped whole
        if (mie['mode'] !== undefined) fchmodSync(copy, Number(mie['mode']) & 0o7777);
        fchownSync(copy, Number(mie['uid'] ?? 0), Number(mie['gid'] ?? 0));
      }, String(mie['name'] ?? ''), seals === F_SEAL_SEAL ? 0 : MFD_ALLOW_SEALING);
      // Sealed once full: F_SEAL_WRITE/GROW would stop the fill. (A F_SEAL_FUTURE_WRITE memfd with
      // a writable shared mapping cannot be remapped afterwards: the mmap fails with EPERM.)
      if (creator === ctx.pid && seals !== F_SEAL_SEAL && seals !== 0) {
        await helper.request('fcntl', { fd, cmd: F_ADD_SEALS, arg: seals });
      }
      fdOfInode.set(inodeId, fd);
    }
    for (const fileId of mappedFileIds(ctx.images)) {
      ctx.runtime.preopened.set(memfdKey(fileId), fdOfInode.get(inodeOfFile(ctx.checkpoint, fileId))!);
    }
    await restoreAnonFds(ctx, FD_TYPE_MEMFD, async (first) => {
      const file = first.file['memfd'] as Entry;
      const object = fdOfInode.get(Number(file['inode_id']))!;
      const flags = (Number(file['flags'] ?? 0) & ~O_CLOEXEC) | (first.cloexec ? O_CLOEXEC : 0);
      await helper.batch([
        { op: 'open', path: `/proc/self/fd/${object}`, flags, fd: first.fd },
        { op: 'lseek', fd: first.fd, offset: file['pos'] ?? 0 },
      ]);
    });
  },
};
