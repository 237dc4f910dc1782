// The restorer barrier, the last thing a task's helper does on its own: map the scratch area
// with the remote-syscall stub at an address free in both its own and the target's layout,
// open the files the address-space stage needs (pages-N.img, mapped files, exe) at fd numbers
// the task does not use, park (blocked in pause()), and be seized by the tracer with
// PTRACE_O_EXITKILL and interrupted. The memory kinds (src/resources/memory.ts and friends)
// find the scratch address in `ctx.runtime.scratch` and the fds in `ctx.runtime.preopened`.
import { closeSync, openSync, readFileSync } from 'node:fs';
import { HelperBatchError } from '../actors/helper-errors.js';
import type { HelperChannel } from '../actors/helper.js';
import { STUB_SCRATCH_SIZE, stubCode } from '../actors/stub.js';
import { hasParentCheckpoint, readPagemap, type Entry } from '../images/index.js';
import { helperOf, hostPidOf, type RestoreCtx } from '../restore/context.js';
import { regFile, VMA_FILE_PRIVATE, VMA_FILE_SHARED } from '../restore/files.js';
import { rlimitsOf } from './rlimits.js';
import { needsSeccompSuspend } from './seccomp.js';
import { O_CLOEXEC } from './shared-fds.js';
import type { ResourceKind } from './types.js';

const PAGE = 4096n;
const VMA_AREA_MEMFD = 1 << 14;
/** Lowest scratch address tried: clear of the zero page and mmap_min_addr games. */
const LOW = 0x10000000n;
/** The top of the x86-64 user address space (47 bits) minus a guard page. */
const HIGH = 0x7ffffffff000n;
const PROT_WRITE = 2;
const PTRACE_O_TRACESYSGOOD = 1;
const PTRACE_O_TRACECLONE = 8;
const PTRACE_O_EXITKILL = 0x100000;
const PTRACE_O_SUSPEND_SECCOMP = 0x200000;
const O_RDONLY = 0;
const O_RDWR = 2;
/** Highest fd number the pre-opened files may take (the helper's channel sits at 1000 and up). */
const PREOPEN_TOP = 999;

export interface Interval {
  readonly start: bigint;
  readonly end: bigint;
}

/** The lowest page-aligned gap of `size` bytes in [LOW, HIGH) that overlaps none of `taken`. */
export function findHole(taken: readonly Interval[], size: bigint, from = LOW): bigint | undefined {
  const sorted = [...taken].sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
  let at = from;
  for (const range of sorted) {
    if (range.end <= at) continue;
    if (range.start >= at + size + PAGE) return at; // one guard page below the next mapping
    at = ((range.end + PAGE - 1n) / PAGE) * PAGE + PAGE;
  }
  return at + size <= HIGH ? at : undefined;
}

/** A maps address: through a Number while exact (13 hex digits), which is cheaper than BigInt('0x..'). */
const address = (hex: string): bigint => (hex.length <= 13 ? BigInt(parseInt(hex, 16)) : BigInt(`0x${hex}`));

/**
 * Runs a helper batch whose first op is map_scratch (its `addr` filled in here) at the lowest
 * hole among the image's VMAs alone: the helper's own mappings (a PIE binary, libraries, stack:
 * far above LOW) almost never lie there, and map_scratch refuses an address in use (EEXIST,
 * MAP_FIXED_NOREPLACE; the batch stops there). Only then are the helper's maps read (~100 us a
 * task) and the batch sent again at a hole that avoids them too.
 */
export async function batchWithScratch(
  helper: Pick<HelperChannel, 'batch'>,
  ops: Array<{ op: string } & Record<string, unknown>>,
  imageVmas: readonly Interval[],
  hostPid: number,
): Promise<{ scratch: bigint; results: unknown[] }> {
  const size = BigInt(ops[0]!['size'] as bigint | number);
  const holeAvoiding = (taken: readonly Interval[]) => {
    const hole = findHole(taken, size);
    if (hole === undefined) throw new Error('no free address range for the stub scratch area');
    return hole;
  };
  let scratch = holeAvoiding(imageVmas);
  ops[0]!['addr'] = scratch;
  try {
    return { scratch, results: await helper.batch(ops) };
  } catch (error) {
    if (!(error instanceof HelperBatchError && error.index === 0 && error.code === 'EEXIST')) throw error;
  }
  scratch = holeAvoiding([...imageVmas, ...helperMappings(hostPid)]);
  ops[0]!['addr'] = scratch;
  return { scratch, results: await helper.batch(ops) };
}

