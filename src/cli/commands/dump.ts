// `crr dump -t PID -D DIR [--leave-running] [-v]`: criu's option names with criu's meanings.
// Options criu has that crr does not implement are refused by name, never silently ignored.
// On a terminal (and without --json) one stderr line shows the dump's progress as it goes.
import { appendFileSync } from 'node:fs';
import { UsageError } from '../../errors.js';
import { options } from '../args.js';
import { dump, type DumpEvent } from '../../dump/index.js';
import { createProgress, type Progress } from '../progress.js';
import { actionScripts } from '../action-scripts.js';

export interface DumpArgs {
  pid: number;
  imagesDir: string;
  leaveRunning: boolean;
  verbosity: number;
  logFile?: string;
  timeoutSec?: number;
  /** Print a JSON summary (pids, images, times, page counts) on stdout. */
  json?: boolean;
  /** Write a Chrome trace of the dump here (`crr trace FILE` reads it). */
  trace?: string;
  /** Save established TCP connections in repair mode (criu's --tcp-established). */
  tcpEstablished?: boolean;
  skipInFlight?: boolean;
  /** Dump TCP connections without their state, to come back closed (criu's --tcp-close). */
  tcpClose?: boolean;
  /** A unix datagram socket connected to a named socket outside the tree, dumped by that name (criu's --ext-unix-sk). */
  extUnixSk?: boolean;
  /** Take the shell's terminal the tree runs on (criu's --shell-job). */
  shellJob?: boolean;
  /** Largest deleted file kept, in bytes (criu's --ghost-limit). */
  ghostLimit?: number;
  /** criu's --prev-images-dir: an incremental dump on this checkpoint (relative to the images directory). */
  prevImagesDir?: string;
  /** criu's --external values (net[INODE]:KEY). */
  external?: string[];
  /** criu's --action-script: run at each action of the dump. */
  actionScripts?: string[];
  /** criu's --freeze-cgroup: the tree's freezer cgroup (a frozen one is thawed for the dump and frozen again). */
  freezeCgroup?: string;
}

/** Options accepted and ignored because they change nothing here (said in --help). */
const ACCEPTED_NOOPS = new Set(['--no-default-config']);

export function parseDumpArgs(argv: string[]): DumpArgs {
  let pid: number | undefined;
  let imagesDir: string | undefined;
  let leaveRunning = false;
  let verbosity = 2;
  let logFile: string | undefined;
  let timeoutSec: number | undefined;
  let json = false;
  let trace: string | undefined;
  let tcpEstablished = false;
  let skipInFlight = false;
  let extUnixSk = false;
  let tcpClose = false;
  let shellJob = false;
  let ghostLimit: number | undefined;
  let prevImagesDir: string | undefined;
  const external: string[] = [];
  const scripts: string[] = [];
  let freezeCgroup: string | undefined;
  for (const { arg, value } of options(argv)) {
    if (arg === '-t' || arg === '--tree') {
      const v = value();
      pid = Number(v);
      if (!Number.isInteger(pid) || pid <= 0) throw new UsageError(`-t/--tree: '${v}' is not a process id`);
    } else if (arg === '-D' || arg === '--images-dir') imagesDir = value();
    else if (arg === '-o' || arg === '--log-file') logFile = value();
    else if (arg === '--leave-running' || arg === '-R') leaveRunning = true;
    else if (arg === '--timeout') {
      timeoutSec = Number(value());
      if (!(timeoutSec > 0)) throw new UsageError('--timeout needs a positive number of seconds');
    } else if (arg === '--verbosity') verbosity = Number(value());
    else if (/^-v+$/.test(arg)) verbosity = 2 + (arg.length - 1);
    else if (/^-v\d$/.test(arg)) verbosity = Number(arg.slice(2));
    else if (arg === '--json') json = true;
    else if (arg === '--trace') trace = value();
    else if (arg === '--tcp-established') tcpEstablished = true;
    else if (arg === '--skip-in-flight') skipInFlight = true;
    else if (arg === '--ext-unix-sk') extUnixSk = true;
    else if (arg === '--tcp-close') tcpClose = true;
    else if (arg === '--shell-job' || arg === '-j') shellJob = true;
    else if (arg === '--ghost-limit') ghostLimit = byteSize(value(), '--ghost-limit');
    else if (arg === '--external') external.push(value());
    else if (arg === '--prev-images-dir') prevImagesDir = value();
    else if (arg === '--action-script') scripts.push(value());
    else if (arg === '--freeze-cgroup') freezeCgroup = value();
    else if (arg === '--ext-mount-map') {
      // criu's older spelling of --external mnt[MOUNTPOINT]:KEY.
      const spec = value();
      const m = /^([^:]+):(.+)$/.exec(spec);
      if (!m) throw new UsageError(`--ext-mount-map '${spec}': expected MOUNTPOINT:KEY`);
      external.push(`mnt[${m[1]}]:${m[2]}`);
    }
    else if (ACCEPTED_NOOPS.has(arg)) continue;
    // criu's lazy migration keeps the pages with the dumping criu's page server; crr's lazy pages are the restore's.
    else if (arg === '--lazy-pages') throw new UsageError("unsupported option '--lazy-pages' (criu's lazy migration, pages served by the dumping host): dump as usual, then crr restore --lazy-pages");
    else if (arg === '-h' || arg === '--help') throw new UsageError(USAGE);
    else throw new UsageError(`unsupported option '${arg}'`);
  }
  if (pid === undefined) throw new UsageError('-t/--tree PID is required');
  if (imagesDir === undefined) throw new UsageError('-D/--images-dir DIR is required');
  return { pid, imagesDir, leaveRunning, verbosity, logFile, timeoutSec, ...(json ? { json } : {}), ...(trace ? { trace } : {}), ...(tcpEstablished ? { tcpEstablished } : {}), ...(skipInFlight ? { skipInFlight } : {}), ...(extUnixSk ? { extUnixSk } : {}), ...(tcpClose ? { tcpClose } : {}), ...(shellJob ? { shellJob } : {}), ...(ghostLimit !== undefined ? { ghostLimit } : {}), ...(prevImagesDir !== undefined ? { prevImagesDir } : {}), ...(external.length ? { external } : {}), ...(scripts.length ? { actionScripts: scripts } : {}), ...(freezeCgroup !== undefined ? { freezeCgroup } : {}) };
}

