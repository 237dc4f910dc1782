// restore(): the library entry that wires a checkpoint to the machines. load (decode and
// validate) -> plan (the planner plus machine checks) -> the restore machine driving one task
// actor per task through the registry's resource kinds -> done, or rollback (kill and reap
// every task this restore started) -> one StageError naming task, resource, stage, syscall, errno.
import { renameSync, writeFileSync } from 'node:fs';
import type { InspectionEvent, Observer } from 'xstate';
import { native } from '../actors/native.js';
import { tracer } from '../actors/tracer.js';
import { runRestore, type RestoreEnvironment } from '../machines/run.js';
import type { RestoreEmitted, Timings } from '../machines/restore.js';
import type { RestorePlan } from '../plan/plan.js';
import { fdKinds, registry } from '../resources/registry.js';
import type { ResourceKind, Span, TaskPlan } from '../resources/types.js';
import { checkMachine, rlimitWarnings } from './checks.js';
import type { CgroupRoot, RestoreCtx, RestoreSession, RestoreSessionOptions, TaskImageSet, TaskRuntime } from './context.js';
import { beginLauncher, closeChannels, detachLauncher, discardEarlyLauncher, discardLauncher, killAll, prestartLauncher, startLauncher, waitRoot, type EarlyLauncher, type RootExit } from './launcher.js';
import { decodeCheckpoint } from './load.js';
import { oomWarnings } from '../resources/proc-attrs.js';
import { deathSignalWarnings } from '../resources/creds.js';
import { openCheckpoint } from '../images/index.js';
import { StageError } from '../errors.js';
import type { ActionScript, RestoreAction } from '../resources/action-scripts.js';
import type { createTraceRecorder } from '../trace/recorder.js';
import type { HelperChannel } from '../actors/helper.js';

type TraceRecorder = ReturnType<typeof createTraceRecorder>;

