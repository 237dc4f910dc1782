// files.img + fdinfo-N.img + pipes-data.img: every fd of a task, described as CRIU describes it.
// One files.img entry per open file description: fds that share one (dup, inherited) get the
// same id, found with kcmp(KCMP_FILE) run by the caller. Anything not supported yet is an
// error naming pid, fd and what it is, before anything is written.
import { readdirSync, readFileSync, statSync, statfsSync, openSync, closeSync, constants as C } from 'node:fs';
import { howToMake, parseMountinfo } from '../mountinfo.js';
import { fileSubMessage } from '../images/checkpoint.js';
import { CrrError } from '../errors.js';
import { drainNonblocking, writeAll } from './queue-io.js';
import { ProcError, parseFdinfo, readProc, readProcLink } from './proc.js';
import { regFileEntry, zeroFown, FD_TYPE, O_CLOEXEC } from './regfile.js';
import { dumpNsFd } from './fd-nsfile.js';
import { dumpPacketFd } from './fd-packetsk.js';
import type { DumpIds, Entry } from './ids.js';
import { eventfdDumper, type AnonFdDumper } from './fd-eventfd.js';
import { eventpollDumper } from './fd-eventpoll.js';
import { inotifyDumper } from './fd-inotify.js';
import { signalfdDumper } from './fd-signalfd.js';
import { timerfdDumper } from './fd-timerfd.js';
import { dumpInetFd } from './fd-inetsk.js';
import { dumpNetlinkFd } from './fd-netlinksk.js';
import { dumpUnixFd } from './fd-unixsk.js';
import { checkSocketNamespace, copyOfTaskFd } from './socket-common.js';
import { native } from '../actors/native.js';
import { dumpFifoFd } from './fd-fifo.js';
import { dumpMemfdFd, isMemfdLink } from './fd-memfd.js';
import { dumpTtyFd, terminalKind } from './fd-tty.js';
import { pidfdDumper } from './fd-pidfd.js';
import { DELETED, ghostRefusal } from './ghost-files.js';
import { KcmpSearch, KcmpSorted, runSearches } from './kcmp-order.js';

/** Anon-inode fd kinds (issue 6), each in its own src/dump/fd-<kind>.ts. */
const ANON_FD_DUMPERS: readonly AnonFdDumper[] = [eventfdDumper, signalfdDumper, timerfdDumper, eventpollDumper, inotifyDumper, pidfdDumper];

/** An fd crr cannot dump yet: the message names pid, fd and the kind of file. */
export class UnsupportedFdError extends CrrError {
  constructor(readonly pid: number, readonly fd: number, readonly what: string) {
    super(`pid ${pid}: fd ${fd} is ${what}, which crr dump does not support`, 1);
  }
}

/**
 * kcmp(a.pid, b.pid, KCMP_FILE, a.fd, b.fd) for each pair, in order (one round of a search): 0 one
 * open file description, 1 a's is lower, 2 a's is higher.
 */
export type FileOrder = (pairs: Array<{ a: { pid: number; fd: number }; b: { pid: number; fd: number } }>) => Promise<number[]>;

interface OpenFileSeen {
  pid: number;
  fd: number;
  id: number;
}

/** Character devices CRIU dumps as plain files by path (major 1: mem, null, zero, full, random...). */
const MEM_MAJOR = 1;
const FASYNC = 0o20000;
const F_OWNER_PGRP = 2;
/** statfs f_type of the namespace filesystem (nsfs). */
const NSFS_MAGIC = 0x6e736673;
// Files of these filesystems look like regular files with a path, but their path does not open
// them again: a POSIX message queue (mq_open, not open, makes one, and its queued messages are
// nowhere to read), a memfd_secret area (its path names no file at all).
const UNREOPENABLE_FILESYSTEMS = new Map([
  [0x19800202 /* MQUEUE_MAGIC */, 'a POSIX message queue'],
  [0x5345434d /* SECRETMEM_MAGIC */, 'a memfd_secret area'],
]);
/** An fd's link when it is a namespace opened through /proc/PID/ns ("net:[4026531840]"). */
const NAMESPACE_LINK = /^(?:cgroup|ipc|mnt|net|pid|time|user|uts):\[(\d+)\]$/;

