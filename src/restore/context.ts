// What a resource kind gets when the real restore runs it: the framework's BaseTaskContext plus
// the checkpoint, this task's decoded images, its helper channel, the tracer, and the restore-wide
// session (every task's runtime state, the launcher, the user's options). Resource kinds under
// src/resources/ are typed against RestoreCtx; src/restore/index.ts builds one per call.
import type { ActionScript, RestoreAction } from '../resources/action-scripts.js';
import type { HelperChannel } from '../actors/helper.js';
import type { Tracer } from '../actors/tracer.js';
import type { CheckpointNamespaces } from './namespaces.js';
import type { Checkpoint, Entry, FdinfoEntry, FsEntry, TaskIds } from '../images/index.js';
import type { BaseTaskContext, TaskContext } from '../resources/types.js';
import type { HandedBatch } from './remote.js';
import type { LazyPagesServer } from './lazy-pages.js';

/** One task's decoded images (zombies have only a core). Plain data: a worker thread can build it. */
export interface TaskImageSet {
  readonly pid: number;
  /** core-TID.img per thread, main thread first. */
  readonly cores: ReadonlyMap<number, Entry>;
  readonly core: Entry;
  readonly mm?: Entry;
  readonly ids?: TaskIds;
  readonly fs?: FsEntry;
  /** This task's fds (fdinfo through ids.files_id), empty when it has none. */
  readonly fds: readonly FdinfoEntry[];
  /** Set when several tasks share this task's fd table (CLONE_FILES): see src/restore/load.ts. */
  readonly fdTable?: SharedFdTable;
  /**
   * Packets with fds in flight this task puts back (src/restore/in-flight.ts): the ids of the
   * sockets they go to, and the fds of `fds` (file id -> fd) it holds the files in flight and
   * the sending ends at until the unixsk-scm kind has sent them.
   */
  readonly inFlight?: { readonly sockets: readonly number[]; readonly fds: ReadonlyMap<number, number> };
}

/**
 * One fd table held by several tasks. Its owner (the first in tree order) restores every fd; the
 * others get an empty `fds` and pick restorer fd numbers on their own stride (slot of size).
 */
export interface SharedFdTable {
  readonly owner: number;
  readonly slot: number;
  readonly size: number;
  /** Every fd of the table (the owner's `fds`). */
  readonly fds: readonly FdinfoEntry[];
}

/** User choices that change what the restore checks or does. */
/** A new root cgroup for one hierarchy (its /proc/PID/cgroup name: "memory", "name=systemd", "" for v2), or for every one. */
export interface CgroupRoot {
  readonly controller?: string;
  readonly path: string;
}

export interface RestoreSessionOptions {
  /** Accept regular files whose size, mode or build-id differ from the images (criu: --skip-file-rwx-check is narrower). */
  readonly allowFileMismatch: boolean;
  /** The root task stays in crr's own session and group (criu --shell-job). */
  readonly shellJob: boolean;
  /** With shellJob: crr's fd of the terminal the tree's terminal fds become. */
  readonly terminalFd: number;
  /** Fork the root inside a fresh PID namespace (tests; the tree's PIDs are free there). */
  readonly pidNamespace: boolean;
  /** crr lets the tree go once it runs: its launcher, the root's parent, exits (restore's detached). */
  readonly detached?: boolean;
  /** Namespaces the dump left out (criu's --external), by key: the path of the one to restore into. */
  readonly externalNamespaces: Readonly<Record<string, string>>;
  /** A directory of crr's that becomes the root of a tree whose mount namespace had a root of its own (criu --root). */
  readonly rootDir?: string;
  /** Mounts the dump left out, by ext_key: the path of crr's each is bound from (criu --external mnt[KEY]:PATH). */
  readonly externalMounts?: Readonly<Record<string, string>>;
  /** TCP connections come back as closed sockets, not in repair mode (criu --tcp-close). */
  readonly tcpClose: boolean;
  /** criu's --cgroup-root: where the root task's cgroups are now, per hierarchy (resources/cgroups.ts). */
  readonly cgroupRoots?: readonly CgroupRoot[];
  /** A terminal whose master was not in the tree comes back new on the tree's devpts, its master handed to the caller (criu's orphan_pts_master). */
  readonly orphanPtyMaster?: boolean;
  /** Files the caller gives, by name (criu's --inherit-fd fd[N]:pipe:[ID]): crr's fd of each. */
  readonly inheritedFds?: Readonly<Record<string, number>>;
  /** The caller's action scripts (criu --action-script, its RPC's notifications), awaited at each. */
  readonly actionScript?: ActionScript<RestoreAction>;
  /** Private anonymous memory comes when first touched, from crr-lazy-pages (criu --lazy-pages). */
  readonly lazyPages?: boolean;
  /** Where crr-lazy-pages appends its messages (unset: crr's stderr). */
  readonly lazyPagesLog?: string;
}

