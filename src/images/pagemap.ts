// A task's dumped memory: pagemap-PID.img's runs (which pages, where, stored or not) checked
// against pages-N.img, and a reader for the page data in large slices or by fd + offset, so a
// restorer can preadv straight from the file into the task.
import { closeSync, fstatSync, lstatSync, openSync, readSync, realpathSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ImageError } from '../errors.js';
import type { Entry } from './schema.js';
import { perKey } from '../memo.js';
import { Checkpoint, num, openCheckpoint } from './checkpoint.js';

export const PAGE_SIZE = 4096;
/** Pages are in a parent checkpoint (incremental dumps). */
export const PE_PARENT = 1;
/** Pages may be restored lazily (on fault). */
export const PE_LAZY = 2;
/** Pages are stored in pages-<pages_id>.img. */
export const PE_PRESENT = 4;

export interface PagemapRun {
  vaddr: bigint;
  nrPages: number;
  flags: number;
  /** Byte offset of this run's first page in pages-N.img; only meaningful for PRESENT runs. */
  pagesOffset: number;
}

export interface Pagemap {
  pid: number;
  pagesId: number;
  /** File names inside the checkpoint directory. */
  pagemapFile: string;
  pagesFile: string;
  runs: PagemapRun[];
  /** Bytes of page data the PRESENT runs take in pages-N.img. */
  presentBytes: number;
  /** Where the PE_PARENT runs' pages are: PRESENT runs of ancestors' pages files (empty without such runs). */
  parents: readonly ParentPages[];
}

/** Pages of an incremental dump's PE_PARENT runs, found in one pages file of an ancestor checkpoint. */
export interface ParentPages {
  /** That pages-N.img's path. */
  readonly pagesPath: string;
  /** Pieces of its PRESENT runs (pagesOffset into it), each inside one of this task's PE_PARENT runs. */
  readonly runs: readonly PagemapRun[];
}

const U64_END = 1n << 64n;

function flagsOf(e: Entry, file: string): number {
  const flags = e['flags'];
  // Images from before flags existed said only whether a run was in the parent; else it was stored.
  if (flags === undefined) return e['in_parent'] === true ? PE_PARENT : PE_PRESENT;
  return num(e, 'flags', file);
}

/** nr_pages, or compat_nr_pages in images written before nr_pages existed. */
function nrPagesOf(e: Entry, file: string): number {
  return e['nr_pages'] !== undefined ? num(e, 'nr_pages', file) : num(e, 'compat_nr_pages', file);
}

function toBigint(v: unknown): bigint | undefined {
  if (typeof v === 'bigint') return v;
  if (typeof v === 'number' && Number.isSafeInteger(v)) return BigInt(v);
  return undefined;
}

function asCheckpoint(source: Checkpoint | string): Checkpoint {
  return typeof source === 'string' ? openCheckpoint(source, { validate: false }) : source;
}

/** Each checkpoint's pagemaps read so far, by pid: the load step checks one, the memory stage uses it. */
const pagemapsOf = perKey((_checkpoint: Checkpoint) => new Map<number, Pagemap>());

/**
 * Reads and checks a task's pagemap: aligned, non-overlapping runs whose pages fit in pages-N.img.
 * Read once per open checkpoint (10,000 threads' stacks are ~20,000 runs); the result and its
 * list of runs are frozen.
 */
export function readPagemap(source: Checkpoint | string, pid: number): Pagemap {
  const checkpoint = asCheckpoint(source);
  const known = pagemapsOf(checkpoint);
  let pagemap = known.get(pid);
  if (!pagemap) known.set(pid, (pagemap = decodePagemap(checkpoint, pid)));
  return pagemap;
}

