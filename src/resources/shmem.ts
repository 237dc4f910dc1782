// Shared anonymous memory (MAP_SHARED|MAP_ANONYMOUS VMAs, status VMA_ANON_SHARED, shmid = the
// dumped shmem inode): one object per shmid for the whole tree, however many tasks map it and
// however many times. The first task (tree order) that maps it creates a memfd in its helper,
// crr sizes it and writes the dumped contents (pagemap-shmem-<shmid>.img + pages-N.img) through
// its own copy; every other task takes the same object with pidfd_getfd. Each task keeps it at
// a spare fd recorded in `runtime.preopened` ('shmem:<shmid>'), the memory kind maps it
// MAP_SHARED at each VMA's address and offset, and the mm kind closes that fd afterwards.
// The memfd kind (src/resources/memfd.ts) lands its objects the same way.
import { closeSync, ftruncateSync, openSync, readSync, writeSync } from 'node:fs';
import { native } from '../actors/native.js';
import { ImageError, StageError } from '../errors.js';
import type { Checkpoint, Entry } from '../images/index.js';
import { PAGE_SIZE, PE_PRESENT } from '../images/index.js';
import { perKey } from '../memo.js';
import { helperOf, type RestoreCtx, type RestoreSession, type TaskImageSet } from '../restore/context.js';
import { copyFromTask, O_CLOEXEC, spareFds } from './shared-fds.js';
import type { PlanSource, ResourceKind, SharedObject, TaskPlan } from './types.js';

export const VMA_ANON_SHARED = 1 << 8;
export const VMA_AREA_MEMFD = 1 << 14;
const MFD_CLOEXEC = 1;
/** Memory objects sit at spare fds from here down: clear of the barrier's pre-opened files (999 down) and shared-fds' temporaries (990 down). */
export const OBJECT_FDS_BELOW = 900;
const COPY_CHUNK = 8 << 20;

/** The `runtime.preopened` key under which a task holds the object of a shared anonymous VMA. */
export const shmemKey = (shmid: number | bigint): string => `shmem:${shmid}`;
/** The key of a memfd's object, by its files.img id (what a memfd VMA's shmid names). */
export const memfdKey = (fileId: number): string => `memfd:${fileId}`;

function vmasOf(mm: Entry | undefined): Entry[] {
  return (mm?.['vmas'] as Entry[] | undefined) ?? [];
}

/** Distinct shmids of a task's shared anonymous VMAs, in address order. */
export function shmidsOf(mm: Entry | undefined): number[] {
  const ids = vmasOf(mm)
    .filter((v) => Number(v['status'] ?? 0) & VMA_ANON_SHARED)
    .map((v) => Number(v['shmid']));
  return [...new Set(ids)];
}

/** The size of every shared anonymous object (by shmid): the furthest end (pgoff + length) any task's VMA maps. */
function objectSizes(images: Iterable<TaskImageSet>): Map<number, bigint> {
  const sizes = new Map<number, bigint>();
  for (const set of images) {
    for (const v of vmasOf(set.mm)) {
      if (!(Number(v['status'] ?? 0) & VMA_ANON_SHARED)) continue;
      const shmid = Number(v['shmid']);
      const end = BigInt((v['pgoff'] as bigint | undefined) ?? 0n) + BigInt(v['end'] as bigint) - BigInt(v['start'] as bigint);
      if (end > (sizes.get(shmid) ?? 0n)) sizes.set(shmid, end);
    }
  }
  return sizes;
}

/**
 * What the shmem and memfd kinds need of the whole tree, once per restore: per task, walking
 * every task's mappings was quadratic in a tree whose tasks share memory.
 */
interface TreeObjects {
  sizes?: Map<number, bigint>;
  readonly holders: Map<string, Map<string, number[]>>;
}

const treeObjectsOf = perKey((_: RestoreSession): TreeObjects => ({ holders: new Map() }));

/** holdersOfObjects over the restore's tree, computed once per restore and `kind`. */
export function sessionHolders(ctx: RestoreCtx, kind: string, idsOf: (set: TaskImageSet) => readonly (number | string)[]): Map<string, number[]> {
  const tree = treeObjectsOf(ctx.session);
  let holders = tree.holders.get(kind);
  if (!holders) tree.holders.set(kind, (holders = holdersOfObjects(ctx.plan.tasks, ctx.session.images, idsOf)));
  return holders;
}

function sessionObjectSize(ctx: RestoreCtx, shmid: number): bigint {
  const tree = treeObjectsOf(ctx.session);
  tree.sizes ??= objectSizes(ctx.session.images.values());
  return tree.sizes.get(shmid) ?? 0n;
}

/** Tasks (tree order, no zombies) that hold each object `idsOf` finds in them; the first one creates it. */
export function holdersOfObjects(tasks: readonly TaskPlan[], images: ReadonlyMap<number, unknown>, idsOf: (set: TaskImageSet) => readonly (number | string)[]): Map<string, number[]> {
  const out = new Map<string, number[]>();
  for (const task of tasks) {
    const set = images.get(task.pid) as TaskImageSet | undefined;
    if (!set || task.zombie) continue;
    for (const id of idsOf(set)) {
      const list = out.get(String(id)) ?? [];
      if (!list.includes(task.pid)) list.push(task.pid);
      out.set(String(id), list);
    }
  }
  return out;
}

