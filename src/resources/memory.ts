// The address space: swaps the parked helper's memory for the dumped task's, in remote batches
// through the stub (docs/RESTORER.md). Teardown (every helper mapping but the scratch area
// unmapped, the vdso mapped back at the image's [vvar] address; the helper parked with every
// signal but SIGTRAP blocked and no rseq), then every VMA with MAP_FIXED (writable at first where
// pages go) with its madvise flags, preadv or UFFDIO_COPY straight from pages-N.img (read ahead from
// this process for a large fill; a large fill from a file not in the page cache is one O_DIRECT
// preadv instead, src/restore/page-cache.ts), then the final protections.
// Acts after the barrier seized the task with the scratch area mapped.
import { closeSync, openSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { native } from '../actors/native.js';
import type { NativeSyscallError } from '../actors/fds-binding.js';
import { StageError } from '../errors.js';
import { readPagemap } from '../images/index.js';
import { STUB_SCRATCH_SIZE } from '../actors/stub.js';
import { hostPidOf, type RestoreCtx } from '../restore/context.js';
import { RemoteBatch, runOrHandOn } from '../restore/remote.js';
import { ARCH_MAP_VDSO_64, O_CLOEXEC, signed, SYS } from '../restore/remote-sys.js';
import {
  addFill,
  defaultFill,
  addFinalProtection,
  addMappings,
  helperRangesToUnmap,
  hex,
  isKernelMade,
  presentRuns,
  unsupportedReason,
  vdsoBase,
  vmaOf,
  vmasWithPages,
  type PageRun,
  type Vma,
} from '../restore/remote-vma.js';
import { startPrefetch } from '../restore/prefetch.js';
import { directFill } from '../restore/page-cache.js';
import {
  addUffdAbandon,
  addUffdCopies,
  addUffdOpen,
  addUffdRegister,
  addUffdRelease,
  copyChunks,
  SYS_USERFAULTFD,
  sourceLength,
  splitRuns,
  UFFD_MIN_VMA_BYTES,
  uffdVmas,
  vmasHoldingRuns,
} from '../restore/remote-uffd.js';
import { LAZY_UFFD_FEATURES, splitLazy, startLazyPagesServer, type LazyRun } from '../restore/lazy-pages.js';
import { copyFromTask } from './shared-fds.js';
import { mappedObjectKey } from './shmem.js';
import { parentPagesKey } from './barrier.js';
import type { ResourceKind } from './types.js';

/** Pages from this many bytes on are filled in a batch of their own (a span of its own in the trace). */
const SEPARATE_FILL_BYTES = 16 << 20;

/**
 * From this many bytes of copy runs on, crr's own threads do the UFFDIO_COPY (through the task's
 * userfaultfd) instead of the task's one stub thread, one thread per core. Below it the two extra
 * round trips (register apart, release after) and a thread start are not repaid.
 */
const COPY_HERE_MIN_BYTES = 32 << 20;

/**
 * Copies by crr's threads under way in this process. One at a time: its threads already use every
 * core, and each holds one of libuv's four pool threads (which the read-ahead and fs calls need)
 * for the whole copy; a task with a large fill meanwhile copies for itself, in its own process.
 */
let copiesHere = 0;
const MAX_COPIES_HERE = 1;

/** Threads copying from here: CRR_COPY_THREADS=N (0: the task copies, as below the minimum). */
function copyThreads(): number {
  const set = process.env['CRR_COPY_THREADS'];
  if (set !== undefined && /^\d+$/.test(set)) return Math.min(16, Number(set));
  return Math.min(4, availableParallelism());
}

const F_SETFL = 4;
const O_DIRECT = 0o40000;
const EINVAL = 22;

export function imageVmas(ctx: RestoreCtx): Vma[] {
  const vmas = (ctx.images.mm?.['vmas'] as Array<Record<string, unknown>> | undefined) ?? [];
  return vmas.map(vmaOf);
}

/** The scratch address the barrier mapped; a task without one was not parked by the barrier. */
export function scratchOf(ctx: RestoreCtx): bigint {
  const scratch = ctx.runtime.scratch;
  if (scratch === undefined) {
    throw new StageError({ stage: ctx.stage, pid: ctx.pid, resource: ctx.resource, message: 'no scratch area: the barrier did not run for this task' });
  }
  return scratch;
}

function fail(ctx: RestoreCtx, message: string): never {
  throw new StageError({ stage: ctx.stage, pid: ctx.pid, resource: ctx.resource, message });
}

/**
 * UFFDIO_COPY for the runs of private anonymous VMAs (src/restore/remote-uffd.ts), preadv for
 * the rest (and for VMAs with less than UFFD_MIN_VMA_BYTES of pages), all added to `fill`. Opens
 * the userfaultfd and the source mapping in a batch of its own first; if the kernel refuses
 * either, everything goes by preadv. A large copy is done by crr's threads (copyFromHere) when
 * crr can take the userfaultfd; otherwise by the task.
 */
async function fillByCopy(ctx: RestoreCtx, hostPid: number, fill: RemoteBatch, at: { runs: PageRun[]; pagesFd: number; pagesPath: string; mapped: Vma[] }): Promise<{ calls: number; bytes: number }> {
  const { runs, pagesFd } = at;
  const vmas = vmasHoldingRuns(uffdVmas(at.mapped), runs, UFFD_MIN_VMA_BYTES);
  const { copy, read } = splitRuns(runs, vmas);
  if (copy.length === 0) return addFill(fill, runs, pagesFd);
  const length = sourceLength(copy);
  const open = new RemoteBatch(fill.scratch);
  const opened = addUffdOpen(open, pagesFd, length);
  const results = (await open.run(ctx.tracer, hostPid, { pid: ctx.pid })).map(signed);
  const uffd = results[opened.uffd]!;
  const source = results[opened.source]!;
  if (uffd < 0n || source < 0n) {
    addUffdAbandon(fill, { ...(uffd >= 0n ? { uffd: Number(uffd) } : {}), ...(source >= 0n ? { source } : {}), length });
    return addFill(fill, runs, pagesFd);
  }
  const threads = copyThreads();
  const copyBytes = copy.reduce((n, r) => n + Number(r.end - r.start), 0);
  const ours = threads > 0 && copyBytes >= COPY_HERE_MIN_BYTES && copiesHere < MAX_COPIES_HERE ? takeUffd(ctx, Number(uffd)) : undefined;
  if (ours !== undefined) {
    copiesHere++;
    try {
      const task = { uffd: Number(uffd), source, length, vmas };
      return await copyFromHere(ctx, hostPid, fill, { ...task, ours, threads, copy, read, pagesFd, pagesPath: at.pagesPath });
    } finally {
      copiesHere--;
      native.close(ours);
    }
  }
  const copied = addUffdCopies(fill, Number(uffd), source, length, vmas, copy);
  const rest = addFill(fill, read, pagesFd);
  return { calls: copied.calls + rest.calls, bytes: copied.bytes + rest.bytes };
}

/** crr's copy of the task's userfaultfd, or undefined (the task copies) if pidfd_getfd refuses. */
function takeUffd(ctx: RestoreCtx, uffd: number): number | undefined {
  try {
    return copyFromTask(ctx, uffd);
  } catch {
    return undefined;
  }
}

/**
 * The task registers its VMAs (a round trip of its own: no copy may precede it), then crr's
 * threads copy every run from pages-N.img mapped here while the task preadv's the other runs;
 * the unregister, close and unmap go into `fill`, which the caller runs after.
 */
async function copyFromHere(
  ctx: RestoreCtx,
  hostPid: number,
  fill: RemoteBatch,
  at: { uffd: number; ours: number; threads: number; source: bigint; length: bigint; vmas: Vma[]; copy: PageRun[]; read: PageRun[]; pagesFd: number; pagesPath: string },
): Promise<{ calls: number; bytes: number }> {
  const register = new RemoteBatch(fill.scratch);
  addUffdRegister(register, at.uffd, at.vmas);
  await register.run(ctx.tracer, hostPid, { pid: ctx.pid });
  const rest = new RemoteBatch(fill.scratch);
  const read = addFill(rest, at.read, at.pagesFd);
  const chunks = copyChunks(at.copy);
  const pieces = new BigUint64Array(chunks.length * 3);
  chunks.forEach((c, i) => pieces.set([c.dst, c.fileOffset, c.len], i * 3));
  const srcFd = openSync(at.pagesPath, 'r');
  const start = ctx.now();
  let copied: PromiseSettledResult<number>;
  let restRun: PromiseSettledResult<unknown>;
  try {
    [copied, restRun] = await Promise.allSettled([
      native.uffdCopy(at.ours, srcFd, Number(at.length), pieces, at.threads),
      rest.size > 0 ? rest.run(ctx.tracer, hostPid, { pid: ctx.pid, timeoutMs: 600_000 }) : Promise.resolve(),
    ]);
  } finally {
    closeSync(srcFd);
  }
  if (copied.status === 'rejected') {
    const err = copied.reason as NativeSyscallError & { address?: bigint };
    const where = err.address !== undefined ? ` at ${hex(err.address)}` : '';
    throw new StageError({ stage: ctx.stage, pid: ctx.pid, resource: ctx.resource, syscall: err.syscall, errno: err.errno, code: err.code, message: `copying pages from crr's threads into the task${where}: ${err.message}`, cause: err });
  }
  if (restRun.status === 'rejected') throw restRun.reason;
  ctx.record({ name: 'copy', start, end: ctx.now(), syscalls: chunks.length, bytes: copied.value });
  addUffdRelease(fill, at.uffd, at.source, at.length, at.vmas);
  return { calls: register.size + rest.size + chunks.length, bytes: copied.value + read.bytes };
}

/** A task's memory the lazy-pages server brings: the VMAs registered, the runs, their pages files. */
interface LazyMemory {
  vmas: Vma[];
  runs: LazyRun[];
  pagesPaths: string[];
}

/**
 * Registers the task's lazy VMAs with the userfaultfd `uffd` it opened (the events the server
 * follows asked for) and hands crr's copy of it to the tree's lazy-pages server, started here for
 * the first task. The task's own copy is closed by the caller's next batch.
 */
async function registerLazy(ctx: RestoreCtx, hostPid: number, scratch: bigint, uffd: number, lazy: LazyMemory): Promise<number> {
  const start = ctx.now();
  const register = new RemoteBatch(scratch);
  addUffdRegister(register, uffd, lazy.vmas, LAZY_UFFD_FEATURES);
  await register.run(ctx.tracer, hostPid, { pid: ctx.pid });
  const server = (ctx.session.lazyPages ??= startLazyPagesServer(ctx.session.options.lazyPagesLog));
  server.addTask(hostPid, copyFromTask(ctx, uffd), lazy.pagesPaths, lazy.runs);
  // The bytes left to the server, for the trace: they are not filled here.
  ctx.record({ name: 'lazy pages', start, end: ctx.now(), syscalls: register.size, bytes: lazy.runs.reduce((n, r) => n + Number(r.end - r.start), 0) });
  return register.size;
}

/** An incremental dump's pages kept in parent checkpoints: each pages file's pre-opened fd and the runs read from it. */
type ParentRuns = ReadonlyArray<{ fd: number; runs: PageRun[] }>;

/**
 * Maps every VMA (after the teardown already in `batch`), fills the runs and adds the final
 * protections: one batch for a small task, map / fill / protect batches for an `own` fill. The
 * last batch (`last`) is not run here: the mm kind adds its commands to it.
 */
async function mapAndFill(
  ctx: RestoreCtx,
  at: {
    hostPid: number;
    batch: RemoteBatch;
    mapped: Vma[];
    runs: PageRun[];
    lazy?: LazyMemory;
    pagesFd: number;
    pagesPath: string;
    parentRuns: ParentRuns;
    own: boolean;
    direct: boolean;
    directRefused: () => void;
    start: number;
  },
): Promise<{ syscalls: number; bytes: number; last: RemoteBatch }> {
  const { hostPid, batch, mapped, runs, lazy, pagesFd, parentRuns, own } = at;
  const filled = vmasWithPages(mapped, [...runs, ...parentRuns.flatMap((p) => p.runs)]);
  addMappings(batch, mapped, { fdOf: (v) => ctx.runtime.preopened.get(mappedObjectKey(v)), writable: (v) => filled.has(v) });
  let fill = batch;
  let direct = own && at.direct;
  let registered = 0;
  // Lazy VMAs are registered once mapped: the map batch runs first, with the userfaultfd's open.
  const openLazy = lazy ? batch.call(SYS_USERFAULTFD, [O_CLOEXEC], { what: 'open a userfaultfd for lazy pages' }) : -1;
  if (own || lazy) {
    // O_DIRECT set on the task's own pages fd with the map batch (no round trip of its own);
    // EINVAL: this filesystem reads through the cache only, the fill goes today's way.
    const setDirect = direct ? batch.call(SYS.fcntl, [pagesFd, F_SETFL, O_DIRECT], { what: 'set O_DIRECT on pages-N.img', tolerate: [EINVAL] }) : -1;
    const results = await batch.run(ctx.tracer, hostPid, { pid: ctx.pid, timeoutMs: 120_000 });
    ctx.record({ name: 'map', start: at.start, end: ctx.now(), syscalls: batch.size });
    if (direct && signed(results[setDirect]!) < 0n) {
      direct = false;
      at.directRefused();
    }
    fill = new RemoteBatch(batch.scratch);
    if (lazy) {
      const uffd = Number(results[openLazy]!);
      registered = await registerLazy(ctx, hostPid, batch.scratch, uffd, lazy);
      fill.call(SYS.close, [uffd], { what: "close the task's lazy-pages userfaultfd (the server has its own)" });
    }
  }
  const fillStart = ctx.now();
  // UFFDIO_COPY's registration would stop the preadv of pages from parent checkpoints: plain reads then.
  const preferred = defaultFill();
  const mode = parentRuns.length && preferred === 'uffd' ? 'fault' : preferred;
  let reads: { calls: number; bytes: number };
  if (direct) {
    // One preadv per GiB straight into the task's pages, then the fd reads through the cache again.
    reads = addFill(fill, runs, pagesFd);
    fill.call(SYS.fcntl, [pagesFd, F_SETFL, 0], { what: 'clear O_DIRECT on pages-N.img' });
  } else if (own && mode === 'uffd') {
    reads = await fillByCopy(ctx, hostPid, fill, { runs, pagesFd, pagesPath: at.pagesPath, mapped });
  } else reads = addFill(fill, runs, pagesFd, mode === 'populate' ? 'populate' : 'fault');
  for (const parent of parentRuns) {
    const more = addFill(fill, parent.runs, parent.fd);
    reads = { calls: reads.calls + more.calls, bytes: reads.bytes + more.bytes };
  }
  if (own) {
    await fill.run(ctx.tracer, hostPid, { pid: ctx.pid, timeoutMs: 600_000 });
    ctx.record({ name: direct ? 'direct fill' : 'fill', start: fillStart, end: ctx.now(), syscalls: fill.size, bytes: reads.bytes });
  }
  const last = own ? new RemoteBatch(batch.scratch) : fill;
  for (const v of mapped) addFinalProtection(last, v, filled.has(v) && (v.prot & 2) === 0);
  return { syscalls: batch.size + registered + (fill !== batch ? fill.size : 0) + (last !== fill ? last.size : 0), bytes: reads.bytes, last };
}

export const memory: ResourceKind<RestoreCtx> = {
  name: 'memory',
  stage: 'memory',
  images: ['mm-*', 'pagemap-*', 'pages-*'],
  after: ['barrier'],
  appliesTo: (task) => !task.zombie,
  describe: () => ['unmap the helper, map every VMA, fill pages with preadv, final protections'],
  async restore(ctx) {
    const hostPid = hostPidOf(ctx);
    const scratch = scratchOf(ctx);
    const vmas = imageVmas(ctx);
    for (const v of vmas) {
      const why = unsupportedReason(v);
      if (why) fail(ctx, `VMA ${hex(v.start)}-${hex(v.end)} is ${why}: not supported yet`);
    }
    const pagesFd = ctx.runtime.preopened.get('pages');
    if (pagesFd === undefined) fail(ctx, 'the barrier did not pre-open pages-N.img');

    const start = ctx.now();
    // Nothing to set up before the teardown: the helper parked with every signal but SIGTRAP
    // blocked, and without glibc's rseq, which would fault on the way back from munmap (kernel
    // notes traps 9 and 3): it runs with rseq off or unregisters it at start-up, and exits if it
    // cannot (native/helper/main.c).
    const mapped = vmas.filter((v) => !isKernelMade(v));
    const pagemap = readPagemap(ctx.checkpoint, ctx.pid);
    const ownRuns = presentRuns(pagemap.runs, mapped);
    const parentFiles = pagemap.parents.map((parent) => presentRuns(parent.runs, mapped));
    // Lazy pages: the runs the server brings, from the task's pages file and its parent
    // checkpoints', are left out of everything below.
    const split = ctx.session.options.lazyPages ? splitLazy(mapped, [ownRuns, ...parentFiles]) : undefined;
    const runs = split ? split.eager[0]! : ownRuns;
    const parentRuns: ParentRuns = pagemap.parents.map((parent, n) => {
      const fd = ctx.runtime.preopened.get(parentPagesKey(n));
      if (fd === undefined) fail(ctx, `the barrier did not pre-open ${parent.pagesPath}`);
      return { fd, runs: split ? split.eager[n + 1]! : parentFiles[n]! };
    });
    const pagesPath = ctx.checkpoint.path(pagemap.pagesFile);
    const pagesPaths = [pagesPath, ...pagemap.parents.map((parent) => parent.pagesPath)];
    const lazy = split?.lazy.length ? { vmas: split.vmas, runs: split.lazy, pagesPaths } : undefined;
    const batch = new RemoteBatch(scratch);

    // Teardown.
    const keep = { start: scratch, end: scratch + BigInt(STUB_SCRATCH_SIZE) };
    for (const r of helperRangesToUnmap(keep)) {
      batch.call(SYS.munmap, [r.start, r.end - r.start], { what: `unmap helper range ${hex(r.start)}-${hex(r.end)}`, ...(r.tolerate ? { tolerate: r.tolerate } : {}) });
    }
    const vdso = vdsoBase(vmas);
    // Returns the vdso image size, not 0; fails with EEXIST while any old vvar/vdso page is mapped.
    if (vdso !== undefined) batch.call(SYS.arch_prctl, [ARCH_MAP_VDSO_64, vdso], { what: `map the vdso at ${hex(vdso)}` });

    // The new address space.
    // A large fill runs as its own batch so the trace shows the map and the fill apart; two
    // more tracer round trips (about 50 us) are nothing beside 16 MiB of copying. Its pages come
    // off the disk from here while the task maps and copies (src/restore/prefetch.ts).
    const own = runs.reduce((n, r) => n + Number(r.end - r.start), 0) >= SEPARATE_FILL_BYTES;
    const prefetchStart = ctx.now();
    const length = Number(sourceLength(runs));
    // A cold file is read direct, with no read-ahead (it would fill the cache O_DIRECT bypasses).
    const direct = own && directFill(pagesPath, runs, length).direct;
    let prefetch: ReturnType<typeof startPrefetch> | undefined;
    const readAhead = () => {
      prefetch = startPrefetch(pagesPath, length, { now: () => ctx.now() });
    };
    if (own && !direct) readAhead();
    let done: { syscalls: number; bytes: number; last: RemoteBatch };
    try {
      done = await mapAndFill(ctx, { hostPid, batch, mapped, runs, ...(lazy ? { lazy } : {}), pagesFd, pagesPath, parentRuns, own, direct, directRefused: readAhead, start });
    } finally {
      const ahead = await prefetch?.stop();
      // Ends when the last read-ahead call returned: how far ahead of the fill the disk ran.
      if (ahead) ctx.record({ name: 'read ahead', start: prefetchStart, end: ahead.end, bytes: ahead.bytes });
    }
    // The final protections (for a small task, the whole address space) go with mm's commands.
    const handed = { batch: done.last, timeoutMs: 120_000, start, parts: ['address space'] };
    await runOrHandOn(ctx, handed, 'mm', hostPid);
    ctx.record({ name: 'address space', start, end: ctx.now(), syscalls: done.syscalls, bytes: done.bytes });
  },
};
