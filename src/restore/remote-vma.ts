// The address-space plan as pure functions, so it can be tested without a task: which helper
// mappings go, how each dumped VMA is mapped (flags, fd, the temporary PROT_WRITE of VMAs that
// get pages, its madvise flags), which page runs fill them (preadv with up to IOV_MAX iovecs and
// 1 GiB per call, consecutive runs of pages-N.img read by one call, optionally populated first)
// and the final mprotect. The one input read from the system: its transparent huge page mode.
import { readFileSync } from 'node:fs';
import type { PagemapRun } from '../images/index.js';
import { PAGE_SIZE, PE_PRESENT } from '../images/index.js';
import { setU64 } from '../actors/stub.js';
import { RemoteBatch } from './remote.js';
import {
  MADV_HUGEPAGE,
  MADV_NOHUGEPAGE,
  MADV_POPULATE_WRITE,
  MAP_ANONYMOUS,
  MAP_FIXED,
  MAP_GROWSDOWN,
  MAP_KEEP,
  MAP_LOCKED,
  MAP_PRIVATE,
  MAP_SHARED,
  PROT_WRITE,
  SYS,
} from './remote-sys.js';

// status bits of vma_entry (CRIU's VMA_AREA_* / VMA_FILE_* / VMA_ANON_*)
export const VMA_AREA_REGULAR = 1 << 0;
export const VMA_AREA_STACK = 1 << 1;
export const VMA_AREA_VSYSCALL = 1 << 2;
export const VMA_AREA_VDSO = 1 << 3;
export const VMA_AREA_HEAP = 1 << 5;
export const VMA_FILE_PRIVATE = 1 << 6;
export const VMA_FILE_SHARED = 1 << 7;
export const VMA_ANON_SHARED = 1 << 8;
export const VMA_ANON_PRIVATE = 1 << 9;
export const VMA_AREA_SYSVIPC = 1 << 10;
export const VMA_AREA_SOCKET = 1 << 11;
export const VMA_AREA_VVAR = 1 << 12;
export const VMA_AREA_AIORING = 1 << 13;
export const VMA_AREA_MEMFD = 1 << 14;
export const VMA_UNSUPP = 2 ** 31;

/** IOV_MAX: the most iovecs one preadv takes. */
export const IOV_MAX = 1024;
const PAGE = BigInt(PAGE_SIZE);

export interface Vma {
  readonly start: bigint;
  readonly end: bigint;
  readonly pgoff: bigint;
  readonly shmid: number;
  readonly prot: number;
  readonly flags: number;
  readonly status: number;
  /** Bit n set: madvise(advice n) applies. */
  readonly madv: bigint;
}

/** vma_entry from the decoded mm image, with numbers normalized. */
export function vmaOf(e: Record<string, unknown>): Vma {
  return {
    start: BigInt(e['start'] as bigint),
    end: BigInt(e['end'] as bigint),
    pgoff: BigInt((e['pgoff'] as bigint | undefined) ?? 0n),
    shmid: Number(e['shmid'] ?? 0),
    prot: Number(e['prot'] ?? 0),
    flags: Number(e['flags'] ?? 0),
    status: Number(e['status'] ?? 0) >>> 0,
    madv: BigInt((e['madv'] as bigint | number | undefined) ?? 0),
  };
}

export function hex(n: bigint): string {
  return `0x${n.toString(16)}`;
}

/** The kernel makes these itself (vdso, vvar) or they cannot be mapped (vsyscall). */
export function isKernelMade(vma: Vma): boolean {
  return (vma.status & (VMA_AREA_VSYSCALL | VMA_AREA_VDSO | VMA_AREA_VVAR)) !== 0;
}

/** Kinds of VMA this restorer does not map yet: a clear refusal beats a wrong address space. */
export function unsupportedReason(vma: Vma): string | undefined {
  if (vma.status & VMA_UNSUPP) return 'marked unsupported by the dumper';
  if (vma.status & VMA_AREA_SOCKET) return 'a packet socket ring';
  return undefined;
}

/** The start of the first of the image's vvar/vdso VMAs: where ARCH_MAP_VDSO_64 must map them (trap 4). */
export function vdsoBase(vmas: readonly Vma[]): bigint | undefined {
  const kernel = vmas.filter((v) => v.status & (VMA_AREA_VVAR | VMA_AREA_VDSO));
  if (kernel.length === 0) return undefined;
  return kernel.reduce((lo, v) => (v.start < lo ? v.start : lo), kernel[0]!.start);
}

const EINVAL = 22;

