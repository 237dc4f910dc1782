// Shared anonymous memory (MAP_SHARED|MAP_ANONYMOUS, "/dev/zero (deleted)" in maps): one shmem
// object per inode, whoever maps it and at whatever address. Like criu 4.x, its contents are
// dumped once per object into pagemap-shmem-<shmid>.img, whose runs are offsets into the object,
// and pages-<N>.img. The object is read through /proc/PID/map_files (the shmem file itself), so
// pages only another task (or an exited one) touched are found too; pages that read as zeros
// are left out: a restored object starts zero-filled.
import { closeSync, openSync, readSync, writeSync } from 'node:fs';
import { StageError } from '../errors.js';
import { VMA, type DumpVma } from './mm.js';
import { PE, PAGE_SIZE, type PageRun } from './pages.js';
import type { Entry } from './ids.js';

/** Where one shmem object can be opened from, and how large it is known to be. */
interface ShmemObject {
  shmid: bigint;
  pid: number;
  start: bigint;
  end: bigint;
  size: bigint;
  /** Where to read it when not through a mapping (a memfd's /proc/PID/fd link). */
  path?: string;
}

export interface ShmemDumped {
  shmid: bigint;
  pagesId: number;
  /** Runs with `vaddr` = offset in the object, as pagemap-shmem images hold them. */
  runs: PageRun[];
  bytes: number;
  pagesScanned: number;
}

const ZERO_PAGE = Buffer.alloc(PAGE_SIZE);
const READ_CHUNK = 8 << 20;

/** Dump-wide table of shmem objects seen in the tasks' VMAs. */
export class SharedMemory {
  private objects = new Map<bigint, ShmemObject>();

  /** Notes the shared anonymous VMAs of one task. */
  add(pid: number, vmas: DumpVma[]): void {
    for (const v of vmas) {
      if (!(v.status & VMA.ANON_SHARED)) continue;
      const shmid = v.entry.shmid as bigint;
      const size = v.offset + (v.end - v.start);
      const known = this.objects.get(shmid);
      if (!known) this.objects.set(shmid, { shmid, pid, start: v.start, end: v.end, size });
      else if (size > known.size) known.size = size;
    }
  }

  /** Notes an object read from a path (memfd inodes: src/dump/fd-memfd.ts). */
  addObject(o: { shmid: bigint; pid: number; path: string; size: bigint }): void {
    if (!this.objects.has(o.shmid)) this.objects.set(o.shmid, { ...o, start: 0n, end: 0n });
  }

  get count(): number {
    return this.objects.size;
  }

  /**
   * Writes every object's pages: `nextPagesId` numbers the pages images (one counter with the
   * tasks' pagemaps, like criu); `pagesPath` names the raw pages file of an id.
   */
  dumpAll(nextPagesId: () => number, pagesPath: (pagesId: number) => string): ShmemDumped[] {
    const out: ShmemDumped[] = [];
    for (const obj of this.objects.values()) {
      const pagesId = nextPagesId();
      const outFd = openSync(pagesPath(pagesId), 'w');
      try {
        const { runs, bytes, scanned } = readObject(obj, outFd);
        out.push({ shmid: obj.shmid, pagesId, runs, bytes, pagesScanned: scanned });
      } finally {
        closeSync(outFd);
      }
    }
    return out;
  }
}

/** Reads an object through map_files and keeps the pages that are not all zeros. */
function readObject(obj: ShmemObject, outFd: number): { runs: PageRun[]; bytes: number; scanned: number } {
  const path = obj.path ?? `/proc/${obj.pid}/map_files/${obj.start.toString(16)}-${obj.end.toString(16)}`;
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new StageError({ stage: 'collect', pid: obj.pid, syscall: 'open', errno: err.errno, code: err.code, resource: `shmem ${obj.shmid}`, message: `cannot open shared anonymous memory ${obj.shmid} through ${path}` });
  }
  const runs: PageRun[] = [];
  let bytes = 0;
  const buf = Buffer.allocUnsafe(READ_CHUNK);
  const size = Number(obj.size);
  let scanned = 0;
  try {
    for (let off = 0; off < size; off += READ_CHUNK) {
      const want = Math.min(READ_CHUNK, size - off);
      let got = 0;
      while (got < want) {
        const n = readSync(fd, buf, got, want - got, off + got);
        if (n <= 0) break;
        got += n;
      }
      // Keep the non-zero pages as runs, written out as each run ends.
      let runStart = -1;
      const flush = (endPage: number) => {
        if (runStart < 0) return;
        const last = runs[runs.length - 1];
        const vaddr = BigInt(off + runStart * PAGE_SIZE);
        const nr = endPage - runStart;
        if (last && last.vaddr + BigInt(last.nrPages * PAGE_SIZE) === vaddr) last.nrPages += nr;
        else runs.push({ vaddr, nrPages: nr, flags: PE.PRESENT });
        let done = runStart * PAGE_SIZE;
        while (done < endPage * PAGE_SIZE) done += writeSync(outFd, buf, done, endPage * PAGE_SIZE - done);
        bytes += nr * PAGE_SIZE;
        runStart = -1;
      };
      // A memfd's size need not be page-aligned: its last partial page is kept, zero-padded.
      const pages = Math.ceil(got / PAGE_SIZE);
      buf.fill(0, got, pages * PAGE_SIZE);
      for (let p = 0; p < pages; p++) {
        scanned++;
        const zero = buf.subarray(p * PAGE_SIZE, (p + 1) * PAGE_SIZE).equals(ZERO_PAGE);
        if (zero) flush(p);
        else if (runStart < 0) runStart = p;
      }
      flush(pages);
    }
  } finally {
    closeSync(fd);
  }
  return { runs, bytes, scanned };
}

export function shmemPagemapEntries(pagesId: number, runs: PageRun[]): Entry[] {
  return [{ pages_id: pagesId }, ...runs.map((r) => ({ vaddr: r.vaddr, nr_pages: r.nrPages, flags: r.flags }))];
}