export interface RestoreOptions {
  readonly imagesDir: string;
  /** Leave the tree running: the launcher exits and the root is reparented (criu -d). */
  readonly detached?: boolean;
  readonly signal?: AbortSignal;
  readonly onEvent?: (event: RestoreEmitted) => void;
  /** Write the root task's PID here once the tree runs (criu --pidfile). */
  readonly pidfile?: string;
  /** Load, plan and check only; touch nothing. */
  readonly dryRun?: boolean;
  /** Write a Chrome Trace Event JSON file of the restore here. */
  readonly trace?: string;
  /** Accept files whose size, mode or build-id differ from the images. */
  readonly allowFileMismatch?: boolean;
  /**
   * TCP connections come back as closed sockets (criu's --tcp-close): the program sees each hang
   * up. Needed for a checkpoint dumped with it (its connections have no state to restore), and
   * taken for one dumped with --tcp-established too.
   */
  readonly tcpClose?: boolean;
  /**
   * The root stays in crr's own session and process group, and a terminal in the images (the
   * shell's, at dump) becomes `terminalFd` (criu --shell-job).
   */
  readonly shellJob?: boolean;
  /** With shellJob: crr's fd of the terminal the restored tree gets (default 0, crr's stdin). */
  readonly terminalFd?: number;
  /**
   * A terminal whose master was not in the tree (a container's, its master its runtime's) comes
   * back as a new pseudo-terminal on the tree's devpts, its master handed to `actionScript` as
   * orphan-pts-master's fd (criu's orphan_pts_master; runc passes it on to its console socket).
   */
  readonly orphanPtyMaster?: boolean;
  /**
   * Fork the root inside a fresh PID namespace. With `detached` only for a root that was its
   * namespace's pid 1 (a container's init): it is the new namespace's init and needs no crr
   * process above it, where another root has a helper of crr's as its init.
   */
  readonly pidNamespace?: boolean;
  /**
   * The caller's action scripts (criu's --action-script; the notifications of its RPC), awaited
   * at each point CRIU runs them: pre-restore, setup-namespaces (with the root's PID, in crr's
   * PID namespace) and post-setup-namespaces once the root exists in its namespaces, post-restore
   * (PID), orphan-pts-master (with `orphanPtyMaster`: each new pty master, crr's fd, closed once
   * the script returns), network-unlock and pre-resume once every task is restored and before any
   * runs, post-resume after. A rejection fails the restore (rolled back), except post-resume's: the
   * tree runs by then, so it is a warning.
   */
  readonly actionScript?: ActionScript<RestoreAction>;
  /**
   * Namespaces the dump left out (criu's --external net[INODE]:KEY), by KEY: the path of the
   * namespace file to restore the tree into (/run/netns/NAME, /proc/PID/ns/net, /proc/self/fd/N).
   */
  readonly externalNamespaces?: Readonly<Record<string, string>>;
  /**
   * Pipes the caller gives instead of the dumped ones (criu's --inherit-fd fd[N]:pipe:[ID]), by
   * name (`pipe:[ID]`, ID the pipe's id in the images: a container's stdio, made anew by its
   * runtime): crr's fd N takes that pipe's place at every fd of the tree that held it.
   */
  readonly inheritedFds?: Readonly<Record<string, number>>;
  /**
   * New root cgroups (criu's --cgroup-root [CONTROLLER:]PATH): a task's cgroup below the root
   * task's dumped one of a hierarchy goes below PATH instead (a container restored under another
   * name, into the cgroups its runtime made for it). Without a controller, every hierarchy's.
   */
  readonly cgroupRoots?: readonly CgroupRoot[];
  /**
   * The directory that becomes the tree's root when its mount namespace had a root of its own, a
   * container's rootfs (criu --root): the caller keeps that filesystem, crr does not carry its
   * files. Without it, the rootfs where crr's mount namespace shows it; refused for a tree on
   * crr's own root.
   */
  readonly rootDir?: string;
  /**
   * Mounts the dump left out (criu's --external mnt[MOUNTPOINT]:KEY, a container's volumes), by
   * KEY: the path of crr's to bind at each (criu's --external mnt[KEY]:PATH at restore). A key
   * not given is looked for in crr's mount namespace, else refused at plan time.
   */
  readonly externalMounts?: Readonly<Record<string, string>>;
  /**
   * Private anonymous memory comes when the tree first touches it, then in the background (criu's
   * --lazy-pages, without its separate lazy-pages daemon and page server): the tree runs sooner.
   * crr-lazy-pages serves it from the pages files, the checkpoint's and those of the parent
   * checkpoints an incremental dump keeps pages in, which it holds open: the images may be
   * removed once restore() returns, but not changed in place before it exits (RestoreResult's
   * lazyPages).
   */
  readonly lazyPages?: boolean;
  /**
   * With lazyPages: the file crr-lazy-pages appends its messages to (opened, created if need be,
   * when the server starts). Unset, the server writes to crr's stderr and keeps it open until its
   * last page is in: a caller that reads crr's stderr to its end (a pipe) waits that long.
   */
  readonly lazyPagesLog?: string;
  /** Most tasks in one stage at once. */
  readonly concurrency?: number;
  /**
   * Decode images in a piscina pool from this many tasks on (default 0: never). Measured on 1,000
   * synthetic tasks on this 2-core machine kind (compiled JS): main thread 1.9-2.5 s, pool 7.5-8.3 s;
   * each worker re-reads the shared images and the decoded entries cost more to clone than to decode.
   */
  readonly workersFrom?: number;
  /** Resource kinds to run instead of the registry (tests stop a restore at the barrier this way). */
  readonly kinds?: readonly ResourceKind<RestoreCtx>[];
  readonly onSpan?: (span: Span) => void;
  /** Things the restore changed from the images because this machine does not allow them. */
  readonly onWarning?: (message: string) => void;
  readonly inspect?: Observer<InspectionEvent> | ((event: InspectionEvent) => void);
  /**
   * A launcher from prestartLauncher() (src/restore/launcher.ts), spawned by the caller before
   * it loaded this module; restore() owns it from the call on (destroys it if unused).
   */
  readonly launcher?: Promise<HelperChannel>;
}