function decodePagemap(checkpoint: Checkpoint, pid: number): Pagemap {
  const image = checkpoint.pagemapImage(pid);
  const file = image.path;
  const entries = [...image.entries()];
  if (!entries.length) throw new ImageError(file, image.entriesOffset, 'a pagemap head entry', 'the image is empty');
  const pagesId = num(entries[0]!.decode(), 'pages_id', file);
  const pagesFile = `pages-${pagesId}.img`;
  const runs: PagemapRun[] = [];
  let offset = 0;
  for (const lazy of entries.slice(1)) {
    const e = lazy.decode();
    const vaddr = toBigint(e['vaddr']);
    if (vaddr === undefined) throw new ImageError(file, lazy.offset, 'a 64-bit vaddr', `found ${String(e['vaddr'])}`);
    const nrPages = nrPagesOf(e, file);
    const flags = flagsOf(e, file);
    if (vaddr % BigInt(PAGE_SIZE) !== 0n) {
      throw new ImageError(file, lazy.offset, 'a page-aligned vaddr', `found 0x${vaddr.toString(16)}`);
    }
    if (vaddr + BigInt(nrPages) * BigInt(PAGE_SIZE) > U64_END) {
      throw new ImageError(file, lazy.offset, 'a run inside the address space', `${nrPages} pages at 0x${vaddr.toString(16)}`);
    }
    runs.push({ vaddr, nrPages, flags, pagesOffset: offset });
    if (flags & PE_PRESENT) {
      offset += nrPages * PAGE_SIZE;
      if (!Number.isSafeInteger(offset)) throw new ImageError(file, lazy.offset, 'a plausible page count', `${nrPages} pages`);
    }
  }
  checkOverlaps(file, runs);
  for (const run of runs) {
    if (!(run.flags & (PE_PRESENT | PE_PARENT))) throw new ImageError(file, 0, 'pages stored here or in a parent checkpoint', `the run at 0x${run.vaddr.toString(16)} has flags ${run.flags}${run.flags & PE_LAZY ? ' (lazy pages, criu --lazy-pages: not supported)' : ''}`);
  }
  const parents = parentPagesOf(checkpoint, pid, runs.filter((r) => r.flags & PE_PARENT), file);
  const pages = pagesSize(checkpoint, pagesFile);
  if (offset > pages) {
    throw new ImageError(
      file,
      image.size,
      `PRESENT runs that fit in ${checkpoint.path(pagesFile)}`,
      `they need ${offset} bytes, it holds ${pages}`,
    );
  }
  return Object.freeze({ pid, pagesId, pagemapFile: `pagemap-${pid}.img`, pagesFile, runs: Object.freeze(runs) as PagemapRun[], presentBytes: offset, parents });
}

