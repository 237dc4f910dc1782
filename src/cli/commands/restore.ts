// `crr restore -D DIR [-d] [--pidfile F] [--dry-run] [-v]`: criu's option names with criu's
// meanings, so scripts written for `criu restore` work unchanged. Without -d crr stays the tree's
// parent and exits with the root task's exit status (128+N when a signal N ended it); with -d it
// leaves the tree running and exits 0. Options crr does not implement are refused by name.
import { appendFileSync, closeSync, openSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import { UsageError } from '../../errors.js';
import { options } from '../args.js';
import { saveCodeCache } from '../code-cache.js';
import { actionScripts } from '../action-scripts.js';
import type { RestoreResult } from '../../restore/index.js';

export interface RestoreArgs {
  imagesDir: string;
  detached: boolean;
  pidfile?: string;
  dryRun: boolean;
  verbosity: number;
  logFile?: string;
  workDir?: string;
  trace?: string;
  shellJob: boolean;
  allowFileMismatch: boolean;
  pidNamespace: boolean;
  /** criu's --tcp-close: TCP connections come back closed. */
  tcpClose: boolean;
  /** criu's --inherit-fd fd[N]:KEY: crr's fd N is the namespace the dump left out as KEY. */
  externalNamespaces?: Record<string, string>;
  /** criu's --inherit-fd fd[N]:pipe:[ID]: crr's fd N takes the place of that pipe. */
  inheritedFds?: Record<string, number>;
  /** criu's --cgroup-root [CONTROLLER:]PATH. */
  cgroupRoots?: Array<{ controller?: string; path: string }>;
  /** criu's --root: the directory that becomes a container tree's root. */
  rootDir?: string;
  /** criu's --external mnt[KEY]:PATH (or --ext-mount-map KEY:PATH): the path bound for an external mount. */
  externalMounts?: Record<string, string>;
  /** Print the result (rootPid, tasks, timings) as JSON on stdout; no progress line. */
  json?: boolean;
  /** criu's --action-script: run at each action of the restore. */
  actionScripts?: string[];
  /** criu's --lazy-pages: memory comes when touched, from crr's own lazy-pages server. */
  lazyPages?: boolean;
}

/** Accepted and ignored: crr reads no config files. */
// --tcp-established: criu asks for it on restore too; here the images say which connections there are.
const ACCEPTED_NOOPS = new Set(['--no-default-config', '--tcp-established']);

export const RESTORE_USAGE =
  'usage: crr restore -D DIR [-d|--restore-detached] [--pidfile FILE] [--dry-run] [-o LOG] [-W DIR] ' +
  '[-v|-vN|--verbosity=N] [--shell-job] [--allow-file-mismatch] [--inherit-fd fd[N]:KEY] [-r|--root DIR] [--external mnt[KEY]:PATH] [--ext-mount-map KEY:PATH] [--trace FILE] [--json] [--tcp-established] [--tcp-close] [--cgroup-root [CONTROLLER:]PATH] [--action-script FILE] [--lazy-pages] [--no-default-config]';

export function parseRestoreArgs(argv: string[]): RestoreArgs {
  const args: Partial<RestoreArgs> & { verbosity: number } = {
    detached: false,
    dryRun: false,
    verbosity: 2,
    shellJob: false,
    allowFileMismatch: false,
    pidNamespace: false,
    tcpClose: false,
  };
  for (const { arg, value } of options(argv)) {
    if (arg === '-D' || arg === '--images-dir') args.imagesDir = value();
    else if (arg === '-d' || arg === '--restore-detached') args.detached = true;
    else if (arg === '--pidfile') args.pidfile = value();
    else if (arg === '--dry-run') args.dryRun = true;
    else if (arg === '-o' || arg === '--log-file') args.logFile = value();
    else if (arg === '-W' || arg === '--work-dir') args.workDir = value();
    else if (arg === '--trace') args.trace = value();
    else if (arg === '--json') args.json = true;
    else if (arg === '-j' || arg === '--shell-job') args.shellJob = true;
    else if (arg === '--allow-file-mismatch') args.allowFileMismatch = true;
    else if (arg === '--tcp-close') args.tcpClose = true;
    else if (arg === '--lazy-pages') args.lazyPages = true;
    else if (arg === '--pid-namespace') args.pidNamespace = true;
    else if (arg === '-r' || arg === '--root') args.rootDir = value();
    else if (arg === '--external' || arg === '--ext-mount-map') {
      const spec = value();
      const m = arg === '--external' ? /^mnt\[([^\]]+)\]:(.+)$/.exec(spec) : /^([^:]+):(.+)$/.exec(spec);
      if (!m) throw new UsageError(`${arg} '${spec}': expected ${arg === '--external' ? 'mnt[KEY]:PATH' : 'KEY:PATH'}`);
      args.externalMounts = { ...args.externalMounts, [m[1]!]: m[2]! };
    }
    else if (arg === '--cgroup-root') {
      const spec = value();
      const m = /^(?:([^/:][^:]*)?:)?(\/.*)$/.exec(spec);
      if (!m) throw new UsageError(`--cgroup-root '${spec}': expected [CONTROLLER:]/PATH`);
      args.cgroupRoots = [...(args.cgroupRoots ?? []), { ...(spec.startsWith('/') ? {} : { controller: m[1] ?? '' }), path: m[2]! }];
    }
    else if (arg === '--action-script') args.actionScripts = [...(args.actionScripts ?? []), value()];
    else if (arg === '--inherit-fd') {
      const spec = value();
      const m = /^fd\[(\d+)\]:(.+)$/.exec(spec);
      if (!m) throw new UsageError(`--inherit-fd '${spec}': expected fd[N]:KEY`);
      // A pipe by name (pipe:[ID]), else a namespace, whose joining helper opens crr's fd through /proc.
      if (/^pipe:\[\d+\]$/.test(m[2]!)) args.inheritedFds = { ...args.inheritedFds, [m[2]!]: Number(m[1]) };
      else args.externalNamespaces = { ...args.externalNamespaces, [m[2]!]: `/proc/${process.pid}/fd/${m[1]}` };
    }
    else if (arg === '--verbosity') args.verbosity = Number(value());
    else if (/^-v+$/.test(arg)) args.verbosity = 2 + (arg.length - 1);
    else if (/^-v\d$/.test(arg)) args.verbosity = Number(arg.slice(2));
    else if (ACCEPTED_NOOPS.has(arg)) continue;
    else if (arg === '-h' || arg === '--help') throw new UsageError(RESTORE_USAGE);
    else throw new UsageError(`unsupported option '${arg}'`);
  }
  if (args.imagesDir === undefined) throw new UsageError('-D/--images-dir DIR is required');
  if (!Number.isInteger(args.verbosity) || args.verbosity < 0) throw new UsageError('--verbosity needs a number 0-4');
  return args as RestoreArgs;
}