/** Dump-wide table of open file descriptions, so tasks sharing one get one id. */
export class OpenFiles {
  /**
   * Descriptions by what any two of one description agree on (kind, inode, flags, ...), each
   * group in kcmp order: an fd is compared only with its group, in log(size) rounds.
   */
  private groups = new Map<string, KcmpSorted<OpenFileSeen>>();
  /** Pipe inodes whose data is already in pipes-data.img. */
  readonly pipesWithData = new Set<number>();
  readonly pipeData: Array<{ entry: Entry; payload: Uint8Array }> = [];
  /** Dump established TCP connections in repair mode (criu's --tcp-established). */
  tcpEstablished = false;
  /** Connections dumped as they are, to come back closed (criu's --tcp-close): no repair mode. */
  tcpClose = false;
  /** Dump a listener without the connections not yet accepted (criu's --skip-in-flight). */
  skipInFlight = false;
  /** Dump a terminal whose master is not in the tree (criu's --shell-job). */
  shellJob = false;
  /** A terminal whose master is outside the tree comes back new, its master handed to the caller (criu's orphan_pts_master). */
  orphanPtyMaster = false;
  /** sk-queues.img entries of UDP sockets' queued datagrams (with the unix sockets' queues). */
  readonly inetQueues: Array<{ entry: Entry; payload: Uint8Array }> = [];
  /** A NETLINK_SOCK_DIAG socket of the tree's network namespace when it is not crr's (closed by the dump). */
  diagSocket: number | undefined;
  /**
   * Network namespaces nested in the tree: by namespace inode, a NETLINK_SOCK_DIAG socket made
   * there (sockets are asked of each).
   */
  readonly nestedNet = { diagSockets: new Map<number, number>() };
  /** tcp-stream images of the connections read, and the copies of their sockets kept in repair mode. */
  readonly tcpStreams: Array<{ name: string; entry: Entry; payload: Uint8Array }> = [];
  readonly tcpRepair: number[] = [];
  /** files.img ids whose signal owner (fown) was read. */
  readonly owned = new Set<number>();
  /**
   * The tree's tasks, threads and groups as crr sees them, their numbers in the tree's PID
   * namespace, and a user or group id of crr's as the tree's user namespace has it.
   */
  tree: { hostPids: ReadonlySet<number>; pidOf: (hostPid: number) => number; ids?: { uid(id: number, what: string): number; gid(id: number, what: string): number } } = { hostPids: new Set(), pidOf: (pid) => pid };
  /** crr's copies of fds in flight in the tree's unix sockets: open until the dump ends (kcmp compares them). */
  readonly inFlight: number[] = [];
  /** What crr cannot reach by path in each mount namespace of the tree, by its inode. */
  private readonly namespaceMounts = new Map<number, { ownRoot: ReadonlySet<number> | null; ownDevpts: boolean }>();
  /** The same by task: a task's namespace is looked up once, not once per path fd. */
  private readonly mountsByPid = new Map<number, { ownRoot: ReadonlySet<number> | null; ownDevpts: boolean }>();

  /**
   * Of the task's mount namespace: its mount ids when its root is its own (a container's), else
   * null; and whether it has a devpts instance of its own (a restore makes a new one there).
   */
  mountsOf(pid: number): { ownRoot: ReadonlySet<number> | null; ownDevpts: boolean } {
    const known = this.mountsByPid.get(pid);
    if (known) return known;
    const ns = statSync(`/proc/${pid}/ns/mnt`).ino;
    let seen = this.namespaceMounts.get(ns);
    if (!seen) {
      const tree = parseMountinfo(readProc(pid, 'mountinfo'));
      const own = parseMountinfo(readFileSync('/proc/self/mountinfo', 'latin1'));
      const root = tree.find((m) => m.mountPoint === '/');
      seen = {
        ownRoot: root && howToMake(root, own).how !== 'inherited' ? new Set(tree.map((m) => m.id)) : null,
        ownDevpts: tree.some((m) => m.fstype === 'devpts' && howToMake(m, own).how === 'fresh'),
      };
      this.namespaceMounts.set(ns, seen);
    }
    this.mountsByPid.set(pid, seen);
    return seen;
  }

  async idFor(key: string, pid: number, fd: number, order: FileOrder | undefined, make: (id: number) => void, ids: DumpIds): Promise<number> {
    let group = this.groups.get(key);
    if (!group) this.groups.set(key, (group = new KcmpSorted<OpenFileSeen>()));
    const search = new KcmpSearch(group);
    if (order) {
      await runSearches([search], (pairs) => order(pairs.map((p) => ({ a: p.member, b: { pid, fd } }))), () => `pid ${pid} fd ${fd}`);
      if (search.found) return search.found.id;
    } else {
      // Without kcmp (tests' stand-ins): another task's fd of the same kind is taken as shared.
      const other = group.members.find((s) => s.pid !== pid);
      if (other) return other.id;
    }
    const id = ids.newFileId();
    make(id);
    if (order) search.insert({ pid, fd, id });
    else group.members.push({ pid, fd, id });
    return id;
  }
}

