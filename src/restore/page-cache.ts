// Whether a task's pages should come straight off the disk (O_DIRECT) or out of the page cache.
// A cold pages file read with O_DIRECT in one large preadv goes from the disk into the task's
// pages with no copy through the cache and the block layer gets many requests at once: measured
// ~15% faster than buffered reads with read-ahead on this VM (docs/PERFORMANCE.md). A warm file
// must not go that way: O_DIRECT would read from the disk what the cache already holds. The
// answer comes from cachestat(2) in crr's own process; any doubt means "warm" (today's path).
import { closeSync, fstatSync, openSync, readFileSync } from 'node:fs';
import { native } from '../actors/native.js';
import type { PageCacheStat } from '../actors/fds-binding.js';
import { PAGE_SIZE } from '../images/index.js';
import { majorMinor } from './prefetch.js';
import type { PageRun } from './remote-vma.js';

/**
 * Direct only while less than this share of the range is cached. Each cached page read again
 * from the disk costs about what O_DIRECT saves on five cold ones (a cached page copies ~5x
 * faster than the disk delivers one; O_DIRECT saved ~15%), so the break-even is near 1/5.
 */
export const MAX_CACHED_SHARE = 1 / 8;

export type CacheStat = (fd: number, offset: number, length: number) => PageCacheStat;

/** Why (not) direct: `direct` and the reason, for the trace and the tests. */
export interface ColdAnswer {
  direct: boolean;
  why: string;
}

/**
 * The decision from cachestat's answer over `pages` pages: cold when almost nothing is cached
 * and nothing is dirty or under writeback (a fresh dump's file is dirty in the cache).
 */
export function decideDirect(stat: PageCacheStat | undefined, pages: number): ColdAnswer {
  if (stat === undefined) return { direct: false, why: 'cachestat refused' };
  if (stat.dirty + stat.writeback > 0) return { direct: false, why: `${stat.dirty + stat.writeback} pages dirty or under writeback` };
  if (pages <= 0 || stat.cache >= pages * MAX_CACHED_SHARE) return { direct: false, why: `${stat.cache} of ${pages} pages cached` };
  return { direct: true, why: `${stat.cache} of ${pages} pages cached` };
}

/**
 * The logical block size of the disk under a file (sysfs of its st_dev, or of the disk a
 * partition belongs to); undefined when the file is on no block device.
 */
export function logicalBlockSize(dev: number, readSysfs: (path: string) => string = (p) => readFileSync(p, 'utf8')): number | undefined {
  const { major, minor } = majorMinor(dev);
  for (const path of [`/sys/dev/block/${major}:${minor}/queue/logical_block_size`, `/sys/dev/block/${major}:${minor}/../queue/logical_block_size`]) {
    try {
      const size = Number.parseInt(readSysfs(path), 10);
      if (Number.isFinite(size) && size > 0) return size;
    } catch {
      // not this one: a partition has its queue on the disk above
    }
  }
  return undefined;
}

/** True when every run starts and ends on `block` in memory and in the file (O_DIRECT's rule). */
export function runsAligned(runs: readonly PageRun[], block: number): boolean {
  const b = BigInt(block);
  return runs.every((r) => r.start % b === 0n && r.end % b === 0n && r.fileOffset % block === 0);
}

/**
 * Should the runs of `path` (the file's first `length` bytes) be read with O_DIRECT?
 * For measuring and tests: CRR_DIRECT_FILL=off keeps the cached path whatever the cache holds;
 * CRR_DIRECT_FILL=force tries O_DIRECT without asking the cache or the disk (a filesystem that
 * refuses it, EINVAL, still gets the cached path).
 */
export function directFill(
  path: string,
  runs: readonly PageRun[],
  length: number,
  { cachestat = native.cachestat, blockSize = logicalBlockSize }: { cachestat?: CacheStat; blockSize?: (dev: number) => number | undefined } = {},
): ColdAnswer {
  const override = process.env['CRR_DIRECT_FILL'];
  if (override === 'off' || override === 'force') return { direct: override === 'force', why: `CRR_DIRECT_FILL=${override}` };
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    return { direct: false, why: `open: ${(err as Error).message}` };
  }
  try {
    const block = blockSize(fstatSync(fd).dev);
    if (block === undefined || block > PAGE_SIZE || !runsAligned(runs, block)) return { direct: false, why: `runs not aligned to the block size ${block ?? 'unknown'}` };
    let stat: PageCacheStat | undefined;
    try {
      stat = cachestat(fd, 0, length);
    } catch {
      stat = undefined; // ENOSYS before Linux 6.5, or a filesystem without a page cache
    }
    return decideDirect(stat, Math.ceil(length / PAGE_SIZE));
  } finally {
    closeSync(fd);
  }
}