/** The end of user space with 4-level paging (TASK_SIZE: 47 bits less a guard page). */
const USER_END = 0x7ffffffff000n;
/** The end with 5-level paging (LA57), for mappings a program asked to have above 47 bits. */
const USER_END_LA57 = 0xfffffffffff000n;

/**
 * Ranges to munmap for the helper's mappings: the whole user address space but the scratch area
 * (the kernel's [vsyscall] lies above it and cannot go anyway), in calls on each side of the
 * scratch area. munmap over holes is no error, so the helper's maps need not be read (~100 us a
 * task); one call over its ~30 mappings also flushes the TLB once. The part past 47 bits is
 * EINVAL on a kernel without 5-level paging, where nothing can be mapped there: `tolerate`.
 */
export function helperRangesToUnmap(scratch: { start: bigint; end: bigint }): Array<{ start: bigint; end: bigint; tolerate?: number[] }> {
  return [
    ...(scratch.start > 0n ? [{ start: 0n, end: scratch.start }] : []),
    { start: scratch.end, end: USER_END },
    { start: USER_END, end: USER_END_LA57, tolerate: [EINVAL] },
  ];
}

/** /proc/PID/maps lines as ranges with their names. */
export function parseMaps(text: string): Array<{ start: bigint; end: bigint; name: string }> {
  return text
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const fields = line.split(/\s+/);
      const [start, end] = fields[0]!.split('-');
      return { start: BigInt(`0x${start}`), end: BigInt(`0x${end}`), name: fields.slice(5).join(' ') };
    });
}

export interface PageRun {
  readonly start: bigint;
  readonly end: bigint;
  /** Offset of the first byte in pages-N.img. */
  readonly fileOffset: number;
}

/** VMAs ordered by start; the dumped ones never overlap, so their ends are ordered too. */
export function byStart<T extends { readonly start: bigint }>(vmas: readonly T[]): T[] {
  return [...vmas].sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
}

/**
 * Index in `sorted` (byStart) of the first VMA ending after `addr`: a binary search, so runs and
 * VMAs meet in O((runs + vmas) log vmas). Thousands of threads mean thousands of stack VMAs and
 * runs; the scan of every VMA per run cost 12 s at 10,000 threads.
 */
export function firstEndingAfter(sorted: ReadonlyArray<{ readonly end: bigint }>, addr: bigint): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid]!.end > addr) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

/** The VMA of `sorted` (byStart) that holds all of [start, end), if one does. */
export function vmaHolding<T extends { readonly start: bigint; readonly end: bigint }>(sorted: readonly T[], start: bigint, end: bigint): T | undefined {
  const v = sorted[firstEndingAfter(sorted, start)];
  return v !== undefined && v.start <= start && end <= v.end ? v : undefined;
}

/** PRESENT runs clipped to the VMAs that are mapped (pages of kernel-made areas are skipped). */
export function presentRuns(runs: readonly PagemapRun[], mapped: readonly Vma[]): PageRun[] {
  const vmas = byStart(mapped);
  const out: PageRun[] = [];
  for (const run of runs) {
    if (!(run.flags & PE_PRESENT)) continue;
    const start = run.vaddr;
    const end = run.vaddr + BigInt(run.nrPages) * PAGE;
    for (let i = firstEndingAfter(vmas, start); i < vmas.length && vmas[i]!.start < end; i++) {
      const v = vmas[i]!;
      const s = start > v.start ? start : v.start;
      const e = end < v.end ? end : v.end;
      if (s >= e) continue;
      out.push({ start: s, end: e, fileOffset: run.pagesOffset + Number(s - start) });
    }
  }
  return out;
}

/** Whether a VMA receives dumped pages (it is mapped writable until they are in). */
export function vmasWithPages(vmas: readonly Vma[], runs: readonly PageRun[]): Set<Vma> {
  const sorted = byStart(vmas);
  const out = new Set<Vma>();
  for (const r of runs) {
    for (let i = firstEndingAfter(sorted, r.start); i < sorted.length && sorted[i]!.start < r.end; i++) out.add(sorted[i]!);
  }
  return out;
}

// Commands' purposes, made from their args (start, length, ...) only when one fails.
type Args = readonly (number | bigint)[];
const rangeOf = (args: Args) => `${hex(BigInt(args[0]!))}-${hex(BigInt(args[0]!) + BigInt(args[1]!))}`;
const MAP_VMA = (args: Args) => `map VMA ${rangeOf(args)}`;
const PROTECT_AS_MAPPED = { what: (args: Args) => `protect VMA ${rangeOf(args)} as mapped` };
const PROTECT = { what: (args: Args) => `protect VMA ${rangeOf(args)}` };
const LOCK = { what: (args: Args) => `mlock VMA ${rangeOf(args)}` };
const POPULATE = { what: (args: Args) => `populate ${rangeOf(args)}` };
const ADVISE = { what: (args: Args) => `madvise(${args[2]}) on ${rangeOf(args)}` };