/** Where criu puts a log or pid file: relative names go into the work dir (default: the images dir). */
export function placeFile(name: string, args: RestoreArgs): string {
  return isAbsolute(name) ? name : join(args.workDir ?? args.imagesDir, name);
}

export async function run(argv: string[]): Promise<number> {
  const args = parseRestoreArgs(argv);
  // The launcher helper starts before the restore modules load (~115 ms of imports), so its
  // spawn and first round trip are done when the plan step needs it; restore() owns it.
  const { prestartLauncher, discardLauncher } = await import('../../restore/launcher.js');
  const launcher = args.dryRun ? undefined : prestartLauncher();
  let restore: typeof import('../../restore/index.js').restore;
  try {
    ({ restore } = await import('../../restore/index.js'));
  } catch (err) {
    if (launcher) await discardLauncher(launcher);
    throw err;
  }
  const logFile = args.logFile ? placeFile(args.logFile, args) : undefined;
  const lazyPages = args.lazyPages ? lazyPagesLogOf(args, logFile) : undefined;
  // The progress line (src/cli/progress.ts) only on a terminal: loaded only then.
  const progress = process.stderr.isTTY && !args.json ? await startProgress() : undefined;
  const log = (level: number, line: string) => {
    if (args.verbosity < level) return;
    if (logFile) return appendFileSync(logFile, line + '\n');
    progress?.line.done(); // the log line replaces the progress line; the next update redraws it
    process.stderr.write(line + '\n');
  };
  if (lazyPages?.warning) log(1, `warning: ${lazyPages.warning}`);
  const controller = new AbortController();
  const onSignal = () => controller.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const result = await restore({
      imagesDir: args.imagesDir,
      launcher,
      detached: args.detached,
      dryRun: args.dryRun,
      pidfile: args.pidfile && !args.dryRun ? placeFile(args.pidfile, args) : undefined,
      trace: args.trace,
      shellJob: args.shellJob,
      allowFileMismatch: args.allowFileMismatch,
      pidNamespace: args.pidNamespace,
      ...(args.tcpClose ? { tcpClose: true } : {}),
      ...(lazyPages ? { lazyPages: true, ...(lazyPages.log ? { lazyPagesLog: lazyPages.log } : {}) } : {}),
      ...(args.externalNamespaces ? { externalNamespaces: args.externalNamespaces } : {}),
      ...(args.inheritedFds ? { inheritedFds: args.inheritedFds } : {}),
      ...(args.cgroupRoots ? { cgroupRoots: args.cgroupRoots } : {}),
      ...(args.rootDir !== undefined ? { rootDir: args.rootDir } : {}),
      ...(args.externalMounts ? { externalMounts: args.externalMounts } : {}),
      actionScript: actionScripts(args.actionScripts ?? [], args.imagesDir),
      signal: controller.signal,
      onWarning: (message) => log(1, `warning: ${message}`),
      onSpan: progress?.hooks.onSpan,
      onEvent: (e) => {
        progress?.hooks.onEvent(e);
        if (e.type === 'step.end') log(3, `step ${e.step} done at ${e.time.toFixed(1)} ms`);
        else if (e.type === 'task.stage') log(4, `task ${e.pid}: ${e.stage} in ${(e.end - e.start).toFixed(2)} ms`);
      },
    }).finally(() => progress?.line.done());
    if (args.json) printJson(result, args.dryRun);
    if (args.dryRun && args.json) return 0;
    if (args.dryRun) {
      // Only a dry run prints the plan: loaded here so a real restore starts without them.
      const [{ renderPlan }, { describeTasks }] = await Promise.all([import('../../plan/render.js'), import('../../restore/describe.js')]);
      process.stdout.write(renderPlan(result.plan, 'text'));
      process.stdout.write(await describeTasks(args.imagesDir));
      process.stdout.write('dry run: checks passed, nothing was touched\n');
      return 0;
    }
    const total = result.timings.steps.reduce((sum, s) => sum + ((s.end ?? s.start) - s.start), 0);
    // Now, not at exit: crr may wait long for the tree, or be killed once it said "restored".
    saveCodeCache();
    log(2, `restored ${result.tasks.length} task(s), root pid ${result.rootHostPid}, in ${total.toFixed(1)} ms`);
    if (result.lazyPages) log(2, `lazy pages: served by pid ${result.lazyPages.pid} until every page is in (it holds the pages files open; its messages: ${lazyPages?.log ?? 'this stderr'})`);
    if (args.detached) return 0;
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
    const exit = await result.wait();
    await result.release(); // tasks that outlive the root are left running, like criu
    return exit.signal ? 128 + exit.signal : (exit.exitCode ?? 0);
  } finally {
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
  }
}