/** What the restore knows about one task while it runs: filled in as stages go by. */
export interface TaskRuntime {
  readonly pid: number;
  /** The task's helper, once task-tree has forked it. */
  helper?: HelperChannel;
  /** Its PID in crr's PID namespace (for /proc, ptrace, pidfd). */
  hostPid?: number;
  /** Address of the scratch mapping with the stub in it (barrier). */
  scratch?: bigint;
  /**
   * fds the barrier opened for the address-space stage, by key: 'pages' for pages-N.img,
   * `file:<id>` for a files.img regular file (mapped files, exe). Numbers are the task's own.
   */
  readonly preopened: Map<string, number>;
  /** Seized by the tracer at the barrier (rollback kills it through the tracer). */
  seized: boolean;
  /** Exited on purpose (a recreated zombie). */
  zombie: boolean;
  /**
   * The task's setsid, sent right after its fork and not awaited there (the helper serves its
   * requests in order, so whatever is sent next runs after it): process-groups awaits it.
   */
  sessionSet?: Promise<unknown>;
  /** A remote batch one kind filled for the next kind of the same stage to finish and run (runOrHandOn). */
  handed?: HandedBatch;
}

/** Restore-wide state shared by every task's context. */
export interface RestoreSession {
  readonly checkpoint: Checkpoint;
  readonly images: ReadonlyMap<number, TaskImageSet>;
  readonly runtimes: Map<number, TaskRuntime>;
  readonly options: RestoreSessionOptions;
  /** Node's own child: forks the root task (or the PID-namespace init) and stays its parent. */
  launcher?: HelperChannel;
  /** The helper that forks the root task: the launcher, or the init of a fresh PID namespace. */
  rootParent?: HelperChannel;
  /**
   * The fresh PID namespace's init when the root task is that namespace's pid 1 (a checkpoint of
   * a PID namespace from its init down): it becomes the root instead of forking it.
   */
  rootInit?: HelperChannel;
  /** New pty masters for terminals whose master was not in the tree (orphanPtyMaster), until the caller has them. */
  orphanMasters?: number[];
  /** Pty masters of the tree's devpts made for a bind mount of their slave, by index, until the tty kind takes them. */
  earlyPtys?: Map<number, number>;
  /** The post-restore, network-unlock and pre-resume actions, run once for every task's resume to await. */
  actionsBeforeResume?: Promise<void>;
  /**
   * The tracer's detach of the root's parent after its namespace set-up, which is not awaited
   * there. A kill before it lands leaves a traced zombie its parent cannot reap until the tracer
   * does (a rollback right after a plan failure waited 7 s for it).
   */
  rootParentDetached?: Promise<unknown>;
  /**
   * Resolves once the launcher's set-up is done and rootParent is set. The plan step starts it
   * and does not wait: the root's fork does (task-tree), so the step changes overlap it.
   */
  launcherReady?: Promise<void>;
  /** What the checkpoint's namespaces need: asked once, by the launcher's set-up or the plan's checks, whichever comes first. */
  namespaces?: CheckpointNamespaces;
  /** With lazyPages: the server of the tree's lazy memory, started by the first task that has some. */
  lazyPages?: LazyPagesServer;
}

/** The context every real resource kind receives. */
export interface RestoreCtx extends TaskContext<HelperChannel, Tracer, TaskImageSet> {
  readonly session: RestoreSession;
  readonly runtime: TaskRuntime;
  readonly checkpoint: Checkpoint;
}

/** The helper of this task; a kind acting before task-tree forked it has a bug. */
export function helperOf(ctx: RestoreCtx): HelperChannel {
  const helper = ctx.runtime.helper;
  if (!helper) throw new Error(`task ${ctx.pid} has no helper yet (resource ${ctx.resource} runs before task-tree?)`);
  return helper;
}

/** The task's PID as crr's namespace sees it (ptrace, /proc). */
export function hostPidOf(ctx: RestoreCtx): number {
  const hostPid = ctx.runtime.hostPid;
  if (hostPid === undefined) throw new Error(`task ${ctx.pid} has not been forked`);
  return hostPid;
}

export type { BaseTaskContext };
