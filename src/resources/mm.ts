// The mm fields and what is left of the helper: PR_SET_MM_MAP in one call (code/data/brk/stack/
// arg/env bounds, saved auxv, exe through its pre-opened fd: kernel notes trap 6, it needs every
// helper mapping gone, which the memory kind did), PR_SET_NAME, dumpable and THP settings, and
// then every fd the task does not own in its image is closed (the helper's channel, pages-N.img,
// the mapped files), so the fd table is exactly the dumped one (in a table shared by several
// tasks, each closes only its own restorer fds: see ownRestorerFds).
import { readdirSync } from 'node:fs';
import { StageError } from '../errors.js';
import { hostPidOf, type RestoreCtx } from '../restore/context.js';
import { handedName, runOrHandOn, takeHanded } from '../restore/remote.js';
import { auxvBytes, commBytes, encodePrctlMmMap } from '../restore/remote-mm.js';
import { PR_SET_DUMPABLE, PR_SET_MM, PR_SET_MM_MAP, PR_SET_NAME, PR_SET_THP_DISABLE, SYS } from '../restore/remote-sys.js';
import { scratchOf } from './memory.js';
import type { ResourceKind } from './types.js';

/** The highest fd number close_range takes (~0U): "to the end of the table". */
const LAST_FD = 0xffffffff;

/**
 * The [first, last] fd ranges a task alone in its fd table closes with close_range: every fd its
 * image does not list (what is left is the restorer's own). No listing of /proc/PID/fd, which
 * cost ~100 us a task (~100 ms per 1,000-task tree).
 */
export function fdGaps(own: readonly number[]): Array<[number, number]> {
  const gaps: Array<[number, number]> = [];
  let from = 0;
  for (const fd of [...new Set(own)].sort((a, b) => a - b)) {
    if (fd > from) gaps.push([from, fd - 1]);
    from = fd + 1;
  }
  gaps.push([from, LAST_FD]);
  return gaps;
}

/**
 * In a table shared with other tasks (CLONE_FILES) the others' restorer fds are there too and
 * still in use: only this task's own restorer fds are closed (its channel and what the barrier
 * and kinds pre-opened), those still open.
 */
export function ownRestorerFds(ctx: RestoreCtx, hostPid: number): number[] {
  const open = new Set(readdirSync(`/proc/${hostPid}/fd`).map(Number));
  return [...new Set(ctx.runtime.preopened.values())].filter((fd) => open.has(fd)).sort((a, b) => a - b);
}

export function commOf(ctx: RestoreCtx): string {
  const tc = ctx.images.core['tc'] as Record<string, unknown> | undefined;
  return String(tc?.['comm'] ?? '');
}

export const mm: ResourceKind<RestoreCtx> = {
  name: 'mm',
  stage: 'memory',
  images: ['mm-*', 'core-*'],
  after: ['memory'],
  appliesTo: (task) => !task.zombie,
  describe: () => ['PR_SET_MM_MAP (layout, auxv, exe), comm, close the restorer fds'],
  async restore(ctx) {
    const hostPid = hostPidOf(ctx);
    const image = ctx.images.mm as Record<string, unknown> | undefined;
    if (!image) throw new StageError({ stage: ctx.stage, pid: ctx.pid, resource: ctx.resource, message: 'the task has no mm image' });
    const exeId = Number(image['exe_file_id']);
    const exeFd = ctx.runtime.preopened.get(`file:${exeId}`);
    if (exeFd === undefined) {
      throw new StageError({ stage: ctx.stage, pid: ctx.pid, resource: ctx.resource, message: `the barrier did not pre-open the exe (file id ${exeId})` });
    }
    const start = ctx.now();
    // After the memory kind's last commands (the helper's mappings are gone once they ran).
    const handed = takeHanded(ctx, scratchOf(ctx), 'mm fields', start);
    const { batch } = handed;
    const before = batch.size;
    const auxv = auxvBytes((image['mm_saved_auxv'] as Array<number | bigint> | undefined) ?? []);
    batch.reserve(auxv.length + 128 + 16, 5);
    const auxvAt = auxv.length > 0 ? batch.put(auxv) : 0n;
    const map = batch.put(encodePrctlMmMap(image, { addr: auxvAt, size: auxv.length }, exeFd));
    batch.call(SYS.prctl, [PR_SET_MM, PR_SET_MM_MAP, map, map === 0n ? 0 : 104, 0], { what: 'set the mm layout, auxv and exe' });
    const comm = commOf(ctx);
    if (comm) batch.call(SYS.prctl, [PR_SET_NAME, batch.put(commBytes(comm)), 0, 0, 0], { what: `set comm to ${comm}` });
    if (image['dumpable'] !== undefined) {
      batch.call(SYS.prctl, [PR_SET_DUMPABLE, Number(image['dumpable']), 0, 0, 0], { what: 'set dumpable' });
    }
    if (image['thp_disabled'] === true) batch.call(SYS.prctl, [PR_SET_THP_DISABLE, 1, 0, 0, 0], { what: 'disable THP' });
    if (ctx.images.fdTable) {
      for (const fd of ownRestorerFds(ctx, hostPid)) batch.call(SYS.close, [fd], { what: `close restorer fd ${fd}` });
    } else {
      for (const [first, last] of fdGaps(ctx.images.fds.map((fd) => fd.fd))) {
        batch.call(SYS.close_range, [first, last, 0], { what: `close the restorer fds in ${first}..${last === LAST_FD ? 'the end' : last}` });
      }
    }
    // sigact's rt_sigactions go in the same round trip.
    const ran = await runOrHandOn(ctx, handed, 'sigact', hostPid);
    if (ran) ctx.record({ name: handedName(handed), start: handed.start, end: ctx.now(), syscalls: batch.size });
    else ctx.record({ name: 'mm fields', start, end: ctx.now(), syscalls: batch.size - before });
  },
};
