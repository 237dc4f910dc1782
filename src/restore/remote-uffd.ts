// Filling private anonymous memory with UFFDIO_COPY instead of preadv: the task maps pages-N.img
// read-only, registers its anonymous VMAs with a userfaultfd and copies each run from the file
// mapping into place. The kernel then allocates each page and copies into it without zeroing it
// first and without a page fault per page, which measured 1.4x the speed of preadv into fresh
// memory on this machine kind (docs/PERFORMANCE.md). Two batches: the first opens the
// userfaultfd and maps the file (their results, an fd and an address, are arguments of the
// second); the second copies and takes everything down again. Any refusal (no userfaultfd in
// this kernel, a VMA it will not register) leaves the caller to fall back to preadv.
import { PAGE_SIZE } from '../images/index.js';
import { RemoteBatch } from './remote.js';
import { MAP_GROWSDOWN, MAP_LOCKED, MAP_PRIVATE, O_CLOEXEC, PROT_READ, SYS } from './remote-sys.js';
import { byStart, hex, hugePageVmas, thpMode, VMA_ANON_PRIVATE, vmaHolding, type PageRun, type ThpMode, type Vma } from './remote-vma.js';

export const SYS_USERFAULTFD = 323;
export const SYS_IOCTL = 16;
/** Only faults from user mode go to the userfaultfd: allowed without privileges. */
const UFFD_USER_MODE_ONLY = 1;
export const UFFD_API = 0xaan;
export const UFFDIO_API = 0xc018aa3fn;
export const UFFDIO_REGISTER = 0xc020aa00n;
export const UFFDIO_UNREGISTER = 0x8010aa01n;
export const UFFDIO_COPY = 0xc028aa03n;
const UFFDIO_REGISTER_MODE_MISSING = 1n;
/** Nobody waits on these pages: skip the wake-up of fault waiters. */
const UFFDIO_COPY_MODE_DONTWAKE = 1n;
/** The copy unit: 2 MiB measured faster than 64 MiB (the source stays in cache). */
export const UFFD_COPY_CHUNK = 2 << 20;
const ENOSYS = 38;
const EPERM = 1;
const EINVAL = 22;
const ENOMEM = 12;

/**
 * The VMAs whose pages UFFDIO_COPY may fill: private anonymous, not a growsdown stack, and not
 * getting transparent huge pages (UFFDIO_COPY installs 4 KiB pages; hugePageVmas).
 */
export function uffdVmas(vmas: readonly Vma[], thp: ThpMode = thpMode()): Vma[] {
  const huge = new Set(hugePageVmas(vmas, thp));
  // An mlock()ed VMA is locked once filled, which would bring every missing page in at once.
  return vmas.filter((v) => v.status & VMA_ANON_PRIVATE && !(v.flags & (MAP_GROWSDOWN | MAP_LOCKED)) && !huge.has(v));
}

/** Splits runs into those inside `vmas` (copied) and the rest (read with preadv). */
export function splitRuns(runs: readonly PageRun[], vmas: readonly Vma[]): { copy: PageRun[]; read: PageRun[] } {
  const sorted = byStart(vmas);
  const copy: PageRun[] = [];
  const read: PageRun[] = [];
  for (const r of runs) (vmaHolding(sorted, r.start, r.end) ? copy : read).push(r);
  return { copy, read };
}

/**
 * A VMA gets its pages by UFFDIO_COPY only from this many bytes of them on. Each copied VMA costs
 * a register and an unregister: 10,000 thread stacks of ~8.5 KiB each filled in 264-330 ms by
 * copies, 121-134 ms by preadv (docs/PERFORMANCE.md). The crossover was not measured; 1 MiB
 * keeps every large area (where the copy wins 1.4x) and sends small ones to preadv.
 */
export const UFFD_MIN_VMA_BYTES = 1 << 20;

/**
 * The VMAs of `vmas` that hold whole runs of at least `minBytes` in all, in their given order
 * (runs are clipped to VMAs).
 */
export function vmasHoldingRuns(vmas: readonly Vma[], runs: readonly PageRun[], minBytes = 1): Vma[] {
  const sorted = byStart(vmas);
  const bytes = new Map<Vma, number>();
  for (const r of runs) {
    const v = vmaHolding(sorted, r.start, r.end);
    if (v) bytes.set(v, (bytes.get(v) ?? 0) + Number(r.end - r.start));
  }
  return vmas.filter((v) => (bytes.get(v) ?? 0) >= minBytes);
}

/** Bytes of pages-N.img the copies read from: the file mapping's length. */
export function sourceLength(runs: readonly PageRun[]): bigint {
  const end = runs.reduce((n, r) => Math.max(n, r.fileOffset + Number(r.end - r.start)), 0);
  return BigInt(Math.ceil(end / PAGE_SIZE) * PAGE_SIZE);
}