/** The helper's own mappings right now (it must not lose them before the stub takes over). */
function helperMappings(hostPid: number): Interval[] {
  const out: Interval[] = [];
  for (const line of readFileSync(`/proc/${hostPid}/maps`, 'latin1').split('\n')) {
    const dash = line.indexOf('-');
    if (dash < 0) continue;
    out.push({ start: address(line.slice(0, dash)), end: address(line.slice(dash + 1, line.indexOf(' ', dash))) });
  }
  return out;
}

/**
 * pages-N.img of the task, from the pagemap's head entry alone: load has checked every run
 * against it already, and the whole readPagemap (every run decoded, the pages file opened) per
 * task was most of this stage's JS.
 */
function pagesFileOf(ctx: RestoreCtx): string {
  const image = ctx.checkpoint.pagemapImage(ctx.pid);
  const head = image.entries()[Symbol.iterator]().next();
  if (head.done) throw new Error(`${image.path} is empty`);
  return `pages-${Number(head.value.decode()['pages_id'])}.img`;
}

/** The key of the pre-opened fd of `parents[n]` of the task's pagemap (an ancestor's pages file). */
export const parentPagesKey = (n: number) => `parent-pages:${n}`;

function openAll(paths: readonly string[]): number[] {
  const fds: number[] = [];
  try {
    for (const path of paths) fds.push(openSync(path, O_RDONLY | O_CLOEXEC));
  } catch (err) {
    for (const fd of fds) closeSync(fd);
    throw err;
  }
  return fds;
}

function targetVmas(mm: Entry | undefined): Entry[] {
  return (mm?.['vmas'] as Entry[] | undefined) ?? [];
}

/** Files to pre-open: key -> files.img id and whether a shared writable mapping needs O_RDWR. */
function filesToOpen(mm: Entry | undefined): Map<number, boolean> {
  const files = new Map<number, boolean>();
  for (const vma of targetVmas(mm)) {
    const status = Number(vma['status'] ?? 0);
    if (!(status & (VMA_FILE_PRIVATE | VMA_FILE_SHARED))) continue;
    if (status & VMA_AREA_MEMFD) continue; // the memfd kind lands those objects (src/resources/memfd.ts)
    const id = Number(vma['shmid']);
    const writable = Boolean(status & VMA_FILE_SHARED) && Boolean(Number(vma['prot']) & PROT_WRITE);
    files.set(id, (files.get(id) ?? false) || writable);
  }
  const exe = mm?.['exe_file_id'];
  if (exe !== undefined && !files.has(Number(exe))) files.set(Number(exe), false);
  return files;
}

/**
 * fd numbers for the pre-opened files: from the top of the task's fd limit down, past its own
 * fds. Tasks sharing one fd table take every `share.size`-th number from top - slot (disjoint).
 */
export function preopenNumbers(count: number, used: ReadonlySet<number>, nofileCur: bigint, share = { slot: 0, size: 1 }): number[] {
  let next = Number(nofileCur - 1n < BigInt(PREOPEN_TOP) ? nofileCur - 1n : BigInt(PREOPEN_TOP)) - share.slot;
  const out: number[] = [];
  while (out.length < count) {
    if (next < 3) throw new Error(`no free fd numbers below RLIMIT_NOFILE ${nofileCur} for ${count} restore files`);
    if (!used.has(next)) out.push(next);
    next -= share.size;
  }
  return out;
}

