// The one list of resource kinds a restore uses. Order here means nothing: the planner derives
// the order from each kind's stage and `after`. Add a kind by importing its module and listing it.
// `fdKinds` says which fd types (fdinfo `type`) some kind restores; any other fd type is refused
// at plan time with a "not supported" error naming the task and fd.
import type { RestoreCtx } from '../restore/context.js';
import { barrier } from './barrier.js';
import { chardev } from './chardev.js';
import { creds } from './creds.js';
import { FD_TYPE_EVENTFD, eventfd } from './eventfd.js';
import { FD_TYPE_EVENTPOLL, eventpoll } from './eventpoll.js';
import { FD_TYPE_FIFO, fifo } from './fifo.js';
import { fs } from './fs.js';
import { FD_TYPE_INETSK, inetsk, tcpRepairOff } from './inetsk.js';
import { FD_TYPE_INOTIFY, inotify } from './inotify.js';
import { mainThread } from './main-thread.js';
import { aio } from './aio.js';
import { postRestoreActions, setupNamespacesActions } from './action-scripts.js';
import { memory } from './memory.js';
import { mm } from './mm.js';
import { FD_TYPE_PIPE, pipe } from './pipe.js';
import { FD_TYPE_REG, regfile } from './regfile.js';
import { detach, regs } from './regs.js';
import { rlimits } from './rlimits.js';
import { seccomp } from './seccomp.js';
import { sharedFiles } from './shared-files.js';
import { shmem } from './shmem.js';
import { FD_TYPE_MEMFD, memfd } from './memfd.js';
import { FD_TYPE_NETLINKSK, netlinksk } from './netlinksk.js';
import { FD_TYPE_PACKETSK, packetsk } from './packetsk.js';
import { sigact } from './sigact.js';
import { FD_TYPE_SIGNALFD, signalfd } from './signalfd.js';
import { signals } from './signals.js';
import { processGroups, taskTree } from './task-tree.js';
import { threads } from './threads.js';
import { FD_TYPE_UNIXSK, unixsk, unixskScm } from './unixsk.js';
import { fown } from './fown.js';
import { FD_TYPE_TIMERFD, timerfd } from './timerfd.js';
import { timers } from './timers.js';
import { ctty, devTty, FD_TYPE_TTY, tty } from './tty.js';
import { sysvShmRemoved } from './sysv-shm.js';
import { cgroups } from './cgroups.js';
import { ghostFiles, ghostFilesRemoved } from './ghost-files.js';
import { FD_TYPE_PIDFD, pidfd } from './pidfd.js';
import { FD_TYPE_NS, nsfile } from './nsfile.js';
import { procAttrs } from './proc-attrs.js';
import { fileLocks } from './file-locks.js';
import type { ResourceKind } from './types.js';

export const registry: readonly ResourceKind<RestoreCtx>[] = [
  // before the barrier: the helper does it natively (src/restore/ owner)
  taskTree,
  setupNamespacesActions,
  ghostFiles,
  cgroups,
  processGroups,
  regfile,
  chardev,
  tty,
  ctty,
  devTty,
  pipe,
  fifo,
  unixsk,
  unixskScm,
  fown,
  inetsk,
  tcpRepairOff,
  netlinksk,
  packetsk,
  sharedFiles,
  shmem,
  memfd,
  eventfd,
  signalfd,
  timerfd,
  inotify,
  eventpoll,
  pidfd,
  nsfile,
  fs,
  rlimits,
  procAttrs,
  barrier,
  // after the barrier: the tracer and the stub do it (address-space kinds)
  memory,
  mm,
  sigact,
  mainThread,
  aio,
  threads,
  creds,
  signals,
  timers,
  fileLocks,
  seccomp,
  regs,
  sysvShmRemoved,
  ghostFilesRemoved,
  postRestoreActions,
  detach,
];

/** fd types restored by the kinds above (REG covers regular files, directories and char devices). */
export const fdKinds: ReadonlyMap<number, string> = new Map([
  [FD_TYPE_REG, 'regfile'],
  [FD_TYPE_PIPE, 'pipe'],
  [FD_TYPE_FIFO, 'fifo'],
  [FD_TYPE_UNIXSK, 'unixsk'],
  [FD_TYPE_INETSK, 'inetsk'],
  [FD_TYPE_NETLINKSK, 'netlinksk'],
  [FD_TYPE_PACKETSK, 'packetsk'],
  [FD_TYPE_EVENTFD, 'eventfd'],
  [FD_TYPE_SIGNALFD, 'signalfd'],
  [FD_TYPE_TIMERFD, 'timerfd'],
  [FD_TYPE_INOTIFY, 'inotify'],
  [FD_TYPE_EVENTPOLL, 'eventpoll'],
  [FD_TYPE_MEMFD, 'memfd'],
  [FD_TYPE_TTY, 'tty'],
  [FD_TYPE_PIDFD, 'pidfd'],
  [FD_TYPE_NS, 'nsfile'],
]);

/** Look a kind up by name; the planner has already checked that names are unique. */
export function kindsByName<K extends { name: string }>(kinds: readonly K[]): Map<string, K> {
  return new Map(kinds.map((kind) => [kind.name, kind]));
}