/** First batch: a userfaultfd and a read-only mapping of pages-N.img wherever the kernel likes. */
export function addUffdOpen(batch: RemoteBatch, pagesFd: number, length: bigint): { uffd: number; source: number } {
  const uffd = batch.call(SYS_USERFAULTFD, [O_CLOEXEC | UFFD_USER_MODE_ONLY], { what: 'open a userfaultfd for the fill', tolerate: [ENOSYS, EPERM, EINVAL] });
  const source = batch.call(SYS.mmap, [0, length, PROT_READ, MAP_PRIVATE, pagesFd, 0], {
    what: `map ${length} bytes of pages-N.img as the copy source`,
    tolerate: [ENOMEM, EINVAL, EPERM],
  });
  return { uffd, source };
}

/**
 * Second batch: UFFDIO_API, register each VMA, UFFDIO_COPY every run in UFFD_COPY_CHUNK pieces
 * from the file mapping at `source`, unregister, close the userfaultfd, unmap the source. No
 * read-ahead advice in here: the task's one thread would wait for each submission between copies
 * (and a WILLNEED reads at most the device's read-ahead window, not the range it names); a cold
 * source is read ahead from this process instead (src/restore/prefetch.ts).
 */
export function addUffdCopies(
  batch: RemoteBatch,
  uffd: number,
  source: bigint,
  length: bigint,
  vmas: readonly Vma[],
  runs: readonly PageRun[],
): { calls: number; bytes: number } {
  addUffdRegister(batch, uffd, vmas);
  let calls = 0;
  let bytes = 0;
  for (const c of copyChunks(runs)) {
    addIoctl(batch, uffd, UFFDIO_COPY, u64s([c.dst, source + c.fileOffset, c.len, UFFDIO_COPY_MODE_DONTWAKE, 0n]), `UFFDIO_COPY ${c.len} bytes to ${hex(c.dst)}`);
    calls++;
    bytes += Number(c.len);
  }
  addUffdRelease(batch, uffd, source, length, vmas);
  return { calls, bytes };
}

/** UFFDIO_API (asking for `features`), then each VMA registered for missing-page handling: copies may follow. */
export function addUffdRegister(batch: RemoteBatch, uffd: number, vmas: readonly Vma[], features = 0n): void {
  addIoctl(batch, uffd, UFFDIO_API, u64s([UFFD_API, features, 0n]), 'UFFDIO_API');
  for (const v of vmas) addIoctl(batch, uffd, UFFDIO_REGISTER, u64s([v.start, v.end - v.start, UFFDIO_REGISTER_MODE_MISSING, 0n]), `UFFDIO_REGISTER ${hex(v.start)}-${hex(v.end)}`);
}

/** Every VMA unregistered, the userfaultfd closed and the copy source unmapped: after the last copy. */
export function addUffdRelease(batch: RemoteBatch, uffd: number, source: bigint, length: bigint, vmas: readonly Vma[]): void {
  for (const v of vmas) addIoctl(batch, uffd, UFFDIO_UNREGISTER, u64s([v.start, v.end - v.start]), `UFFDIO_UNREGISTER ${hex(v.start)}-${hex(v.end)}`);
  batch.call(SYS.close, [uffd], { what: 'close the fill userfaultfd' });
  batch.call(SYS.munmap, [source, length], { what: 'unmap the copy source' });
}

/** The runs cut into UFFD_COPY_CHUNK pieces: destination, offset in pages-N.img, length. */
export function copyChunks(runs: readonly PageRun[], chunk = BigInt(UFFD_COPY_CHUNK)): Array<{ dst: bigint; fileOffset: bigint; len: bigint }> {
  const out: Array<{ dst: bigint; fileOffset: bigint; len: bigint }> = [];
  for (const r of runs) {
    for (let dst = r.start; dst < r.end; dst += chunk) {
      out.push({ dst, fileOffset: BigInt(r.fileOffset) + (dst - r.start), len: r.end - dst < chunk ? r.end - dst : chunk });
    }
  }
  return out;
}

function addIoctl(batch: RemoteBatch, uffd: number, request: bigint, struct: Buffer, what: string): void {
  batch.reserve(struct.length, 1);
  batch.call(SYS_IOCTL, [uffd, request, batch.put(struct)], { what });
}

/** Closes/unmaps what the first batch opened when the copy is not going ahead. */
export function addUffdAbandon(batch: RemoteBatch, opened: { uffd?: number; source?: bigint; length: bigint }): void {
  if (opened.uffd !== undefined) batch.call(SYS.close, [opened.uffd], { what: 'close the unused userfaultfd' });
  if (opened.source !== undefined) batch.call(SYS.munmap, [opened.source, opened.length], { what: 'unmap the unused copy source' });
}

function u64s(values: readonly bigint[]): Buffer {
  const buf = Buffer.alloc(values.length * 8);
  values.forEach((v, i) => buf.writeBigUInt64LE(v, i * 8));
  return buf;
}