export const barrier: ResourceKind<RestoreCtx> = {
  name: 'barrier',
  stage: 'barrier',
  images: ['mm-*', 'pagemap-*', 'files'],
  after: ['dev-tty'],
  appliesTo: (task) => !task.zombie,
  describe: () => ['map the stub scratch area, pre-open pages and mapped files, park, seize'],
  async restore(ctx) {
    const helper = helperOf(ctx);
    const hostPid = hostPidOf(ctx);
    const size = BigInt(STUB_SCRATCH_SIZE);
    const imageVmas: Interval[] = targetVmas(ctx.images.mm).map((v) => ({ start: BigInt(v['start'] as bigint), end: BigInt(v['end'] as bigint) }));

    // An incremental dump's unchanged pages are in its parent checkpoints' pages files.
    const parents = hasParentCheckpoint(ctx.checkpoint) ? readPagemap(ctx.checkpoint, ctx.pid).parents : [];
    const pagesPaths = [ctx.checkpoint.path(pagesFileOf(ctx)), ...parents.map((p) => p.pagesPath)];
    const files = filesToOpen(ctx.images.mm);
    const nofile = rlimitsOf(ctx.images.core)[7]?.cur ?? 1024n;
    const table = ctx.images.fdTable;
    const used = new Set((table?.fds ?? ctx.images.fds).map((fd) => fd.fd));
    const numbers = preopenNumbers(files.size + pagesPaths.length, used, nofile, table);
    // One round trip for the whole barrier: map the scratch area, open the files, park (park
    // answers, then blocks; it must come last). Each helper request costs a wake-up of the
    // helper and of Node; per task in a 1,000-task tree they add up to seconds.
    const ops: Array<{ op: string } & Record<string, unknown>> = [{ op: 'map_scratch', size, code: stubCode() }];
    const keys: string[] = [];
    // Under a root of the tree's own (a container's) the helper no longer sees the images
    // directory: crr opens the pages files and they ride on the batch's packet.
    const pagesNumbers = numbers.slice(0, pagesPaths.length);
    const sent = ctx.session.namespaces?.mnt?.newRoot ? openAll(pagesPaths) : undefined;
    if (sent === undefined) pagesPaths.forEach((path, n) => ops.push({ op: 'open', path, flags: O_RDONLY | O_CLOEXEC, fd: pagesNumbers[n] }));
    else ops.push({ op: 'recv_fds', fds: pagesNumbers, cloexec: pagesNumbers.map(() => 1) });
    keys.push('pages', ...parents.map((_, n) => parentPagesKey(n)));
    let i = pagesPaths.length;
    for (const [id, writable] of files) {
      const file = regFile(ctx.checkpoint, id, `mm-${ctx.pid}.img`);
      ops.push({ op: 'open', path: file.name, flags: (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC, fd: numbers[i++] });
      keys.push(`file:${id}`);
    }
    ops.push({ op: 'park' });
    const sender = sent === undefined ? helper : { batch: (list: typeof ops) => helper.requestWithFds<unknown[]>('batch', { ops: list }, sent) };
    const { scratch, results } = await batchWithScratch(sender, ops, imageVmas, hostPid).finally(() => sent?.forEach((fd) => closeSync(fd)));
    const [, ...answers] = results as number[];
    // recv_fds answers a count, for all the pages files at once.
    const opened = sent === undefined ? answers : [...pagesNumbers, ...answers.slice(1)];
    ctx.runtime.scratch = scratch;
    keys.forEach((key, n) => ctx.runtime.preopened.set(key, opened[n]!));
    helper.parked = true;

    // Seize, interrupt and wait for the stop in one tracer operation (three round trips to the
    // tracer thread per task before). traceClone: the threads kind clone3s under ptrace;
    // suspendSeccomp: see src/resources/seccomp.ts. Marked seized first: rollback then kills
    // it through the tracer even if the interrupt or the stop fails.
    const options = PTRACE_O_TRACESYSGOOD | PTRACE_O_TRACECLONE | PTRACE_O_EXITKILL | (needsSeccompSuspend(ctx.images) ? PTRACE_O_SUSPEND_SECCOMP : 0);
    ctx.runtime.seized = true;
    await ctx.tracer.seizeThreads(hostPid, [hostPid], options, 5000);
  },
};