export interface RestoreResult {
  /** The root task's PID as the restored tree sees it. */
  readonly rootPid: number;
  /** The root's PID in crr's own PID namespace (differs only with pidNamespace). */
  readonly rootHostPid: number;
  readonly tasks: readonly TaskPlan[];
  readonly timings: Timings;
  readonly plan: RestorePlan;
  /** What the restore had to change from the images (a hard rlimit it could not raise). */
  readonly warnings: readonly string[];
  /** Host PIDs of every restored task, by PID. */
  readonly hostPids: ReadonlyMap<number, number>;
  /**
   * With lazyPages, when some task had memory to serve: the server's PID (it runs on without
   * crr) and its exit, once every page of the tree is in.
   */
  readonly lazyPages?: { readonly pid: number; readonly exited: Promise<number | null> };
  /** Not detached: resolves when the root exits (crr stays its parent and reaps it). */
  wait(): Promise<RootExit>;
  /** Not detached: SIGKILL and reap every task of the tree, by PID. */
  kill(): Promise<void>;
  /** Not detached: let the launcher go (after wait()); tasks still running are reparented. */
  release(): Promise<void>;
}

/** Pty masters no task or caller took (a failed restore's; early ones a terminal did not claim). */
function closePtys(session: RestoreSession | undefined): void {
  for (const master of [...(session?.orphanMasters?.splice(0) ?? []), ...(session?.earlyPtys?.values() ?? [])]) native.close(master);
  session?.earlyPtys?.clear();
}

/** fd types some kind restores (the registry's; fixed, so built once). */
const supportedFdTypes: ReadonlySet<number> = new Set(fdKinds.keys());

function sessionOptions(options: RestoreOptions): RestoreSessionOptions {
  return {
    allowFileMismatch: options.allowFileMismatch ?? false,
    shellJob: options.shellJob ?? false,
    terminalFd: options.terminalFd ?? 0,
    pidNamespace: options.pidNamespace ?? false,
    ...(options.detached ? { detached: true } : {}),
    externalNamespaces: options.externalNamespaces ?? {},
    tcpClose: options.tcpClose ?? false,
    ...(options.actionScript ? { actionScript: options.actionScript } : {}),
    ...(options.inheritedFds ? { inheritedFds: options.inheritedFds } : {}),
    ...(options.orphanPtyMaster ? { orphanPtyMaster: true } : {}),
    ...(options.cgroupRoots?.length ? { cgroupRoots: options.cgroupRoots } : {}),
    ...(options.rootDir !== undefined ? { rootDir: options.rootDir } : {}),
    ...(options.externalMounts ? { externalMounts: options.externalMounts } : {}),
    ...(options.lazyPages ? { lazyPages: true } : {}),
    ...(options.lazyPages && options.lazyPagesLog !== undefined ? { lazyPagesLog: options.lazyPagesLog } : {}),
  };
}

/** Name each task's track after its comm (core image), then write the trace. */
function writeRecordedTrace(recorder: TraceRecorder, file: string, session: RestoreSession | undefined): void {
  for (const [pid, images] of session?.images ?? []) {
    const comm = (images.core['tc'] as Record<string, unknown> | undefined)?.['comm'];
    if (comm) recorder.nameTask(pid, String(comm));
  }
  recorder.setMeta({ command: 'restore' });
  recorder.write(file);
}

