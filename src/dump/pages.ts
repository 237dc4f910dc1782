// pagemap-PID.img + pages-N.img: which pages of which VMAs are dumped (present or swapped, not
// the zero page, not clean file pages), grouped in runs with CRIU's flags, then the page data
// read with process_vm_readv in large chunks while the previous chunk is being written.
import { openSync, readSync, closeSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { native } from '../actors/native.js';
import { toNativeError } from '../actors/tracer.js';
import { ProcError } from './proc.js';
import { VMA, type DumpVma } from './mm.js';
import type { Entry } from './ids.js';

export const PE = { PARENT: 1, LAZY: 2, PRESENT: 4 } as const;
export const PAGE_SIZE = 4096;
const PAGE = 4096n;

const PM_PRESENT = 1n << 63n;
const PM_SWAP = 1n << 62n;
const PM_FILE = 1n << 61n;
const PM_PFN_MASK = (1n << 55n) - 1n;

const MAP_ANONYMOUS = 0x20;
const MAP_PRIVATE = 0x2;
const MAP_LOCKED = 0x2000;

/** A run of pages with the same flags, as in pagemap-PID.img. */
export interface PageRun {
  vaddr: bigint;
  nrPages: number;
  flags: number;
}

/** A VMA every page of which is dumped, present or not (CRIU: the vdso and AIO rings). */
function dumpedWhole(v: DumpVma): boolean {
  return (v.status & (VMA.VDSO | VMA.AIORING)) !== 0;
}

/** Whether a VMA's private pages are dumped at all (CRIU: private, not vvar, regular; the vdso and AIO rings whole). */
export function vmaIsDumped(v: DumpVma): boolean {
  if (dumpedWhole(v)) return true;
  if (v.status & VMA.VVAR) return false;
  if (!(v.status & VMA.REGULAR)) return false;
  return (v.status & (VMA.ANON_PRIVATE | VMA.FILE_PRIVATE)) !== 0;
}

/** Anonymous private memory may be restored lazily (PE_LAZY), like CRIU marks it. */
export function vmaCanBeLazy(v: DumpVma): boolean {
  return (
    (v.flags & MAP_ANONYMOUS) !== 0 &&
    (v.flags & MAP_PRIVATE) !== 0 &&
    (v.flags & MAP_LOCKED) === 0 &&
    !(v.status & (VMA.VDSO | VMA.VSYSCALL))
  );
}

/** Whether one page, given its pagemap word, has content that must go into the image. */
export function pageIsDumped(v: DumpVma, pme: bigint, zeroPfn: bigint | undefined): boolean {
  if (dumpedWhole(v)) return true;
  if (v.status & VMA.FILE_PRIVATE && pme & PM_FILE) return false; // not COW-ed: the file has it
  if (!(pme & (PM_PRESENT | PM_SWAP))) return false;
  if (pme & PM_PRESENT && zeroPfn !== undefined && (pme & PM_PFN_MASK) === zeroPfn) return false;
  return true;
}

// The pagemap flags as bits of a word's high 32 bits (the scan reads words as u32 pairs: no
// BigInt per page). PFN = low 32 bits + the high word's low 23 bits.
const HI_PRESENT = 0x80000000;
const HI_SWAP = 0x40000000;
const HI_FILE = 0x20000000;
const HI_PFN_MASK = 0x7fffff;

/** Pagemap words read at a time: 2 MiB of words, 1 GiB of address space (a VMA may be a reservation of terabytes). */
const SCAN_PAGES = 1 << 18;

/** Builds runs from a VMA list and a function giving the pagemap words of a range. */
export function buildRuns(vmas: DumpVma[], pagemapOf: (start: bigint, pages: number) => BigUint64Array, zeroPfn?: bigint): PageRun[] {
  const runs: PageRun[] = [];
  const zeroLo = zeroPfn === undefined ? -1 : Number(zeroPfn & 0xffffffffn);
  const zeroHi = zeroPfn === undefined ? -1 : Number(zeroPfn >> 32n);
  for (const v of vmas) {
    if (!vmaIsDumped(v)) continue;
    const whole = dumpedWhole(v);
    if (!whole && v.touched === false) continue;
    const pages = Number((v.end - v.start) / PAGE);
    const flags = vmaCanBeLazy(v) ? PE.LAZY | PE.PRESENT : PE.PRESENT;
    const filePrivate = (v.status & VMA.FILE_PRIVATE) !== 0;
    // Runs are built in page indices and turned into addresses once each.
    let runStart = -1;
    const close = (end: number) => {
      const addr = v.start + BigInt(runStart) * PAGE;
      const last = runs[runs.length - 1];
      if (last && last.flags === flags && last.vaddr + BigInt(last.nrPages) * PAGE === addr) last.nrPages += end - runStart;
      else runs.push({ vaddr: addr, nrPages: end - runStart, flags });
      runStart = -1;
    };
    for (let base = 0; base < pages; base += SCAN_PAGES) {
      const n = Math.min(SCAN_PAGES, pages - base);
      const words = whole ? undefined : pagemapOf(v.start + BigInt(base) * PAGE, n);
      const w32 = words && new Uint32Array(words.buffer, words.byteOffset, n * 2);
      for (let j = 0; j < n; j++) {
        let dumped: boolean;
        if (!w32) dumped = true;
        else {
          const hi = w32[2 * j + 1]!;
          if (filePrivate && hi & HI_FILE) dumped = false; // not COW-ed: the file has it
          else if (!(hi & (HI_PRESENT | HI_SWAP))) dumped = false;
          else dumped = !(hi & HI_PRESENT && w32[2 * j] === zeroLo && (hi & HI_PFN_MASK) === zeroHi);
        }
        if (dumped) {
          if (runStart < 0) runStart = base + j;
        } else if (runStart >= 0) close(base + j);
      }
    }
    if (runStart >= 0) close(pages);
  }
  return runs;
}

/** Reads /proc/PID/pagemap words for a range (root sees PFNs, needed for the zero-page test). */
export function pagemapReader(pid: number): { read: (start: bigint, pages: number) => BigUint64Array; close: () => void } {
  let fd: number;
  try {
    fd = openSync(`/proc/${pid}/pagemap`, 'r');
  } catch (e) {
    throw new ProcError(pid, 'pagemap', e);
  }
  let buf = Buffer.alloc(0);
  return {
    // One slice per call, in a buffer kept between calls (the caller uses the words at once).
    read(start, pages) {
      if (buf.length < pages * 8) buf = Buffer.alloc(Math.max(pages * 8, 1 << 16));
      let done = 0;
      while (done < pages * 8) {
        const n = readSync(fd, buf, done, pages * 8 - done, Number((start / PAGE) * 8n) + done);
        if (n <= 0) break;
        done += n;
      }
      return new BigUint64Array(buf.buffer, buf.byteOffset, pages);
    },
    close: () => closeSync(fd),
  };
}

export function pagemapEntries(pagesId: number, runs: PageRun[]): Entry[] {
  return [{ pages_id: pagesId }, ...runs.map((r) => ({ vaddr: r.vaddr, nr_pages: r.nrPages, flags: r.flags }))];
}

/** Reads `len` bytes at each iovec of the task into one buffer. */
export type MemoryReader = (iovs: Array<{ addr: bigint; len: number }>) => Buffer | Promise<Buffer>;

/** Splits runs into chunks of at most `chunkBytes`, each a list of iovecs. */
export function chunkRuns(runs: PageRun[], chunkBytes: number): Array<Array<{ addr: bigint; len: number }>> {
  const chunks: Array<Array<{ addr: bigint; len: number }>> = [];
  let cur: Array<{ addr: bigint; len: number }> = [];
  let curLen = 0;
  for (const r of runs) {
    let addr = r.vaddr;
    let left = r.nrPages * PAGE_SIZE;
    while (left > 0) {
      const take = Math.min(left, chunkBytes - curLen);
      cur.push({ addr, len: take });
      curLen += take;
      addr += BigInt(take);
      left -= take;
      if (curLen === chunkBytes) {
        chunks.push(cur);
        cur = [];
        curLen = 0;
      }
    }
  }
  if (cur.length) chunks.push(cur);
  return chunks;
}

/** Reads the iovecs' bytes back to back into `buf` from its start; returns the byte count. */
export type MemoryReaderInto = (iovs: Array<{ addr: bigint; len: number }>, buf: Buffer) => number;

/** process_vm_readv of task `pid` into the caller's buffer (errors name the pid). */
export function readerInto(pid: number): MemoryReaderInto {
  return (iovs, buf) => {
    try {
      return native.processVmReadvInto(pid, iovs, buf);
    } catch (e) {
      throw toNativeError(e, pid);
    }
  };
}

/**
 * Chunk buffers kept between calls (one dump writes a pages file per task: a 1,000-task tree
 * allocated, faulted in and collected 1,000 fresh 4 MiB buffers, ~2 s of its 13).
 */
const sparePages: Buffer[] = [];

/**
 * An incremental dump's parent checkpoint, for one task: where it keeps each of the task's pages
 * (pieces in address order, each in one pages file open at `fd`).
 */
export interface ParentPages {
  readonly pieces: ReadonlyArray<{ readonly vaddr: bigint; readonly end: bigint; readonly fd: number; readonly offset: number }>;
}

/**
 * The pages of one chunk that its parent checkpoint holds as they are now: those go into the
 * pagemap as PE_PARENT and are not written. Returns the byte ranges of `data` to write and adds
 * the chunk's runs to `runs` (a page written keeps its flags in `dumped`, the runs being read).
 * `cursor` keeps the place in `parent.pieces` and `dumped` from chunk to chunk (addresses only grow).
 */
function dedupe(chunk: ReadonlyArray<{ addr: bigint; len: number }>, data: Buffer, parent: ParentPages, cursor: { piece: number; run: number }, dumped: readonly PageRun[], runs: PageRun[]): Array<[number, number]> {
  const keep: Array<[number, number]> = [];
  const page = (addr: bigint, present: boolean, at: number) => {
    while (dumped[cursor.run]!.vaddr + BigInt(dumped[cursor.run]!.nrPages) * PAGE <= addr) cursor.run++;
    const flags = present ? dumped[cursor.run]!.flags : PE.PARENT;
    const last = runs[runs.length - 1];
    if (last && last.flags === flags && last.vaddr + BigInt(last.nrPages) * PAGE === addr) last.nrPages++;
    else runs.push({ vaddr: addr, nrPages: 1, flags });
    if (!present) return;
    const lastKeep = keep[keep.length - 1];
    if (lastKeep && lastKeep[1] === at) lastKeep[1] += PAGE_SIZE;
    else keep.push([at, at + PAGE_SIZE]);
  };
  let at = 0;
  for (const { addr, len } of chunk) {
    for (let done = 0; done < len; ) {
      const a = addr + BigInt(done);
      const pieces = parent.pieces;
      while (cursor.piece < pieces.length && pieces[cursor.piece]!.end <= a) cursor.piece++;
      const piece = pieces[cursor.piece];
      // Pages up to the next piece (or the iovec's end) that the parent does not have.
      if (!piece || piece.vaddr > a) {
        const upTo = piece ? Math.min(len - done, Number(piece.vaddr - a)) : len - done;
        for (let o = 0; o < upTo; o += PAGE_SIZE) page(a + BigInt(o), true, at + done + o);
        done += upTo;
        continue;
      }
      const span = Math.min(len - done, Number(piece.end - a));
      const theirs = parentScratch(span);
      readExactly(piece.fd, theirs, span, piece.offset + Number(a - piece.vaddr));
      for (let o = 0; o < span; o += PAGE_SIZE) {
        const from = at + done + o;
        page(a + BigInt(o), data.compare(theirs, o, o + PAGE_SIZE, from, from + PAGE_SIZE) !== 0, from);
      }
      done += span;
    }
    at += len;
  }
  return keep;
}

let scratch = Buffer.alloc(0);
function parentScratch(bytes: number): Buffer {
  if (scratch.length < bytes) scratch = Buffer.allocUnsafeSlow(Math.max(bytes, DEFAULT_CHUNK));
  return scratch;
}

function readExactly(fd: number, buf: Buffer, length: number, position: number): void {
  for (let got = 0; got < length; ) {
    const n = readSync(fd, buf, got, length - got, position + got);
    if (n === 0) throw new Error(`the parent checkpoint's pages file ends at ${position + got}, before the pages its pagemap names`);
    got += n;
  }
}

/**
 * Writes the pages of `runs` to `path`: chunks are read on this thread while up to `depth`
 * earlier chunks are being written by libuv's threads at their own file positions (a positional
 * write needs no ordering). With `{ into }` the chunks are read into `depth + 1` buffers used
 * in turn and kept for the next call, so 1 GiB costs no allocation, zero-fill or GC per chunk.
 * With `parent` (an incremental dump) a page its parent holds unchanged is not written, and the
 * runs resolved are the pagemap's (PE_PARENT for those). Resolves once every chunk has been read
 * (the task's memory is not needed any more) with the byte count, the runs and `flushed`, which
 * settles when the last write and the close have.
 */
export async function startPagesWrite(
  path: string,
  runs: PageRun[],
  read: MemoryReader | { into: MemoryReaderInto },
  options: { chunkBytes?: number; depth?: number; parent?: ParentPages } = {},
): Promise<{ bytes: number; runs: PageRun[]; flushed: Promise<void> }> {
  const { chunkBytes = DEFAULT_CHUNK, depth = DEFAULT_DEPTH, parent } = options;
  const fh = await open(path, 'w');
  let written = 0;
  const inFlight = new Set<Promise<unknown>>();
  const free: Buffer[] = [];
  let allocated = 0;
  const resolved: PageRun[] = [];
  const cursor = { piece: 0, run: 0 };
  const finish = async () => {
    await Promise.allSettled(inFlight);
    await fh.close();
    sparePages.push(...free.splice(0, DEFAULT_DEPTH + 1 - sparePages.length));
  };
  // Writes data's ranges to be written at the file's end; `done` runs when they are in.
  const put = (chunk: Array<{ addr: bigint; len: number }>, data: Buffer, done?: () => void) => {
    const ranges = parent ? dedupe(chunk, data, parent, cursor, runs, resolved) : [[0, data.length] as [number, number]];
    const writes = ranges.map(([from, to]) => {
      const w = fh.write(data, from, to - from, written);
      written += to - from;
      return w;
    });
    const p: Promise<unknown> = Promise.all(writes).finally(() => {
      inFlight.delete(p);
      done?.();
    });
    inFlight.add(p);
  };
  try {
    for (const chunk of chunkRuns(runs, chunkBytes)) {
      if (typeof read === 'function') {
        const data = await read(chunk);
        while (inFlight.size >= depth) await Promise.race(inFlight);
        put(chunk, data);
        continue;
      }
      while (free.length === 0 && allocated > depth) await Promise.race(inFlight);
      let buf = free.pop();
      if (!buf) {
        const spare = sparePages.pop();
        buf = spare && spare.length === chunkBytes ? spare : Buffer.allocUnsafeSlow(chunkBytes);
        allocated++;
      }
      const n = read.into(chunk, buf);
      const own = buf;
      put(chunk, buf.subarray(0, n), () => free.push(own));
    }
  } catch (err) {
    await finish();
    throw err;
  }
  const flushed = Promise.all(inFlight).then(finish, async (err: unknown) => {
    await finish();
    throw err;
  });
  return { bytes: written, runs: parent ? resolved : runs, flushed };
}

/** startPagesWrite to its end: the bytes written. */
export async function writePages(
  path: string,
  runs: PageRun[],
  read: MemoryReader | { into: MemoryReaderInto },
  chunkBytes = DEFAULT_CHUNK,
  depth = DEFAULT_DEPTH,
): Promise<number> {
  const { bytes, flushed } = await startPagesWrite(path, runs, read, { chunkBytes, depth });
  await flushed;
  return bytes;
}

export const DEFAULT_CHUNK = Number(process.env.CRR_DUMP_CHUNK ?? 4 << 20);
export const DEFAULT_DEPTH = Number(process.env.CRR_DUMP_DEPTH ?? 2);