/** A size as criu takes one: bytes, or a number with K, M or G. */
function byteSize(text: string, option: string): number {
  const m = /^(\d+)([KMG]?)$/i.exec(text);
  if (!m) throw new UsageError(`${option}: '${text}' is not a size (bytes, or a number with K, M or G)`);
  return Number(m[1]) * 1024 ** ' KMG'.indexOf((m[2] || ' ').toUpperCase());
}

const USAGE =
  'usage: crr dump -t PID -D DIR [--leave-running] [--tcp-established] [--tcp-close] [--skip-in-flight] [--ext-unix-sk] [-o LOG] [-v|-vN|--verbosity=N] [--timeout SEC] [--json] [--trace FILE] [--shell-job] [--ghost-limit SIZE] [--prev-images-dir DIR] [--external net[INODE]:KEY] [--external mnt[MOUNTPOINT]:KEY] [--ext-mount-map MOUNTPOINT:KEY] [--action-script FILE] [--freeze-cgroup DIR] [--no-default-config]';

function describe(e: DumpEvent): string {
  switch (e.type) {
    case 'stage':
      return `stage ${e.stage}`;
    case 'seized':
      return `seized ${e.tid}`;
    case 'task':
      return `task ${e.pid}: ${e.threads} threads, ${e.vmas} VMAs, ${e.fds} fds`;
    case 'pages':
      return `task ${e.pid}: ${e.pages} pages (${(e.bytes / 1048576).toFixed(1)} MiB) in ${e.ms.toFixed(1)} ms`;
    case 'shmem':
      return `shared memory ${e.shmid}: ${e.pages} pages`;
    case 'done':
      return `dump done in ${e.ms.toFixed(1)} ms, tree ${e.left}`;
  }
}

/** Feeds the progress line from DumpEvents: the stage, tasks collected, pages and bytes written. */
export function dumpProgress(progress: Progress): (e: DumpEvent) => void {
  let tasksDone = 0;
  let pages = 0;
  let bytes = 0;
  return (e) => {
    if (e.type === 'stage') progress.update({ step: e.stage });
    else if (e.type === 'task') progress.update({ tasksDone: ++tasksDone });
    else if (e.type === 'pages' || e.type === 'shmem') {
      pages += e.pages;
      bytes += e.bytes;
      progress.update({ pages, bytes });
    }
  };
}

export async function run(argv: string[]): Promise<number> {
  const args = parseDumpArgs(argv);
  const progress = createProgress({ stream: process.stderr, enabled: !args.json, label: 'dump' });
  const showProgress = dumpProgress(progress);
  const log = (line: string) => {
    if (args.logFile) return appendFileSync(args.logFile, line + '\n');
    progress.done(); // a log line replaces the progress line; the next update draws it again below
    process.stderr.write(line + '\n');
  };
  const signal = args.timeoutSec ? AbortSignal.timeout(args.timeoutSec * 1000) : undefined;
  const result = await dump({
    pid: args.pid,
    imagesDir: args.imagesDir,
    leaveRunning: args.leaveRunning,
    ...(args.tcpEstablished ? { tcpEstablished: true } : {}),
    ...(args.skipInFlight ? { skipInFlight: true } : {}),
    ...(args.extUnixSk ? { externalUnixSockets: true } : {}),
    ...(args.tcpClose ? { tcpClose: true } : {}),
    ...(args.shellJob ? { shellJob: true } : {}),
    ...(args.ghostLimit !== undefined ? { ghostLimit: args.ghostLimit } : {}),
    ...(args.prevImagesDir !== undefined ? { prevImagesDir: args.prevImagesDir } : {}),
    ...(args.external ? { external: args.external } : {}),
    actionScript: actionScripts(args.actionScripts ?? [], args.imagesDir),
    ...(args.freezeCgroup !== undefined ? { freezeCgroup: args.freezeCgroup } : {}),
    onWarning: (message) => log(`warning: ${message}`),
    signal,
    trace: args.trace,
    onEvent: (e) => {
      const level = e.type === 'seized' ? 4 : e.type === 'done' || e.type === 'stage' ? 3 : 4;
      if (args.verbosity >= level) log(describe(e));
      showProgress(e);
    },
  }).finally(() => progress.done());
  if (args.json) {
    const { stats, ...rest } = result;
    process.stdout.write(JSON.stringify({ ...rest, ms: Math.round(rest.ms * 10) / 10, imagesDir: args.imagesDir, stats: stats.toJSON() }) + '\n');
  }
  return 0;
}