/**
 * Where the lazy-pages server writes: crr's log (-o); with -d, lazy-pages.log in the work dir, as
 * the server outlives crr and must not hold its stderr, which a caller may read to its end.
 */
function lazyPagesLogOf(args: RestoreArgs, logFile: string | undefined): { log?: string; warning?: string } {
  if (logFile) return { log: logFile };
  if (!args.detached) return {};
  const file = placeFile('lazy-pages.log', args);
  try {
    closeSync(openSync(file, 'a'));
    return { log: file };
  } catch (err) {
    // A read-only images directory is no reason to refuse the restore.
    return { log: '/dev/null', warning: `the lazy-pages server's messages are dropped: ${(err as Error).message} (-o or -W names a writable place)` };
  }
}

async function startProgress() {
  const { createProgress, restoreProgress } = await import('../progress.js');
  const line = createProgress({ stream: process.stderr, label: 'restore' });
  return { line, hooks: restoreProgress(line) };
}

/** --json: what a script needs to find the tree again, printed before crr waits for the root. */
function printJson(result: RestoreResult, dryRun: boolean): void {
  const summary = {
    ...(dryRun ? { dryRun } : {}),
    rootPid: result.rootPid,
    rootHostPid: result.rootHostPid,
    tasks: result.tasks.map((task) => ({ pid: task.pid, hostPid: result.hostPids.get(task.pid) ?? task.pid })),
    timings: result.timings,
    warnings: result.warnings,
    ...(result.lazyPages ? { lazyPagesPid: result.lazyPages.pid } : {}),
  };
  process.stdout.write(`${JSON.stringify(summary)}\n`);
}