/** The checkpoint a checkpoint's "parent" link names (opened once: every task asks), or why there is none. */
const parentOf = perKey((checkpoint: Checkpoint): Checkpoint | Error => {
  const link = join(checkpoint.dir, 'parent');
  try {
    return openCheckpoint(realpathSync(link), { validate: false });
  } catch (err) {
    return new Error(`${link}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
});

/** Whether the checkpoint is an incremental dump's, with a "parent" link (asked once per checkpoint). */
export const hasParentCheckpoint = perKey((checkpoint: Checkpoint): boolean => {
  try {
    lstatSync(join(checkpoint.dir, 'parent'));
    return true;
  } catch {
    return false;
  }
});

/**
 * Where a checkpoint keeps each page of a task's pagemap: its pages file's PRESENT runs and the
 * pieces its parents keep, each with the pages file holding it, in address order (they tile
 * without overlap).
 */
export function pageSources(checkpoint: Checkpoint, pagemap: Pagemap): Array<{ pagesPath: string; run: PagemapRun }> {
  const own = checkpoint.path(pagemap.pagesFile);
  return [
    ...pagemap.runs.filter((r) => r.flags & PE_PRESENT).map((run) => ({ pagesPath: own, run })),
    ...pagemap.parents.flatMap((p) => p.runs.map((run) => ({ pagesPath: p.pagesPath, run }))),
  ].sort((a, b) => (a.run.vaddr < b.run.vaddr ? -1 : a.run.vaddr > b.run.vaddr ? 1 : 0));
}

/** Checkpoint directories whose parents are being resolved: a chain that comes back is refused. */
const resolving = new Set<string>();

/**
 * An incremental dump (CRIU's dump --prev-images-dir) keeps unchanged pages in its parent
 * checkpoint, the directory its "parent" link names: the pieces of the parent's PRESENT runs, or
 * of its own parents', that cover `wanted`. Any page found nowhere is an ImageError.
 */
function parentPagesOf(checkpoint: Checkpoint, pid: number, wanted: readonly PagemapRun[], file: string): ParentPages[] {
  if (!wanted.length) return [];
  const ancestor = parentOf(checkpoint);
  if (ancestor instanceof Error) throw new ImageError(file, 0, 'a parent checkpoint (the "parent" link of an incremental dump) for its PE_PARENT runs', ancestor.message);
  const dir = ancestor.dir;
  if (resolving.has(dir)) throw new ImageError(file, 0, 'a chain of parent checkpoints that ends', `${dir} comes back in it`);
  resolving.add(dir);
  let parent: Pagemap;
  try {
    parent = readPagemap(ancestor, pid);
  } finally {
    resolving.delete(dir);
  }
  const sources = pageSources(ancestor, parent);
  const byFile = new Map<string, PagemapRun[]>();
  const page = BigInt(PAGE_SIZE);
  for (const want of wanted) {
    let at = want.vaddr;
    const end = want.vaddr + BigInt(want.nrPages) * page;
    // The first source ending after `at` (they tile without overlap, in address order).
    let lo = 0;
    for (let hi = sources.length; lo < hi; ) {
      const mid = (lo + hi) >>> 1;
      const r = sources[mid]!.run;
      if (r.vaddr + BigInt(r.nrPages) * page > at) hi = mid;
      else lo = mid + 1;
    }
    for (let i = lo; i < sources.length; i++) {
      const { pagesPath, run } = sources[i]!;
      const runEnd = run.vaddr + BigInt(run.nrPages) * page;
      if (run.vaddr > at) break; // a hole before this run
      const pieceEnd = runEnd < end ? runEnd : end;
      const list = byFile.get(pagesPath) ?? [];
      list.push({ vaddr: at, nrPages: Number((pieceEnd - at) / page), flags: PE_PRESENT, pagesOffset: run.pagesOffset + Number(at - run.vaddr) });
      byFile.set(pagesPath, list);
      at = pieceEnd;
      if (at >= end) break;
    }
    if (at < end) throw new ImageError(file, 0, `pages of pid ${pid} at 0x${at.toString(16)} in a parent checkpoint (PE_PARENT)`, `no run of ${join(dir, parent.pagemapFile)} or its parents holds them`);
  }
  return [...byFile].map(([pagesPath, runs]) => Object.freeze({ pagesPath, runs: Object.freeze(runs) }));
}

function checkOverlaps(file: string, runs: PagemapRun[]): void {
  // A dumper writes runs in address order: one pass proves them apart, without a sort of
  // BigInt comparisons (10,000 threads' stacks: ~20,000 runs).
  let ordered = true;
  for (let i = 1; i < runs.length && ordered; i++) {
    const prev = runs[i - 1]!;
    ordered = runs[i]!.vaddr >= prev.vaddr + BigInt(prev.nrPages) * BigInt(PAGE_SIZE);
  }
  if (ordered) return;
  const sorted = [...runs].sort((a, b) => (a.vaddr < b.vaddr ? -1 : a.vaddr > b.vaddr ? 1 : 0));
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1]!;
    const prevEnd = prev.vaddr + BigInt(prev.nrPages) * BigInt(PAGE_SIZE);
    if (sorted[i]!.vaddr < prevEnd) {
      throw new ImageError(file, 0, 'runs that do not overlap', `0x${sorted[i]!.vaddr.toString(16)} is inside the run at 0x${prev.vaddr.toString(16)}`);
    }
  }
}

function pagesSize(checkpoint: Checkpoint, pagesFile: string): number {
  if (!checkpoint.has(pagesFile)) {
    throw new ImageError(checkpoint.path(pagesFile), 0, 'the pages image a pagemap names', 'missing from the checkpoint');
  }
  // One stat, not open + fstat + close: a load checks every task's pages file. The restorer's
  // own open of it words a file that cannot be read.
  const path = checkpoint.path(pagesFile);
  try {
    return statSync(path).size;
  } catch (err) {
    throw new ImageError(path, 0, 'a readable pages image', (err as NodeJS.ErrnoException).code);
  }
}

/** Page data of one pages-N.img, opened for reading in large slices. Close it when done. */
export interface PagesFile {
  readonly path: string;
  /** The open descriptor, for preadv into a task by a restorer. */
  readonly fd: number;
  readonly size: number;
  /** `length` bytes at `offset`; a range outside the file is an ImageError. */
  readSlice(offset: number, length: number): Buffer;
  /** The pages of one PRESENT run. */
  readRun(run: PagemapRun): Buffer;
  close(): void;
}

function openPagesFile(path: string): PagesFile {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    throw new ImageError(path, 0, 'a readable pages image', (err as NodeJS.ErrnoException).code);
  }
  const size = fstatSync(fd).size;
  let open = true;
  const readSlice = (offset: number, length: number): Buffer => {
    if (!open) throw new ImageError(path, offset, 'an open pages image', 'already closed');
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > size) {
      throw new ImageError(path, offset, `${length} bytes of page data`, `the file holds ${size}`);
    }
    const buf = Buffer.allocUnsafe(length);
    let done = 0;
    while (done < length) {
      const n = readSync(fd, buf, done, length - done, offset + done);
      if (n === 0) throw new ImageError(path, offset + done, `${length - done} more bytes`, 'file ended early');
      done += n;
    }
    return buf;
  };
  return {
    path,
    fd,
    size,
    readSlice,
    readRun(run) {
      if (!(run.flags & PE_PRESENT)) throw new ImageError(path, run.pagesOffset, 'a PRESENT run', `flags ${run.flags}`);
      return readSlice(run.pagesOffset, run.nrPages * PAGE_SIZE);
    },
    close() {
      if (open) closeSync(fd);
      open = false;
    },
  };
}

/** Opens pages-<pagesId>.img of a checkpoint (or the pages file of a Pagemap). */
export function openPages(source: Checkpoint | string, pages: number | Pagemap): PagesFile {
  const checkpoint = asCheckpoint(source);
  const name = typeof pages === 'number' ? `pages-${pages}.img` : pages.pagesFile;
  if (!checkpoint.has(name)) throw new ImageError(checkpoint.path(name), 0, 'a pages image', 'missing from the checkpoint');
  return openPagesFile(checkpoint.path(name));
}
