// CRIU's RPC on one socket: what runc, crun and libcriu start as `criu swrk FD` (`crr swrk FD`).
// The caller sends a criu_req per SOCK_SEQPACKET packet (proto/rpc.proto) and gets a criu_resp;
// a dump or restore with notify_scripts sends a NOTIFY for each action script and waits for
// the caller's answer (runc runs a container's hooks at setup-namespaces and learns the restored
// init's PID from post-restore). The fds in the options are the caller's: crr opens them through
// /proc/CALLER/fd, as criu does. A criu option crr does not implement, set to anything but its
// default, fails the request naming it; one that changes nothing here (crr always dumps file
// locks and cgroups, and freezes with ptrace) is accepted.
import { appendFileSync, existsSync, readFileSync, readlinkSync, statSync, writeFileSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import { native, type ChannelHandle } from '../actors/native.js';
import { parseMountinfo } from '../mountinfo.js';
import { treeMounts } from '../restore/mounts.js';
import { capabilityChecks, lazyPagesCheck } from '../capabilities.js';
import { cgroupMounts, parseCgroupFile } from '../cgroup-fs.js';
import { CrrError } from '../errors.js';
import { decodeEntry, encodeEntry, enumValues, openCheckpoint, type Entry } from '../images/index.js';

/** criu_req_type's values by name (proto/rpc.proto), for the requests crr names here. */
export const REQ = enumValues('criu_req_type') as Readonly<Record<'DUMP' | 'RESTORE' | 'CHECK' | 'PRE_DUMP' | 'NOTIFY' | 'FEATURE_CHECK' | 'VERSION', number>>;
const REQ_NAMES = Object.fromEntries(Object.entries(REQ).map(([name, n]) => [n, name]));

/** The criu version crr answers VERSION with: the image format and RPC it speaks are CRIU 4.2's. */
export const CRIU_COMPAT_VERSION = { major_number: 4, minor_number: 2, name: 'crr' };

const SOL_SOCKET = 1;
const SO_PEERCRED = 17;
const CLONE_NEWNET = 0x40000000;
const EPERM = 1;
const EINVAL = 22;
const EOPNOTSUPP = 95;

/** A request that cannot be served as asked: its answer says why, with an errno. */
class RequestRefused extends Error {
  constructor(message: string, readonly errno = EOPNOTSUPP) {
    super(message);
  }
}

/** Packets in, packets out, on the caller's socket (the addon's channel: one Buffer per packet). */
class Connection {
  private readonly channel: ChannelHandle;
  private readonly packets: Buffer[] = [];
  private waiting: ((packet: Buffer | undefined) => void) | undefined;
  private ended = false;

  constructor(private readonly fd: number) {
    this.channel = native.channelOpen(
      fd,
      (packet) => this.arrive(packet),
      () => {
        this.ended = true;
        this.arrive(undefined);
      },
      () => undefined,
    );
  }

  private arrive(packet: Buffer | undefined): void {
    const waiter = this.waiting;
    this.waiting = undefined;
    if (waiter) waiter(packet);
    else if (packet) this.packets.push(packet);
  }

  /** The next request, or undefined once the caller has closed its end. */
  async next(): Promise<Entry | undefined> {
    const packet = this.packets.shift() ?? (this.ended ? undefined : await new Promise<Buffer | undefined>((resolve) => (this.waiting = resolve)));
    if (!packet) return undefined;
    try {
      return decodeEntry('criu_req', packet);
    } catch (err) {
      throw new CrrError(`a packet that is not a criu_req (${packet.length} bytes): ${(err as Error).message}`, 2);
    }
  }

  /** `fd`: one of crr's fds the caller gets with the response (SCM_RIGHTS), as criu sends a new pty master. */
  send(resp: Entry, fd?: number): void {
    const packet = Buffer.from(encodeEntry('criu_resp', resp));
    if (fd !== undefined) native.sendFds(this.fd, [fd], packet); // nothing is queued: every send waits for its answer
    // A criu_resp is far below the socket's buffer: a full channel means a caller that stopped reading.
    else if (!native.channelSend(this.channel, packet)) throw new Error('the caller does not read its socket');
  }

  close(): void {
    native.channelClose(this.channel);
  }
}

/** The caller's PID (SO_PEERCRED): the fds its options name are in its table. */
function peerPid(fd: number): number {
  return native.getsockoptBytes(fd, SOL_SOCKET, SO_PEERCRED, 12).readInt32LE(0);
}

/** Serves requests on `fd` until one without keep_open is answered or the caller hangs up; the exit code. */
export async function serveSwrk(fd: number): Promise<number> {
  const caller = peerPid(fd);
  const connection = new Connection(fd);
  try {
    for (;;) {
      const req = await connection.next();
      if (!req) return 0;
      const ok = await serve(req, connection, caller);
      if (!req['keep_open']) return ok ? 0 : 1;
    }
  } finally {
    connection.close();
  }
}

async function serve(req: Entry, connection: Connection, caller: number): Promise<boolean> {
  const type = Number(req['type']);
  const opts = (req['opts'] ?? {}) as Entry;
  let log: Log | undefined;
  try {
    switch (type) {
      case REQ.VERSION:
        connection.send({ type, success: true, version: CRIU_COMPAT_VERSION });
        return true;
      case REQ.FEATURE_CHECK:
        // No memory tracking (pre-dump), no pidfd store. Lazy pages: a restore's, served by crr
        // itself where the kernel allows (a dump's, kept for a page server, is refused at the dump).
        connection.send({ type, success: true, features: { mem_track: false, lazy_pages: lazyPagesCheck().ok, pidfd_store: false } });
        return true;
      case REQ.CHECK: {
        // criu's check is of the kernel; crr's needs are its capabilities (the native layer is loaded).
        const missing = capabilityChecks().filter((c) => c.required && !c.ok);
        if (missing.length) throw new RequestRefused(`missing ${missing.map((c) => `${c.name} (${c.detail})`).join(', ')}`, EPERM);
        connection.send({ type, success: true });
        return true;
      }
      case REQ.DUMP: {
        const dirs = directories(opts, caller);
        log = openLog(opts, dirs.workDir);
        const { dump } = await import('../dump/index.js');
        const notify = notifier(connection, opts, log);
        await dump({ ...dumpOptions(opts, dirs.imagesDir), ...(notify ? { actionScript: notify } : {}), onWarning: (m) => log!.line(`Warning: ${m}`) });
        log.line('dump done');
        connection.send({ type, success: true, dump: { restored: false } });
        return true;
      }
      case REQ.RESTORE: {
        const stayed = leaveCallersCgroups(caller);
        const dirs = directories(opts, caller);
        log = openLog(opts, dirs.workDir);
        for (const why of stayed) log.line(`Warning: ${why}`);
        const { restore } = await import('../restore/index.js');
        const notify = notifier(connection, opts, log);
        // The lazy-pages server outlives this process: it writes to the request's log (or nowhere,
        // as the caller asked for none), never to the caller's pipes.
        const lazyPagesLog = log.path ?? '/dev/null';
        const result = await restore({ ...restoreOptions(opts, dirs.imagesDir), lazyPagesLog, ...(notify ? { actionScript: notify } : {}), onWarning: (m) => log!.line(`Warning: ${m}`) });
        log.line(`restored ${result.tasks.length} task(s), root pid ${result.rootHostPid}`);
        if (result.lazyPages) log.line(`lazy pages: served by pid ${result.lazyPages.pid} until every page is in (its messages: ${lazyPagesLog})`);
        connection.send({ type, success: true, restore: { pid: result.rootHostPid } });
        return true;
      }
      default:
        throw new RequestRefused(`crr does not serve ${REQ_NAMES[type] ?? `request type ${type}`} requests`);
    }
  } catch (err) {
    const e = err as { message?: string; errno?: number };
    const message = e?.message ?? String(err);
    log?.line(`Error (crr): ${message}`);
    try {
      connection.send({ type, success: false, cr_errno: e?.errno ? Math.abs(e.errno) : err instanceof RequestRefused ? err.errno : EINVAL, cr_errmsg: message });
    } catch {
      // The caller is gone (it hung up at a notification): nobody to tell.
    }
    return false;
  }
}

/**
 * Back into the caller's cgroups: runc moves criu into the container's before a restore (criu's
 * tasks are born there), and crr's own memory would count against the container's limit (a
 * container with a small one had crr killed by the OOM killer). crr moves every task into its
 * cgroups itself (resources/cgroups.ts).
 */
function leaveCallersCgroups(caller: number): string[] {
  const mounts = cgroupMounts();
  const own = parseCgroupFile(readFileSync('/proc/self/cgroup', 'latin1'));
  const stayed: string[] = [];
  for (const member of parseCgroupFile(readFileSync(`/proc/${caller}/cgroup`, 'latin1'))) {
    const mount = mounts.get(member.name);
    if (mount === undefined || own.some((m) => m.name === member.name && m.path === member.path)) continue;
    try {
      writeFileSync(`${mount}${member.path === '/' ? '' : member.path}/cgroup.procs`, String(process.pid));
    } catch (err) {
      stayed.push(`crr stays in its cgroup of ${member.name || 'v2'}, not the caller's ${member.path}: ${(err as Error).message}`);
    }
  }
  return stayed;
}

/**
 * The action scripts as NOTIFY messages, when the caller asked for them: each waits for the
 * caller's answer, and anything but a NOTIFY with notify_success (or a hang-up) fails the action.
 */
function notifier(connection: Connection, opts: Entry, log: Log): ((action: string, rootPid?: number, fd?: number) => Promise<void>) | undefined {
  if (!opts['notify_scripts']) return undefined;
  return async (action, rootPid, fd) => {
    log.line(`notify ${action}${rootPid !== undefined ? ` ${rootPid}` : ''}`);
    // criu gives a pid with setup-namespaces and post-restore only (runc reads it there).
    const pid = action === 'setup-namespaces' || action === 'post-restore' ? rootPid : undefined;
    connection.send({ type: REQ.NOTIFY, success: true, notify: { script: action, ...(pid !== undefined ? { pid } : {}) } }, fd);
    const answer = await connection.next();
    if (!answer) throw new Error(`the caller hung up at action ${action}`);
    if (Number(answer['type']) !== REQ.NOTIFY || !answer['notify_success']) throw new Error(`the caller's action script ${action} failed`);
  };
}

interface Log {
  line(text: string): void;
  /** The file, when the caller asked for one. */
  readonly path?: string;
}

/** criu's log_file, in the work dir (a name, not a path); lines that report a failure say "Error". */
function openLog(opts: Entry, workDir: string): Log {
  const name = opts['log_file'] as string | undefined;
  if (name === undefined || name === '') return { line: () => undefined };
  if (name.includes('/')) throw new RequestRefused(`log_file '${name}' must be a file name in the work dir`, EINVAL);
  const path = join(workDir, name);
  const line = (text: string) => appendFileSync(path, `(${(performance.now() / 1000).toFixed(6)}) ${text}\n`);
  writeFileSync(path, ''); // each request's log starts empty, as criu's does
  return { line, path };
}

/** The images and work directories the caller's fds are open on. */
function directories(opts: Entry, caller: number): { imagesDir: string; workDir: string } {
  const callerDir = (field: string): string | undefined => {
    const fd = opts[field];
    if (fd === undefined || Number(fd) < 0) return undefined;
    const path = `/proc/${caller}/fd/${Number(fd)}`;
    try {
      if (!statSync(path).isDirectory()) throw new RequestRefused(`${field} ${fd} is not a directory`, EINVAL);
      return readlinkSync(path);
    } catch (err) {
      if (err instanceof RequestRefused) throw err;
      throw new RequestRefused(`${field} ${fd}: the caller (pid ${caller}) has no such directory open (${(err as Error).message})`, EINVAL);
    }
  };
  const imagesDir = callerDir('images_dir_fd');
  if (imagesDir === undefined) throw new RequestRefused('images_dir_fd is required', EINVAL);
  return { imagesDir, workDir: callerDir('work_dir_fd') ?? imagesDir };
}

/** criu options with no counterpart in crr: refused when set to anything but their default. */
const UNSUPPORTED = ['ps', 'lazy_pages', 'auto_dedup', 'link_remap', 'veths', 'exec_cmd', 'skip_mnt', 'enable_fs', 'irmap_scan_paths', 'force_irmap', 'join_ns', 'cgroup_props', 'cgroup_props_file', 'cgroup_dump_controller', 'cgroup_yard', 'status_fd', 'lsm_profile', 'lsm_mount_context', 'tls', 'tls_cacert', 'tls_cacrl', 'tls_cert', 'tls_key', 'leave_stopped', 'unprivileged', 'pidfd_store_sk'];

function refuseUnsupported(opts: Entry, allowed: readonly string[] = []): void {
  for (const field of UNSUPPORTED) {
    if (allowed.includes(field)) continue;
    const value = opts[field];
    if (value === undefined || value === false || value === '' || (Array.isArray(value) && value.length === 0)) continue;
    throw new RequestRefused(`crr does not support criu's ${field === 'ps' ? 'page-server' : field.replace(/_/g, '-')} (criu_opts.${field})`);
  }
  // criu reads a configuration file whose settings override the request's; crr reads none.
  const config = opts['config_file'] as string | undefined;
  if (config && existsSync(config) && statSync(config).size > 0) throw new RequestRefused(`crr reads no criu configuration file, and ${config} has settings`);
}

function list<T = Entry>(opts: Entry, field: string): T[] {
  return (opts[field] as T[] | undefined) ?? [];
}

function dumpOptions(opts: Entry, imagesDir: string) {
  refuseUnsupported(opts);
  const pid = Number(opts['pid'] ?? 0);
  if (!(pid > 0)) throw new RequestRefused('a dump needs criu_opts.pid', EINVAL);
  const external = [...list<string>(opts, 'external')];
  // --ext-mount-map at dump: a mountpoint of the tree's and the key it is recorded under. A
  // runtime lists mounts the container may not have (masked files, devices) and some twice.
  const mountpoints = mountpointsOf(pid);
  for (const { key, val } of list<{ key: string; val: string }>(opts, 'ext_mnt')) {
    const spec = `mnt[${key}]:${val}`;
    if (mountpoints.has(key) && !external.includes(spec)) external.push(spec);
  }
  const parent = opts['parent_img'] as string | undefined;
  return {
    pid,
    imagesDir,
    leaveRunning: Boolean(opts['leave_running']),
    tcpEstablished: Boolean(opts['tcp_established']),
    tcpClose: Boolean(opts['tcp_close']),
    skipInFlight: Boolean(opts['tcp_skip_in_flight']),
    externalUnixSockets: Boolean(opts['ext_unix_sk']),
    shellJob: Boolean(opts['shell_job']),
    orphanPtyMaster: Boolean(opts['orphan_pts_master']),
    ...(opts['freeze_cgroup'] ? { freezeCgroup: String(opts['freeze_cgroup']) } : {}),
    ...(opts['ghost_limit'] !== undefined ? { ghostLimit: Number(opts['ghost_limit']) } : {}),
    ...(parent ? { prevImagesDir: parent } : {}),
    ...(external.length ? { external } : {}),
  };
}

/** The mountpoints of the task's mount namespace, as it sees them (none if it has gone: the dump says so). */
function mountpointsOf(pid: number): Set<string> {
  try {
    return new Set(parseMountinfo(readFileSync(`/proc/${pid}/mountinfo`, 'latin1')).map((m) => m.mountPoint));
  } catch {
    return new Set();
  }
}

function restoreOptions(opts: Entry, imagesDir: string) {
  // lazy_pages: criu waits for its lazy-pages daemon; crr starts its own server (src/restore/lazy-pages.ts).
  refuseUnsupported(opts, ['lazy_pages']);
  // fds the caller passed to this process: a pipe by name (a container's new stdio), else a namespace.
  const externalNamespaces: Record<string, string> = {};
  const inheritedFds: Record<string, number> = {};
  for (const { key, fd } of list<{ key: string; fd: number }>(opts, 'inherit_fd')) {
    if (/^pipe:\[\d+\]$/.test(key)) inheritedFds[key] = fd;
    else externalNamespaces[key] = `/proc/${process.pid}/fd/${fd}`;
  }
  const checkpoint = openCheckpoint(imagesDir);
  // A runtime's --ext-mount-map lists keys the checkpoint may not have (it maps every mask and
  // device whether it was a mount or not): those are left out, as criu leaves them unused.
  const keys = new Set(
    [...checkpoint.imageFiles.keys()].flatMap((name) => {
      const mntNs = /^mountpoints-(\d+)\.img$/.exec(name)?.[1];
      return mntNs === undefined ? [] : [...treeMounts(checkpoint, Number(mntNs)).extKeys.values()];
    }),
  );
  const externalMounts: Record<string, string> = {};
  for (const { key, val } of list<{ key: string; val: string }>(opts, 'ext_mnt')) if (keys.has(key)) externalMounts[key] = val;
  for (const spec of list<string>(opts, 'external')) {
    const m = /^mnt\[([^\]]+)\]:(.+)$/.exec(spec);
    if (!m) throw new RequestRefused(`external '${spec}' at restore: crr takes mnt[KEY]:PATH only`, EINVAL);
    externalMounts[m[1]!] = m[2]!;
  }
  const root = opts['root'] as string | undefined;
  if (root !== undefined && !isAbsolute(root)) throw new RequestRefused(`root '${root}' is not an absolute path`, EINVAL);
  const emptyNs = Number(opts['empty_ns'] ?? 0);
  if (emptyNs & ~CLONE_NEWNET) throw new RequestRefused(`empty_ns 0x${emptyNs.toString(16)}: crr takes the network namespace (0x${CLONE_NEWNET.toString(16)}) only`);
  // A container checkpoint (its root its PID namespace's pid 1) gets a fresh PID namespace; the
  // restore is always detached: the service answers and exits, as criu's does.
  const pidNamespace = checkpoint.root.pid === 1;
  return {
    imagesDir,
    detached: true,
    pidNamespace,
    shellJob: Boolean(opts['shell_job']),
    tcpClose: Boolean(opts['tcp_close']),
    orphanPtyMaster: Boolean(opts['orphan_pts_master']),
    lazyPages: Boolean(opts['lazy_pages']),
    ...(Object.keys(externalNamespaces).length ? { externalNamespaces } : {}),
    ...(Object.keys(inheritedFds).length ? { inheritedFds } : {}),
    // criu's --cgroup-root: runc names the cgroups it made for the container (another name's too).
    cgroupRoots: list<{ ctrl?: string; path: string }>(opts, 'cg_root').map((r) => ({ ...(r.ctrl !== undefined ? { controller: r.ctrl } : {}), path: r.path })),
    ...(Object.keys(externalMounts).length ? { externalMounts } : {}),
    ...(root !== undefined ? { rootDir: root } : {}),
  };
}