const SHM_RDONLY = 0o10000;
const SHM_REMAP = 0o40000;
const SHM_EXEC = 0o100000;
const PROT_EXEC = 4;

/**
 * mmap for one VMA: `fd` is the pre-opened file of a file-backed VMA. A SysV shm VMA is its
 * segment (`shmid`, restored with the tree's IPC namespace) attached whole at its address.
 */
export function addMmap(batch: RemoteBatch, vma: Vma, options: { fd?: number; writable: boolean }): void {
  const prot = vma.prot | (options.writable ? PROT_WRITE : 0);
  if (vma.status & VMA_AREA_SYSVIPC) {
    const shmflg = SHM_REMAP | (prot & PROT_WRITE ? 0 : SHM_RDONLY) | (prot & PROT_EXEC ? SHM_EXEC : 0);
    batch.call(SYS.shmat, [vma.shmid, vma.start, shmflg], { what: () => `attach SysV shm ${vma.shmid} at ${hex(vma.start)}`, expect: vma.start });
    return;
  }
  // Shared anonymous memory comes as the fd of its restored object (src/resources/shmem.ts).
  const fileBacked = (vma.status & (VMA_FILE_PRIVATE | VMA_FILE_SHARED)) !== 0 || ((vma.status & VMA_ANON_SHARED) !== 0 && options.fd !== undefined);
  let flags = (vma.flags & MAP_KEEP) | MAP_FIXED;
  if (vma.status & VMA_ANON_SHARED) flags = (flags & ~MAP_PRIVATE) | MAP_SHARED | MAP_ANONYMOUS;
  // An AIO ring's pages wait in private memory until the aio kind moves a new ring over them.
  if (vma.status & VMA_AREA_AIORING) flags = (flags & ~MAP_SHARED) | MAP_PRIVATE | MAP_ANONYMOUS;
  if (fileBacked) {
    if (options.fd === undefined) throw new Error(`${MAP_VMA([vma.start, vma.end - vma.start])}: no pre-opened fd for file id ${vma.shmid}`);
    batch.call(SYS.mmap, [vma.start, vma.end - vma.start, prot, flags & ~MAP_ANONYMOUS, options.fd, vma.pgoff], { what: MAP_VMA, expect: vma.start });
  } else {
    batch.call(SYS.mmap, [vma.start, vma.end - vma.start, prot, flags | MAP_ANONYMOUS, -1, 0], { what: MAP_VMA, expect: vma.start });
  }
}

/** The protection a VMA is mapped with: its own, widened to writable while pages go in. */
function mapProt(vma: Vma, writable: boolean): number {
  return vma.prot | (writable ? PROT_WRITE : 0);
}

/** Private anonymous, not a stack: one mmap may make several such VMAs (see addMappings). */
function plainAnonymous(vma: Vma, fd: number | undefined): boolean {
  return fd === undefined && (vma.status & (VMA_FILE_PRIVATE | VMA_FILE_SHARED | VMA_ANON_SHARED | VMA_AREA_SYSVIPC | VMA_AREA_AIORING)) === 0 && (vma.flags & MAP_GROWSDOWN) === 0;
}

/**
 * mmap and madvise for every VMA. A run of adjacent private anonymous VMAs alike but for their
 * protection (thread stacks and their guard pages: 20,000 VMAs for 10,000 threads) is one mmap
 * and one madvise over the whole run, then an mprotect for each VMA whose protection differs
 * from the first's: the kernel splits the mapping at exactly those boundaries, since
 * neighbours with different protections never merge; half the syscalls of one mmap and one
 * madvise per VMA. `fdOf` gives the pre-opened fd of a file-backed VMA.
 */