export interface FdOfTask {
  fd: number;
  link: string;
}

export function listFds(pid: number): FdOfTask[] {
  let names: string[];
  try {
    names = readdirSync(`/proc/${pid}/fd`);
  } catch (e) {
    throw new ProcError(pid, 'fd', e);
  }
  return names
    .map(Number)
    .sort((a, b) => a - b)
    .map((fd) => ({ fd, link: readProcLink(pid, `fd/${fd}`) }));
}

/** What the dumper asks the task itself while collecting fds. */
export interface FdProbe {
  order?: FileOrder;
  /** F_GETPIPE_SZ of the task's fd. */
  pipeSize?: (fd: number) => Promise<number>;
  /** F_GET_SEALS of the task's fd (memfds). */
  seals?: (fd: number) => Promise<number>;
}

/** Collects one task's fds into files.img (via ids) and returns its fdinfo entries. */
export async function collectFds(pid: number, ids: DumpIds, open: OpenFiles, probe: FdProbe = {}): Promise<Entry[]> {
  const out: Entry[] = [];
  for (const { fd, link } of listFds(pid)) out.push(await dumpFd(pid, fd, link, ids, open, probe));
  return out;
}

/**
 * Adds the files.img entry of fd `fd` of process `pid` (once per description) and returns its
 * fdinfo entry. `pid` is a task of the tree, or crr itself for an fd in flight that a peek of a
 * unix socket's queue installed here.
 */
export async function dumpFd(pid: number, fd: number, link: string, ids: DumpIds, open: OpenFiles, probe: FdProbe): Promise<Entry> {
  const fdinfo = readProc(pid, `fdinfo/${fd}`);
  const info = parseFdinfo(fdinfo);
  const entry = await fileEntry(pid, fd, link, info, fdinfo, ids, open, probe);
  // The owner of signal-driven I/O: read where the file has O_ASYNC (an owner alone sends only SIGURG).
  if (info.flags & FASYNC && pid !== process.pid) recordOwner(pid, fd, Number(entry['id']), ids, open);
  return entry;
}

/**
 * fown of the files.img entry `id` (once per description): the process, thread or group its
 * SIGIO goes to, in the tree's PID numbering, and the signal. An owner outside the tree is refused.
 */
function recordOwner(pid: number, fd: number, id: number, ids: DumpIds, open: OpenFiles): void {
  if (open.owned.has(id)) return;
  open.owned.add(id);
  const copy = copyOfTaskFd(pid, fd);
  let owner: ReturnType<typeof native.fileOwner>;
  try {
    owner = native.fileOwner(copy);
  } finally {
    native.close(copy);
  }
  if (owner.pid === 0 && owner.signum === 0) return;
  if (owner.pid !== 0 && !open.tree.hostPids.has(owner.pid)) throw new UnsupportedFdError(pid, fd, `a file whose SIGIO goes to ${owner.type === F_OWNER_PGRP ? 'process group' : 'pid'} ${owner.pid}, outside the tree (F_SETOWN)`);
  const file = ids.files.find((f) => Number(f['id']) === id);
  const sub = file && fileSubMessage(file);
  if (!sub || !('fown' in sub)) return;
  sub['fown'] = { uid: owner.uid, euid: owner.euid, signum: owner.signum, pid_type: owner.type, pid: owner.pid ? open.tree.pidOf(owner.pid) : 0 };
}

