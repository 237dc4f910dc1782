// Reading a task's pages file into the page cache ahead of its fill, from a libuv worker of this
// process. The task fills itself one syscall at a time (UFFDIO_COPY or preadv, in the stub), so
// any read-ahead it asks for runs in its own thread: the copies wait while it submits and the
// disk idles while it copies. Here the disk is kept busy from another thread and the task's
// copies follow the data in (docs/PERFORMANCE.md, memory). Advice only: if it cannot run, the
// kernel's own read-ahead on the task's faults still brings every page, just later.
import { closeSync, fstatSync, openSync, readFileSync } from 'node:fs';
import { freemem } from 'node:os';
import { native } from '../actors/native.js';

/** Bytes per native call; between calls a stopped prefetch ends. */
export const PREFETCH_CHUNK = 64 << 20;
/** The kernel's smallest default read-ahead window (VM_READAHEAD_PAGES): always honoured. */
const MIN_STEP = 128 << 10;
const MAX_STEP = 16 << 20;

export type ReadAhead = (fd: number, offset: number, length: number, step: number) => Promise<void>;

export interface PagePrefetch {
  /**
   * Ends the prefetch at its next chunk and waits for it: bytes advised, when the last call
   * returned (on the `now` clock), and why it stopped early.
   */
  stop(): Promise<{ bytes: number; end: number; error?: Error }>;
}

/**
 * The bytes one POSIX_FADV_WILLNEED reads at most: the kernel cuts each call to the device's
 * read-ahead window (read_ahead_kb of its backing device, 8 MiB on this VM) and drops the rest
 * of the range without a word, so larger steps would leave holes. `dev` is fstat's st_dev.
 */
export function readAheadStep(dev: number, readSysfs: (path: string) => string = (p) => readFileSync(p, 'utf8')): number {
  const { major, minor } = majorMinor(dev);
  try {
    const kib = Number.parseInt(readSysfs(`/sys/class/bdi/${major}:${minor}/read_ahead_kb`), 10);
    return Number.isFinite(kib) ? Math.min(MAX_STEP, Math.max(MIN_STEP, kib * 1024)) : MIN_STEP;
  } catch {
    return MIN_STEP; // no block device behind the file (tmpfs): the window is moot
  }
}

/** glibc's major()/minor() split of a 64-bit dev_t (fstat's st_dev), for sysfs paths. */
export function majorMinor(dev: number): { major: bigint; minor: bigint } {
  const d = BigInt(dev);
  return { major: ((d >> 8n) & 0xfffn) | ((d >> 32n) & 0xfffff000n), minor: (d & 0xffn) | ((d >> 12n) & 0xffffff00n) };
}

/**
 * Starts reading [0, length) of `path` ahead, capped at half the free memory (read further
 * ahead, the first pages would be evicted before the task copies them).
 */
export function startPrefetch(
  path: string,
  length: number,
  { readAhead = native.readAhead, now = () => performance.now() }: { readAhead?: ReadAhead; now?: () => number } = {},
): PagePrefetch {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    const end = now();
    return { stop: async () => ({ bytes: 0, end, error: err as Error }) };
  }
  const step = readAheadStep(fstatSync(fd).dev);
  const limit = Math.min(length, Math.floor(freemem() / 2));
  let stopped = false;
  let bytes = 0;
  let end = now();
  const done = (async (): Promise<Error | undefined> => {
    try {
      for (let at = 0; at < limit && !stopped; at += PREFETCH_CHUNK) {
        const len = Math.min(PREFETCH_CHUNK, limit - at);
        await readAhead(fd, at, len, step);
        bytes += len;
        end = now();
      }
      return undefined;
    } catch (err) {
      return err as Error;
    } finally {
      closeSync(fd);
    }
  })();
  return {
    stop: async () => {
      stopped = true;
      const error = await done;
      return error ? { bytes, end, error } : { bytes, end };
    },
  };
}