export function addMappings(batch: RemoteBatch, vmas: readonly Vma[], options: { fdOf: (vma: Vma) => number | undefined; writable: (vma: Vma) => boolean }): void {
  const sorted = byStart(vmas);
  const joins = (a: Vma, b: Vma) =>
    b.start === a.end && a.flags === b.flags && a.status === b.status && a.madv === b.madv &&
    mapProt(a, options.writable(a)) !== mapProt(b, options.writable(b)) && plainAnonymous(b, options.fdOf(b));
  for (let i = 0; i < sorted.length; ) {
    const first = sorted[i]!;
    const fd = options.fdOf(first);
    let j = i + 1;
    if (plainAnonymous(first, fd)) while (j < sorted.length && joins(sorted[j - 1]!, sorted[j]!)) j++;
    if (j === i + 1) {
      addMmap(batch, first, { writable: options.writable(first), ...(fd !== undefined ? { fd } : {}) });
      addAdvice(batch, first);
      i = j;
      continue;
    }
    // Mapped as its first VMA that is not writable, if one is: the kernel charges a private
    // writable mapping's whole size against the commit limit, and a run may hold terabytes of
    // PROT_NONE reservations (a browser's heaps) the task never had charged; mprotect charges
    // just the parts it makes writable.
    const run = sorted.slice(i, j);
    const readOnly = run.find((v) => !(mapProt(v, options.writable(v)) & PROT_WRITE));
    const base = readOnly ?? first;
    const whole: Vma = { ...first, end: sorted[j - 1]!.end, prot: base.prot };
    const prot = mapProt(base, options.writable(base));
    addMmap(batch, whole, { writable: options.writable(base) });
    addAdvice(batch, whole);
    for (const v of run) {
      const own = mapProt(v, options.writable(v));
      if (own !== prot) batch.call(SYS.mprotect, [v.start, v.end - v.start, own], PROTECT_AS_MAPPED);
    }
    i = j;
  }
}

/**
 * How fresh anonymous pages get their bytes. 'fault': preadv faults each page in as it copies
 * (the zeroed page is still in cache when the copy overwrites it). 'populate':
 * MADV_POPULATE_WRITE over every run first, so the preadv copies without faults. 'uffd': large
 * fills of private anonymous VMAs by UFFDIO_COPY (src/restore/remote-uffd.ts: no zeroing, no
 * fault per page), the rest as 'fault'. Kernel notes 14 measured populate 5x faster than fault
 * on a fresh VM; on this VM now fault beats populate by 15-40% and uffd beats fault by about
 * 40% (docs/PERFORMANCE.md). CRR_FILL=populate|fault|uffd overrides the default.
 */
export type FillMode = 'fault' | 'populate' | 'uffd';
export function defaultFill(): FillMode {
  const mode = process.env['CRR_FILL'];
  return mode === 'populate' || mode === 'fault' ? mode : 'uffd';
}

/** MADV_POPULATE_WRITE over every run, so the preadv that follows copies without faulting (kernel notes 14). */
export function addPopulate(batch: RemoteBatch, runs: readonly PageRun[]): void {
  for (const r of mergeAdjacent(runs)) {
    batch.call(SYS.madvise, [r.start, r.end - r.start, MADV_POPULATE_WRITE], POPULATE);
  }
}

function mergeAdjacent(runs: readonly PageRun[]): PageRun[] {
  const out: PageRun[] = [];
  for (const r of runs) {
    const last = out[out.length - 1];
    if (last && last.end === r.start) out[out.length - 1] = { ...last, end: r.end };
    else out.push(r);
  }
  return out;
}

/**
 * The most bytes one preadv is asked for: the kernel stops a read at MAX_RW_COUNT (2 GiB less a
 * page) and a short read would fail the call's exact-count check, so 4 GiB needs several calls.
 */
export const MAX_READ_BYTES = 1 << 30;

/** Runs cut so that none is longer than `max` bytes (the file offset follows each cut). */
function cutRuns(runs: readonly PageRun[], max: number): PageRun[] {
  const out: PageRun[] = [];
  const step = BigInt(max);
  for (const r of runs) {
    for (let s = r.start; s < r.end; s += step) {
      const e = r.end - s > step ? s + step : r.end;
      out.push({ start: s, end: e, fileOffset: r.fileOffset + Number(s - r.start) });
    }
  }
  return out;
}

/**
 * preadv calls that fill every run: consecutive runs (next file offset follows on) share one call,
 * up to IOV_MAX iovecs and MAX_READ_BYTES each; the iovec arrays go in the batch's data area.
 */