/** The files.img entry of one fd (its fdinfo parsed, `info`, and as read, `fdinfo`). */
async function fileEntry(pid: number, fd: number, link: string, info: ReturnType<typeof parseFdinfo>, fdinfo: string, ids: DumpIds, open: OpenFiles, probe: FdProbe): Promise<Entry> {
  const fdflags = info.flags & O_CLOEXEC ? 1 : 0;
  const fileFlags = info.flags & ~O_CLOEXEC;
  const pipe = /^pipe:\[(\d+)\]$/.exec(link);
  if (pipe) {
    const pipeIno = Number(pipe[1]);
    const id = await open.idFor(`pipe:${pipeIno}:${fileFlags}`, pid, fd, probe.order, (id) => {
      ids.addFile({ type: FD_TYPE.PIPE, id, pipe: { id, pipe_id: pipeIno, flags: fileFlags, fown: zeroFown() } });
    }, ids);
    // Queued data is saved once per pipe, from an end open for reading (as CRIU does).
    if ((fileFlags & 3) === C.O_RDONLY && !open.pipesWithData.has(pipeIno)) {
      open.pipesWithData.add(pipeIno);
      const size = probe.pipeSize ? await probe.pipeSize(fd) : 65536;
      const data = peekPipe(pid, fd);
      open.pipeData.push({ entry: { pipe_id: pipeIno, bytes: data.length, size }, payload: data });
    }
    return { id, flags: fdflags, type: FD_TYPE.PIPE, fd };
  }
  const sock = /^socket:\[(\d+)\]$/.exec(link);
  if (sock) {
    const ino = Number(sock[1]);
    const at = { pid, fd, ino, fileFlags, fdFlags: fdflags };
    const unix = await dumpUnixFd(pid, fd, ino, fileFlags, fdflags, ids, open, probe.order);
    if (unix) return unix;
    checkSocketNamespace('a', pid, fd, ino, open); // "fd N is a socket INO: ..."
    const entry =
      (await dumpInetFd(at, ids, open, probe.order)) ??
      (await dumpNetlinkFd(at, ids, open, probe.order)) ??
      (await dumpPacketFd(at, ids, open, probe.order));
    if (entry) {
      return entry;
    }
  }
  if (link.startsWith('socket:')) throw new UnsupportedFdError(pid, fd, `a socket (${describeSocket(pid, link)})`);
  const anon = ANON_FD_DUMPERS.find((kind) => kind.matches(link));
  if (anon) {
    const id = await open.idFor(`anon:${link}`, pid, fd, probe.order, (id) => ids.addFile(anon.entry(id, fileFlags, fdinfo, { pid, fd })), ids);
    return { id, flags: fdflags, type: anon.type, fd };
  }
  if (link.startsWith('anon_inode:')) throw new UnsupportedFdError(pid, fd, `an ${link.slice(11)} file`);
  const nsLink = NAMESPACE_LINK.exec(link);
  if (nsLink) {
    return await dumpNsFd({ pid, fd, link, ino: Number(nsLink[1]), fileFlags, fdflags }, ids, open, probe.order);
  }
  if (!link.startsWith('/')) throw new UnsupportedFdError(pid, fd, `'${link}'`);
  if (isMemfdLink(link)) {
    return await dumpMemfdFd({ pid, fd, link, fileFlags, fdflags, pos: BigInt(info.pos) }, ids, open, probe);
  }
  // Inside a root of the tree's own the restore opens paths there: an fd the runtime passed in
  // from outside (a mount the namespace lacks) would come back as another file or none.
  const { ownRoot, ownDevpts } = open.mountsOf(pid);
  if (ownRoot && info.mntId >= 0 && !ownRoot.has(info.mntId)) throw new UnsupportedFdError(pid, fd, `${link} on mount ${info.mntId}, outside its mount namespace, whose root is its own (a container's): crr opens files by their paths inside that root`);
  const st = statSync(`/proc/${pid}/fd/${fd}`);
  const kind = st.mode & C.S_IFMT;
  // Asked of regular files only (the kinds it tells apart are such files): not of every /dev/null.
  const fsType = kind === C.S_IFREG ? statfsSync(`/proc/${pid}/fd/${fd}`).type : undefined;
  const special = fsType === undefined ? undefined : UNREOPENABLE_FILESYSTEMS.get(fsType);
  if (special) throw new UnsupportedFdError(pid, fd, `${special} (${link})`);
  if (link.endsWith(DELETED)) {
    const why = ghostRefusal(st, ids.ghosts.limit);
    if (why) throw new UnsupportedFdError(pid, fd, `${why} (${link})`);
    const key = `reg:${st.dev}:${st.ino}:${fileFlags}:${info.pos}`;
    const id = await open.idFor(key, pid, fd, probe.order, (id) => {
      ids.addFile(regFileEntry(id, link.slice(0, -DELETED.length), st, fileFlags, info.pos));
      ids.ghosts.remap(id, st, `/proc/${pid}/fd/${fd}`, () => ids.newFileId(), `pid ${pid} fd ${fd}`);
    }, ids);
    return { id, flags: fdflags, type: FD_TYPE.REG, fd };
  }
  if (kind === C.S_IFCHR && terminalKind(st.rdev)) {
    // A container's terminal (its slave on the container's devpts, its master its runtime's, and
    // /dev/tty leading to it) comes back on the restored devpts with orphan_pts_master; a pair
    // with its master in the tree there does not.
    if (ownDevpts && !(open.orphanPtyMaster && terminalKind(st.rdev) !== 'pty-master')) {
      throw new UnsupportedFdError(pid, fd, `a terminal (${link}) of a mount namespace with a devpts instance of its own: crr restores terminals there only for a slave whose master is outside the tree, for a restore that hands its new master to the caller (orphan_pts_master, as runc asks over criu's RPC)`);
    }
    return await dumpTtyFd({ pid, fd, link, st, fileFlags, fdflags }, ids, open, probe.order);
  }
  if (kind === C.S_IFCHR && Math.floor(st.rdev / 256) !== MEM_MAJOR) {
    throw new UnsupportedFdError(pid, fd, `a character device other than /dev/null-like ones (${link}, ${Math.floor(st.rdev / 256)}:${st.rdev % 256})`);
  }
  if (kind === C.S_IFIFO) {
    const size = probe.pipeSize ? await probe.pipeSize(fd) : 65536;
    return await dumpFifoFd({ pid, fd, link, st, fileFlags, fdflags, pos: info.pos }, ids, open, probe.order, size);
  }
  if (kind !== C.S_IFREG && kind !== C.S_IFDIR && kind !== C.S_IFCHR) {
    throw new UnsupportedFdError(pid, fd, `a ${kind === C.S_IFIFO ? 'FIFO' : 'special file'} (${link})`);
  }
  // A namespace file (from /proc/PID/ns, or a bind mount of one such as /run/netns/NAME) looks
  // like an empty regular file; reading it fails with EINVAL.
  if (kind === C.S_IFREG && st.size === 0 && fsType === NSFS_MAGIC) {
    return await dumpNsFd({ pid, fd, link, ino: st.ino, fileFlags, fdflags }, ids, open, probe.order);
  }
  const key = `reg:${st.dev}:${st.ino}:${fileFlags}:${info.pos}`;
  const id = await open.idFor(key, pid, fd, probe.order, (id) => {
    ids.addFile(regFileEntry(id, link, st, fileFlags, info.pos, kind === C.S_IFREG ? `/proc/${pid}/fd/${fd}` : undefined));
  }, ids);
  return { id, flags: fdflags, type: FD_TYPE.REG, fd };

}