export async function restore(options: RestoreOptions): Promise<RestoreResult> {
  if (options.actionScript && !options.dryRun) {
    try {
      await options.actionScript('pre-restore');
    } catch (err) {
      if (options.launcher) await discardLauncher(options.launcher);
      throw new StageError({ stage: 'load', resource: 'action-scripts', message: `action script pre-restore failed: ${(err as Error)?.message ?? String(err)}`, cause: err });
    }
  }
  const kinds = options.kinds ?? registry;
  let session: RestoreSession | undefined;
  const warnings: string[] = [];
  let earlyLauncher: Promise<EarlyLauncher> | undefined;
  // The launcher's set-up (subreaper, PID-namespace init, its /proc, time namespace: about ten
  // round trips) runs while the images decode and the plan is built; the root's fork awaits it.
  let launcherSetup: Promise<void> | undefined;
  const env: RestoreEnvironment<RestoreCtx> = {
    registry: kinds,
    async loadTasks(signal) {
      const checkpoint = openCheckpoint(options.imagesDir);
      const images = new Map<number, TaskImageSet>();
      const live: RestoreSession = { checkpoint, images, runtimes: new Map(), options: sessionOptions(options) };
      session = live;
      if (earlyLauncher) {
        launcherSetup = startLauncher(live, tracer, earlyLauncher);
        earlyLauncher = undefined;
        launcherSetup.catch(() => undefined); // reported by the root's fork, which awaits it
        // One turn of the loop, so the set-up's first request is sent before decoding blocks it
        // (a PID namespace's init was asked for at spawn: nothing more goes out before its answer).
        if (!live.options.pidNamespace) await new Promise((resolve) => setImmediate(resolve));
      }
      const loaded = await decodeCheckpoint(options.imagesDir, checkpoint, { workersFrom: options.workersFrom ?? 0, signal });
      for (const [pid, set] of loaded.images) images.set(pid, set);
      // One turn of the loop before the plan's synchronous work: the launcher's answers that came
      // in during the decoding (the namespace init's fork) start its next round trips (seize,
      // namespaces) now, beside the plan, instead of after it.
      if (launcherSetup) await new Promise((resolve) => setImmediate(resolve));
      return loaded.tasks;
    },
    planSource: () => session && { checkpoint: session.checkpoint, images: session.images, actionScripts: session.options.actionScript !== undefined },
    async checkPlan(plan) {
      if (options.detached && options.pidNamespace && session!.checkpoint.root.pid !== 1) {
        throw new StageError({ stage: 'plan', pid: session!.checkpoint.root.pid, resource: 'task-tree', message: 'a detached restore into a fresh PID namespace needs a root that was its namespace\'s pid 1 (any other root has a helper of crr\'s as its init, which a detached restore does not keep)' });
      }
      checkMachine(plan, session!, supportedFdTypes);
      for (const warning of [...rlimitWarnings(session!), ...oomWarnings(session!), ...deathSignalWarnings(session!)]) {
        warnings.push(warning);
        options.onWarning?.(warning);
      }
      if (options.dryRun) return;
      for (const task of plan.tasks) session!.runtimes.set(task.pid, { pid: task.pid, preopened: new Map(), seized: false, zombie: false });
      // Not awaited here: the root's fork (task-tree) awaits it, so the machine's move from the
      // plan step to the fork step runs while the launcher's last round trips are out.
      launcherSetup ??= startLauncher(session!, tracer);
      launcherSetup.catch(() => undefined); // reported by the root's fork, which awaits it
      session!.launcherReady = launcherSetup;
    },
    contextFor(base) {
      const runtime = session!.runtimes.get(base.pid)!;
      // Spelled out, not spread: one object shape for every kind keeps this call cheap (it runs
      // once per resource per task; the spread showed up as 0.4 s of a 100-task profile).
      return {
        pid: base.pid,
        task: base.task,
        stage: base.stage,
        resource: base.resource,
        plan: base.plan,
        shared: base.shared,
        signal: base.signal,
        record: base.record,
        now: base.now,
        images: session!.images.get(base.pid)!,
        helper: runtime.helper!,
        tracer,
        session: session!,
        runtime,
        checkpoint: session!.checkpoint,
      };
    },
    async rollback() {
      // A set-up still running would leave a launcher (or its init) behind the kill.
      await launcherSetup?.catch(() => undefined);
      session?.lazyPages?.abort();
      if (session) await killAll(session, tracer, [...session.runtimes.keys()]);
      closePtys(session);
    },
  };
  // --trace: every actor's transitions (XState inspection) and every span, as Chrome trace JSON.
  // Loaded only when asked for: a restore without --trace starts without the trace modules.
  const recorder = options.trace ? (await import('../trace/recorder.js')).createTraceRecorder() : undefined;
  const recordSpan = (span: Span) => {
    options.onSpan?.(span);
  };
  let result;
  try {
    const runOptions = {
      signal: options.signal,
      concurrency: options.concurrency,
      dryRun: options.dryRun,
      onEvent: options.onEvent,
      onSpan: recordSpan,
      inspect: options.inspect,
    };
    // The launcher spawns while the images load; a dry run touches nothing, so it gets none.
    // One event-loop turn first: the decoding blocks the loop, and the helper's first round
    // trip (sent once Node has seen the spawn) must already be in flight to overlap it.
    if (options.dryRun && options.launcher) await discardLauncher(options.launcher);
    earlyLauncher = options.dryRun ? undefined : beginLauncher(options.launcher ?? prestartLauncher(), options.pidNamespace ?? false);
    earlyLauncher?.catch(() => undefined); // reported by the load step's startLauncher, or discarded
    if (earlyLauncher && !options.launcher) await new Promise((resolve) => setImmediate(resolve));
    result = await runRestore(env, recorder ? recorder.attach(runOptions) : runOptions);
  } catch (err) {
    session?.lazyPages?.abort();
    if (earlyLauncher) await discardEarlyLauncher(earlyLauncher);
    if (recorder) writeRecordedTrace(recorder, options.trace!, session);
    throw err;
  }
  if (recorder) writeRecordedTrace(recorder, options.trace!, session);
  const live = session!;
  const hostPids = new Map<number, number>();
  for (const [pid, runtime] of live.runtimes) if (runtime.hostPid !== undefined) hostPids.set(pid, runtime.hostPid);
  const rootHostPid = hostPids.get(result.rootPid) ?? result.rootPid;
  if (!options.dryRun) {
    try {
      live.lazyPages?.finish();
    } catch (err) {
      // Its tasks' memory would read as zeroes: the tree goes, as any failed restore's does.
      await killAll(live, tracer, [...live.runtimes.keys()]);
      closeChannels(live);
      closePtys(live);
      throw new StageError({ stage: 'resume', resource: 'memory', message: `the lazy-pages server is gone before the restore ended (${(err as Error).message}); the tree was killed`, cause: err });
    }
    if (options.pidfile) {
      // Atomically, so a script polling for the file never reads it empty.
      writeFileSync(`${options.pidfile}.tmp`, `${rootHostPid}`);
      renameSync(`${options.pidfile}.tmp`, options.pidfile);
    }
    closeChannels(live);
    closePtys(live);
    if (options.detached) await detachLauncher(live);
    if (options.actionScript) {
      // The tree runs: a failure can no longer undo the restore (CRIU only logs it too).
      await options.actionScript('post-resume', rootHostPid).catch((err: unknown) => {
        const message = `action script post-resume failed: ${(err as Error)?.message ?? String(err)}`;
        warnings.push(message);
        options.onWarning?.(message);
      });
    }
  }
  let killing: Promise<void> | undefined;
  return {
    rootPid: result.rootPid,
    rootHostPid,
    tasks: result.tasks,
    timings: result.timings,
    plan: result.plan,
    hostPids,
    warnings,
    ...(live.lazyPages ? { lazyPages: { pid: live.lazyPages.pid, exited: live.lazyPages.exited } } : {}),
    wait: () => waitRoot(live, result.rootPid),
    kill: () => (killing ??= killAll(live, tracer, result.plan.tasks.map((t) => t.pid)).finally(() => live.lazyPages?.kill())),
    release: () => detachLauncher(live),
  };
}

export type { RootExit, TaskRuntime };
export type { RestoreCtx, RestoreSession } from './context.js';