export function objectRows(kind: string, holders: Map<string, number[]>): SharedObject[] {
  return [...holders].filter(([, pids]) => pids.length > 1).map(([id, pids]) => ({ kind, id, creator: pids[0]!, receivers: pids.slice(1) }));
}

/**
 * Writes an object's dumped pages (pagemap-shmem-<shmid>.img: runs whose vaddr is an offset in
 * the object) into `fd`, crr's copy of it. Returns the bytes written.
 */
export function fillFromShmemImage(checkpoint: Checkpoint, shmid: number | bigint, fd: number): number {
  const name = `pagemap-shmem-${shmid}.img`;
  if (!checkpoint.has(name)) return 0; // an object never written to: nothing but zeros
  const entries = [...checkpoint.image(name).entries()].map((e) => e.decode());
  if (!entries.length) return 0;
  const pages = openSync(checkpoint.path(`pages-${Number(entries[0]!['pages_id'])}.img`), 'r');
  const buf = Buffer.allocUnsafe(COPY_CHUNK);
  let fileOffset = 0;
  let bytes = 0;
  try {
    for (const e of entries.slice(1)) {
      const length = Number(e['nr_pages'] ?? 0) * PAGE_SIZE;
      const flags = e['flags'] === undefined ? PE_PRESENT : Number(e['flags']);
      if (!(flags & PE_PRESENT)) throw new ImageError(checkpoint.path(name), 0, 'pages stored in this checkpoint', `the run at offset ${BigInt(e['vaddr'] as bigint)} has flags ${flags} (kept in a parent checkpoint or lazy): not supported for shared memory`);
      const objectOffset = Number(BigInt(e['vaddr'] as bigint));
      for (let done = 0; done < length; ) {
        const want = Math.min(COPY_CHUNK, length - done);
        const got = readSync(pages, buf, 0, want, fileOffset + done);
        if (got !== want) throw new Error(`${name}: pages image ends early at offset ${fileOffset + done + got}`);
        for (let w = 0; w < got; ) w += writeSync(fd, buf, w, got - w, objectOffset + done + w);
        done += got;
      }
      fileOffset += length;
      bytes += length;
    }
  } finally {
    closeSync(pages);
  }
  return bytes;
}

/**
 * Lands one memory object in this task at `fd`: the creator makes it with `create` (which gets
 * crr's copy of the fresh memfd to size and fill), the others take the creator's with getfd.
 */
export async function landObject(ctx: RestoreCtx, kind: string, id: string, creator: number, fd: number, create: (copy: number) => Promise<void> | void, memfdName = 'crr-shmem', memfdFlags = MFD_CLOEXEC): Promise<void> {
  const helper = helperOf(ctx);
  if (creator === ctx.pid) {
    await helper.request('memfd_create', { name: memfdName, flags: memfdFlags | MFD_CLOEXEC, fd });
    const copy = copyFromTask(ctx, fd);
    try {
      await create(copy);
    } finally {
      native.close(copy);
    }
    ctx.shared.publish(kind, id, { pid: ctx.pid, fd });
  } else {
    const made = (await ctx.shared.receive(kind, id)) as { pid: number; fd: number };
    await helper.request('getfd', { pid: made.pid, targetFd: made.fd, fd, flags: O_CLOEXEC });
  }
}

export const shmem: ResourceKind<RestoreCtx> = {
  name: 'shmem',
  stage: 'shared-fds',
  images: ['mm-*', 'pagemap-shmem-*', 'pages-*'],
  appliesTo: (task) => !task.zombie,
  describe: () => ['shared anonymous memory: one memfd per object, filled once, shared by every task mapping it'],
  sharedObjects(tasks: readonly TaskPlan[], source?: PlanSource) {
    if (!source) return [];
    return objectRows('shmem', holdersOfObjects(tasks, source.images, (set) => shmidsOf(set.mm)));
  },
  async restore(ctx) {
    const ids = shmidsOf(ctx.images.mm);
    if (!ids.length) return;
    const start = ctx.now();
    const holders = sessionHolders(ctx, 'shmem', (set) => shmidsOf(set.mm));
    const fds = spareFds(ctx, ids.length, OBJECT_FDS_BELOW);
    let bytes = 0;
    for (const [i, shmid] of ids.entries()) {
      const creator = holders.get(String(shmid))?.[0] ?? ctx.pid;
      const size = sessionObjectSize(ctx, shmid);
      await landObject(ctx, 'shmem', String(shmid), creator, fds[i]!, (copy) => {
        try {
          ftruncateSync(copy, Number(size));
          bytes += fillFromShmemImage(ctx.checkpoint, shmid, copy);
        } catch (e) {
          const err = e as NodeJS.ErrnoException;
          throw new StageError({ stage: ctx.stage, pid: ctx.pid, resource: ctx.resource, errno: err.errno, code: err.code, message: `shared anonymous memory ${shmid}: ${err.message}`, cause: e });
        }
      });
      ctx.runtime.preopened.set(shmemKey(shmid), fds[i]!);
    }
    ctx.record({ name: 'shared memory objects', start, end: ctx.now(), bytes });
  },
};

/** The `runtime.preopened` key of the fd a VMA maps: its memory object, or its mapped file. */
export function mappedObjectKey(vma: { readonly status: number; readonly shmid: number }): string {
  if (vma.status & VMA_ANON_SHARED) return shmemKey(vma.shmid);
  if (vma.status & VMA_AREA_MEMFD) return memfdKey(vma.shmid);
  return `file:${vma.shmid}`;
}
