// Lazy pages (criu restore --lazy-pages): a task's private anonymous memory is registered with a
// userfaultfd of its own instead of being filled, and crr-lazy-pages (native/lazy/lazy-pages.c)
// serves each page when the task first touches it, then copies the rest in the background. The
// tree runs as soon as its other state is back; its memory arrives while it runs. The server is a
// process of its own, started by the first task with lazy memory, so it outlives crr (a detached
// restore, a CLI that exits); it ends once every page is in.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { native, nativePaths } from '../actors/native.js';
import { splitRuns, uffdVmas, vmasHoldingRuns } from './remote-uffd.js';
import type { PageRun, Vma } from './remote-vma.js';

const MSG_TASK = 1;
const MSG_RUNS = 2;
const MSG_DONE = 3;
const HEAD_BYTES = 16;
const RUN_BYTES = 32;
/** The server's receive buffer holds this many runs a message. */
const RUNS_PER_MESSAGE = 4096;

/** UFFD_FEATURE_EVENT_FORK, _REMAP, _REMOVE and _UNMAP: the server follows the address spaces' changes. */
export const LAZY_UFFD_FEATURES = (1n << 1n) | (1n << 2n) | (1n << 3n) | (1n << 6n);

const MADV_WIPEONFORK = 18n;

/** A run the server brings: `file` is the index of its pages file in the task's list. */
export interface LazyRun extends PageRun {
  readonly file: number;
}

/**
 * The runs that come lazily (in VMAs UFFDIO_COPY may fill, uffdVmas) and the rest, filled now,
 * of each pages file's runs (`files`: the task's own, then its parent checkpoints'). A VMA
 * advised MADV_WIPEONFORK is filled now: a fork's child gets it empty, where the server would
 * give the child the image's pages.
 */
export function splitLazy(vmas: readonly Vma[], files: ReadonlyArray<readonly PageRun[]>): { vmas: Vma[]; lazy: LazyRun[]; eager: PageRun[][] } {
  const candidates = uffdVmas(vmas).filter((v) => !(v.madv & (1n << MADV_WIPEONFORK)));
  const lazyVmas = vmasHoldingRuns(candidates, files.flat());
  const lazy: LazyRun[] = [];
  const eager = files.map((runs, file) => {
    const { copy, read } = splitRuns(runs, lazyVmas);
    for (const r of copy) lazy.push({ ...r, file });
    return read;
  });
  return { vmas: lazyVmas, lazy, eager };
}

export interface LazyPagesServer {
  readonly pid: number;
  /** Resolves with the server's exit code once every page is in (or the restore failed). */
  readonly exited: Promise<number | null>;
  /** Hands the server crr's copy of a task's userfaultfd (closed here), its pages files and the runs of them it serves. */
  addTask(hostPid: number, uffd: number, pagesPaths: readonly string[], runs: readonly LazyRun[]): void;
  /** The restore succeeded: the background copy starts, and the server goes on without crr. */
  finish(): void;
  /** The restore failed: the server exits at once (crr kills the tasks). */
  abort(): void;
  kill(): void;
}

/** Starts the server; its messages go to `logFile` (appended, created if need be), else to crr's stderr. */
export function startLazyPagesServer(logFile?: string): LazyPagesServer {
  const log = logFile === undefined ? 'inherit' : openSync(logFile, 'a');
  const [ours, theirs] = native.socketpair('seqpacket');
  let child: ChildProcess;
  try {
    // Its own session: a Ctrl-C at crr's terminal is not for the server of a tree that runs on.
    child = spawn(nativePaths.lazyPages, [], { stdio: ['ignore', 'ignore', log, theirs], detached: true });
  } finally {
    native.close(theirs);
    if (typeof log === 'number') closeSync(log);
  }
  if (child.pid === undefined) {
    native.close(ours);
    throw new Error(`${nativePaths.lazyPages} could not be started (npm run build:native builds it)`);
  }
  child.unref();
  const exited = new Promise<number | null>((resolve) => {
    child.once('exit', (code) => resolve(code));
    child.once('error', () => resolve(null));
  });
  let open = true;
  const close = () => {
    if (open) native.close(ours);
    open = false;
  };
  const send = (type: number, pid: number, total: number, runs: readonly LazyRun[], fds: number[] = []) => {
    const buf = Buffer.alloc(HEAD_BYTES + runs.length * RUN_BYTES);
    buf.writeUInt32LE(type, 0);
    buf.writeUInt32LE(pid, 4);
    buf.writeUInt32LE(total, 8);
    buf.writeUInt32LE(runs.length, 12);
    runs.forEach((r, i) => {
      buf.writeBigUInt64LE(r.start, HEAD_BYTES + i * RUN_BYTES);
      buf.writeBigUInt64LE(r.end, HEAD_BYTES + i * RUN_BYTES + 8);
      buf.writeBigUInt64LE(BigInt(r.fileOffset), HEAD_BYTES + i * RUN_BYTES + 16);
      buf.writeBigUInt64LE(BigInt(r.file), HEAD_BYTES + i * RUN_BYTES + 24);
    });
    native.sendFds(ours, fds, buf);
  };
  return {
    pid: child.pid,
    exited,
    addTask(hostPid, uffd, pagesPaths, runs) {
      const pages: number[] = [];
      try {
        for (const path of pagesPaths) pages.push(openSync(path, 'r'));
        const sorted = [...runs].sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
        send(MSG_TASK, hostPid, sorted.length, sorted.slice(0, RUNS_PER_MESSAGE), [uffd, ...pages]);
        for (let at = RUNS_PER_MESSAGE; at < sorted.length; at += RUNS_PER_MESSAGE) send(MSG_RUNS, 0, 0, sorted.slice(at, at + RUNS_PER_MESSAGE));
      } finally {
        for (const fd of pages) closeSync(fd);
        native.close(uffd);
      }
    },
    finish() {
      try {
        if (open) send(MSG_DONE, 0, 0, []);
      } finally {
        close();
      }
    },
    abort: close,
    kill() {
      close();
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
  };
}