/**
 * Reads a pipe's queued bytes and puts them straight back: the tree is frozen, so nobody else
 * reads or writes in between and the order is kept.
 */
export function peekPipe(pid: number, fd: number): Buffer {
  const path = `/proc/${pid}/fd/${fd}`;
  const rfd = openSync(path, C.O_RDONLY | C.O_NONBLOCK);
  let data: Buffer;
  try {
    data = drainNonblocking(rfd);
  } finally {
    closeSync(rfd);
  }
  if (data.length) {
    const wfd = openSync(path, C.O_WRONLY | C.O_NONBLOCK);
    try {
      writeAll(wfd, data);
    } finally {
      closeSync(wfd);
    }
  }
  return data;
}

function describeSocket(pid: number, link: string): string {
  const ino = /socket:\[(\d+)\]/.exec(link)?.[1];
  if (!ino) return link;
  try {
    const unix = readProc(pid, 'net/unix');
    for (const line of unix.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols[6] === ino) return `unix socket ${ino}${cols[7] ? ` bound to ${cols[7]}` : ''}`;
    }
  } catch {
    // fall through: the kind stays unknown
  }
  return `socket ${ino}`;
}

/**
 * fs-PID.img: cwd and root as new REG entries of directories (CRIU does not share these), umask.
 * A deleted cwd is a ghost directory (made again, entered, removed again at restore); a deleted
 * root is refused.
 */
export function fsEntry(pid: number, ids: DumpIds, umask: number): Entry {
  const dir = (what: 'cwd' | 'root') => {
    const id = ids.newFileId();
    const st = statSync(`/proc/${pid}/${what}`);
    const path = readProcLink(pid, what);
    const deleted = path.endsWith(DELETED);
    if (deleted && what === 'root') throw new CrrError(`pid ${pid}: its root ${path} was deleted; crr cannot make a deleted root again`);
    ids.addFile(regFileEntry(id, deleted ? path.slice(0, -DELETED.length) : path, st, 0, 0n));
    if (deleted) ids.ghosts.remap(id, st, `/proc/${pid}/${what}`, () => ids.newFileId(), `pid ${pid}: its ${what}`);
    return id;
  };
  const cwd_id = dir('cwd');
  const root_id = dir('root');
  return { cwd_id, root_id, umask };
}