export function addPageReads(batch: RemoteBatch, runs: readonly PageRun[], pagesFd: number, maxBytes = MAX_READ_BYTES): { calls: number; bytes: number } {
  const groups: PageRun[][] = [];
  let groupBytes = 0;
  for (const r of cutRuns(runs, maxBytes)) {
    const group = groups[groups.length - 1];
    const last = group?.[group.length - 1];
    const len = Number(r.end - r.start);
    const follows = last !== undefined && last.fileOffset + Number(last.end - last.start) === r.fileOffset;
    if (group && follows && group.length < IOV_MAX && groupBytes + len <= maxBytes) {
      group.push(r);
      groupBytes += len;
    } else {
      groups.push([r]);
      groupBytes = len;
    }
  }
  let bytes = 0;
  for (const group of groups) {
    const iov = Buffer.alloc(group.length * 16);
    let total = 0n;
    const view = new DataView(iov.buffer, iov.byteOffset, iov.byteLength);
    group.forEach((r, i) => {
      const len = r.end - r.start;
      setU64(view, i * 16, r.start);
      setU64(view, i * 16 + 8, len);
      total += len;
    });
    batch.reserve(iov.length, 1);
    const at = batch.put(iov);
    const first = group[0]!;
    batch.call(SYS.preadv, [pagesFd, at, group.length, first.fileOffset, 0], {
      what: () => `read ${total} bytes of pages at file offset ${first.fileOffset} into ${group.length} ranges from ${hex(first.start)}`,
      expect: total,
    });
    bytes += Number(total);
  }
  return { calls: groups.length, bytes };
}

/** Fills every run from pages-N.img by preadv, the `mode` way (see FillMode). */
export function addFill(batch: RemoteBatch, runs: readonly PageRun[], pagesFd: number, mode: Exclude<FillMode, 'uffd'> = 'fault'): { calls: number; bytes: number } {
  if (mode === 'populate') addPopulate(batch, runs);
  return addPageReads(batch, runs, pagesFd);
}

export type ThpMode = 'always' | 'madvise' | 'never';
let thpModeRead: ThpMode | undefined;

/** The system's transparent huge page mode, the bracketed word of its sysfs file (read once). */
export function thpMode(): ThpMode {
  if (thpModeRead === undefined) {
    let chosen: string | undefined;
    try {
      chosen = /\[(\w+)\]/.exec(readFileSync('/sys/kernel/mm/transparent_hugepage/enabled', 'utf8'))?.[1];
    } catch {
      chosen = undefined; // no THP in this kernel
    }
    thpModeRead = chosen === 'always' || chosen === 'madvise' ? chosen : 'never';
  }
  return thpModeRead;
}

/**
 * The private anonymous VMAs whose faults get transparent huge pages: advised MADV_HUGEPAGE, or
 * under THP 'always' not advised MADV_NOHUGEPAGE. UFFDIO_COPY, which installs 4 KiB pages,
 * never fills them: the preadv's faults after the advice take huge pages (populating them first
 * was slower, docs/PERFORMANCE.md "Thirteenth pass").
 */
export function hugePageVmas(vmas: readonly Vma[], mode: ThpMode = thpMode()): Vma[] {
  if (mode === 'never') return [];
  const advised = (v: Vma, advice: number) => ((v.madv >> BigInt(advice)) & 1n) === 1n;
  return vmas.filter((v) => v.status & VMA_ANON_PRIVATE && (mode === 'always' ? !advised(v, MADV_NOHUGEPAGE) : advised(v, MADV_HUGEPAGE)));
}

/**
 * The VMA's madvise flags. They go right after the mmap, before any page lands: MADV_HUGEPAGE
 * only gives huge pages to faults that come after it (set after the fill, the dumped hugepage
 * VMA would be filled with 4 KiB pages), and every advice kept in VmFlags is a VMA property
 * that does not care whether pages are present.
 */
export function addAdvice(batch: RemoteBatch, vma: Vma): void {
  // Most VMAs have none; 64 bigint tests per VMA were half a second at 20,000 VMAs.
  if (vma.madv === 0n) return;
  const len = vma.end - vma.start;
  const low = Number(vma.madv & 0xffffffffn);
  const high = Number(vma.madv >> 32n);
  for (let advice = 0; advice < 64; advice++) {
    const word = advice < 32 ? low : high;
    if (!((word >>> (advice & 31)) & 1)) continue;
    batch.call(SYS.madvise, [vma.start, len, BigInt(advice)], ADVISE);
  }
}

/**
 * mprotect back to the dumped protection where it was widened for the fill; an mlock()ed VMA
 * locked again once its pages are in (mapped MAP_LOCKED, it would be filled with zero pages first).
 */
export function addFinalProtection(batch: RemoteBatch, vma: Vma, widened: boolean): void {
  if (widened) batch.call(SYS.mprotect, [vma.start, vma.end - vma.start, vma.prot], PROTECT);
  if (vma.flags & MAP_LOCKED) batch.call(SYS.mlock, [vma.start, vma.end - vma.start], LOCK);
}
