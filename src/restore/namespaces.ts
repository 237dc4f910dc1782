// The namespaces a checkpoint asks for, by CRIU's rule: a namespace kind is restored where the
// root task's id differs from the dumper's own (the inventory's root_ids), and every other task
// shares its parent's, but for UTS, IPC and network namespaces nested in the tree: the task that
// made one is forked into a new one (`nested`), which is filled in as the root's are. A user namespace comes first: the PID namespace's init is forked into it
// (launcher.ts) and its id maps written. Then the root's parent unshares the UTS, IPC, network
// and time namespaces (owned by that user namespace) before it forks the root, and crr fills
// them in from here: host and domain names, IPC sysctls and SysV objects, the loopback device
// (up, its mtu), clock offsets; its mounts are made there too (src/restore/mounts.ts). For a
// cgroup namespace the root's parent first enters the cgroups that were its root, then unshares
// it. A PID or user namespace needs --pid-namespace. A network namespace the dump left out
// (netns-ID.img with an ext_key: criu's --external) is not made: the launcher, or the PID
// namespace's init, joins the one the caller names for that key (a container's, which its
// runtime set up again) before the root is forked (launcher.ts). A mount namespace whose root is
// not crr's (a container's rootfs) gets a directory of crr's as its root: criu's --root, or the
// rootfs where crr's namespace shows it; the restore does not carry the rootfs's files.
import { readFileSync, statSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import { native, type SysvObjects } from '../actors/native.js';
import { decodeEntry } from '../images/codec.js';
import { IPC_SYSCTLS } from '../images/ipc-sysctls.js';
import { howToMake, parseMountinfo, type MountLine } from '../mountinfo.js';
import { treeMounts, type TreeMounts } from './mounts.js';
import { NativeError, StageError } from '../errors.js';
import { FD_TYPES } from '../images/checkpoint.js';
import type { Checkpoint } from '../images/index.js';
import type { CgroupMember } from '../cgroup-fs.js';
import type { RestoreSessionOptions } from './context.js';

const CLONE_NEWTIME = 0x80;
const CLONE_NEWUTS = 0x04000000;
const CLONE_NEWIPC = 0x08000000;
const CLONE_NEWNET = 0x40000000;
const CLONE_NEWNS = 0x20000;
const CLONE_NEWCGROUP = 0x02000000;
const ND_TYPE_LOOPBACK = 1;
const AF_INET = 2;
const SOCK_DGRAM = 2;
const SIOCSIFFLAGS = 0x8914;
const SIOCSIFMTU = 0x8922;
/** struct ifreq: the device's name, then a union (flags as u16, mtu as i32) at byte 16. */
const IFREQ_BYTES = 40;

const NS_FIELDS = ['pid_ns_id', 'net_ns_id', 'ipc_ns_id', 'uts_ns_id', 'time_ns_id', 'mnt_ns_id', 'user_ns_id', 'cgroup_ns_id'] as const;
const kindOf = (field: string) => field.replace(/_ns_id$/, '');

export interface TimeOffsets {
  readonly monotonic: bigint;
  readonly boottime: bigint;
}

export interface CheckpointNamespaces {
  /** The tree's cgroup namespace's root per hierarchy: the root's parent enters these cgroups, then unshares one. */
  readonly cgroupRoots?: readonly CgroupMember[];
  /** The tree's mounts, made in the root's parent's mount namespace (src/restore/mounts.ts). */
  readonly mnt?: TreeMounts;
  /**
   * The tree's user namespace: the PID namespace's init is forked into a new one (clone with
   * CLONE_NEWUSER) and these maps written for it before anything else.
   */
  readonly user?: { readonly uidMap: string; readonly gidMap: string };
  /** The CLONE_NEW* flags the root's parent unshares (UTS, IPC, network, cgroup, time; mount without a PID namespace). */
  readonly unshare: number;
  readonly uts?: { readonly nodename: string; readonly domainname: string };
  /** ipc_var_entry of ipcns-var-ID.img. */
  readonly ipc?: Readonly<Record<string, unknown>>;
  /** The IPC namespace's SysV objects. */
  readonly sysv?: SysvObjects;
  /** The network namespace's loopback device (its only one). */
  readonly net?: { readonly flags: number; readonly mtu: number };
  /** A network namespace to join instead (its file's path): the checkpoint's was external. */
  readonly joinNet?: string;
  readonly time?: TimeOffsets;
  /** Namespaces nested in the tree, by the task that made each: it is forked into new ones (its CLONE_NEW* flags) and they are filled in as the root's are. */
  readonly nested?: ReadonlyMap<number, NestedNamespaces>;
}

/** A task's UTS, IPC and network namespaces of its own, other than its parent's (a sandboxed child's). */
export type NestedNamespaces = Pick<CheckpointNamespaces, 'unshare' | 'uts' | 'ipc' | 'sysv' | 'net' | 'user'>;

/**
 * The directory of crr's that becomes the tree's root (pivot_root), for a tree whose mount
 * namespace has a root other than crr's (a container's): `rootDir` (criu --root) when given, else
 * the root's filesystem where crr's namespace shows it (a container runtime's rootfs mount); none
 * when the tree's root is crr's own.
 */
function rootOf(mnt: TreeMounts, own: readonly MountLine[], rootDir: string | undefined, pid: number): string | undefined {
  const treeRoot = mnt.mounts.find((m) => m.mountPoint === '/');
  const making = treeRoot ? howToMake(treeRoot, own) : undefined;
  if (!treeRoot || making?.how === 'inherited') return undefined;
  if (rootDir !== undefined) return givenPath(rootDir, '--root', true, pid);
  const external = mnt.externalSources?.get(treeRoot.id);
  if (external !== undefined) return external;
  if (making?.how === 'bind') return making.source;
  return refuse(`the tree's root is its own (${treeRoot.fstype} ${treeRoot.source}, as a container's), and crr's namespace shows no mount of it: give the directory that holds it with --root DIR`, pid);
}

/** A path of crr's an option names: absolute, there (a directory when `directory`), without a trailing slash. */
function givenPath(path: string, option: string, directory: boolean, pid: number): string {
  let st;
  try {
    st = statSync(path);
  } catch (err) {
    refuse(`${option} ${path}: ${(err as Error).message}`, pid);
  }
  if (!isAbsolute(path) || (directory && !st.isDirectory())) refuse(`${option} ${path}: not an absolute path${directory ? ' of a directory' : ''}`, pid);
  return path.replace(/(.)\/+$/, '$1');
}

/**
 * Where each mount the dump left out (ext_key) comes from: the path given for its key (criu's
 * --external mnt[KEY]:PATH), else the mount found in crr's namespace (a copy of crr's, or a bind
 * mount of what crr sees); refused otherwise, naming the key.
 */
function externalSources(mnt: TreeMounts, own: readonly MountLine[], given: Readonly<Record<string, string>>, pid: number): Map<number, string> {
  const sources = new Map<number, string>();
  const keys = new Set(mnt.extKeys.values());
  for (const key of Object.keys(given)) if (!keys.has(key)) refuse(`--external mnt[${key}]: no mount of the checkpoint has that key (its keys: ${[...keys].join(', ') || 'none'})`, pid);
  for (const m of mnt.mounts) {
    const key = mnt.extKeys.get(m.id);
    if (key === undefined) continue;
    const path = given[key];
    if (path !== undefined) {
      sources.set(m.id, givenPath(path, `--external mnt[${key}]:`, false, pid));
      continue;
    }
    // The root's own refusal (rootOf) names --root.
    const how = howToMake(m, own, mnt.mounts).how;
    if (m.mountPoint !== '/' && how !== 'inherited' && how !== 'bind') refuse(`the tree's mount at ${m.mountPoint} was left out of the dump (external, key ${key}) and crr's namespace shows no mount of its filesystem: give it with --external mnt[${key}]:PATH`, pid);
  }
  return sources;
}

function refuse(message: string, pid?: number): never {
  throw new StageError({ stage: 'plan', resource: 'namespaces', ...(pid !== undefined ? { pid } : {}), message });
}

/**
 * What the checkpoint's namespaces need (see the head of this file). Throws a plan StageError for
 * a task in another namespace than its parent's, a root namespace of a kind crr does not restore,
 * a PID namespace without `pidNamespace`, and SysV shm contents kept in pagemap images.
 */
export function checkpointNamespaces(checkpoint: Checkpoint, options: Pick<RestoreSessionOptions, 'pidNamespace' | 'externalNamespaces' | 'rootDir' | 'externalMounts'>): CheckpointNamespaces {
  const { pidNamespace, rootDir } = options;
  const own = (checkpoint.inventory['root_ids'] ?? {}) as Record<string, unknown>;
  const live = checkpoint.tasks.filter((t) => !checkpoint.isZombie(t.pid));
  const root = live.find((t) => t.ppid === 0);
  if (!root) return { unshare: 0 };
  const idsOf = (pid: number) => checkpoint.ids(pid) as Record<string, number | undefined>;
  const rootIds = idsOf(root.pid);
  const nestedMade = nestedNamespaceMakers(checkpoint, live, root.pid, own);
  const differs = (field: (typeof NS_FIELDS)[number]) => rootIds[field] !== undefined && own[field] !== undefined && Number(own[field]) !== rootIds[field];
  const cgroupRoots = differs('cgroup_ns_id') ? cgroupNamespaceRoots(checkpoint, root.pid) : undefined;
  let mnt: TreeMounts | undefined;
  if (differs('mnt_ns_id')) {
    requireImage(checkpoint, `mountpoints-${rootIds['mnt_ns_id']}.img`, root.pid);
    mnt = treeMounts(checkpoint, rootIds['mnt_ns_id']!);
    const own = parseMountinfo(readFileSync('/proc/self/mountinfo', 'latin1'));
    const sources = externalSources(mnt, own, options.externalMounts ?? {}, root.pid);
    mnt = { ...mnt, externalSources: sources };
    const newRoot = rootOf(mnt, own, rootDir, root.pid);
    if (newRoot) mnt = { ...mnt, newRoot };
    for (const m of mnt.mounts) {
      if (m.mountPoint !== '/' && !mnt.extKeys.has(m.id) && howToMake(m, own, mnt.mounts).how === 'unsupported') refuse(`the tree's ${m.fstype} at ${m.mountPoint} (${m.source}) cannot be made here: no mount of its filesystem (${m.dev}, ${m.root}) in crr's namespace`, root.pid);
    }
  }
  const [mountKey] = Object.keys(options.externalMounts ?? {});
  if (mountKey !== undefined && !mnt) refuse(`--external mnt[${mountKey}]: the tree has no mount namespace of its own, so no external mounts`, root.pid);
  if (rootDir !== undefined && !mnt?.newRoot) refuse(`--root ${rootDir}: the tree's root is crr's own (no mount namespace of its own with another root); --root is for a container's`, root.pid);
  if (differs('pid_ns_id') && !pidNamespace) refuse('the tree was dumped in a PID namespace of its own: restore it into a fresh one (--pid-namespace)', root.pid);
  let user: CheckpointNamespaces['user'];
  if (differs('user_ns_id')) {
    // clone3's set_tid needs privilege over the PID namespace, and a task of a new user
    // namespace has it only over one made inside that namespace: the PID namespace's init is.
    if (!pidNamespace) refuse('the tree was dumped in a user namespace of its own: restore it into a fresh PID namespace (--pid-namespace), which crr makes inside the restored user namespace', root.pid);
    const e = namespaceImage(checkpoint, `userns-${rootIds['user_ns_id']}.img`, root.pid);
    user = { uidMap: idMapText(e['uid_map']), gidMap: idMapText(e['gid_map']) };
  }
  // The PID namespace's init was forked with a mount namespace of its own already.
  let unshare = (mnt && !pidNamespace ? CLONE_NEWNS : 0) | (cgroupRoots ? CLONE_NEWCGROUP : 0);
  let made: NamespaceParts = {};
  let joinNet: string | undefined;
  for (const field of NESTED_FIELDS) {
    if (!differs(field)) continue;
    const key = field === 'net_ns_id' ? externalKey(checkpoint, rootIds[field]!) : undefined;
    if (key !== undefined) {
      joinNet = options.externalNamespaces[key];
      if (joinNet === undefined) refuse(`the tree's network namespace was left out of the dump as external '${key}': name the one to restore into (criu's --inherit-fd fd[N]:${key}, an fd of it; the library's externalNamespaces)`, root.pid);
      continue;
    }
    const restored = namespaceParts(checkpoint, field, rootIds[field]!, root.pid);
    made = { ...made, ...restored.parts };
    unshare |= restored.flag;
  }
  for (const key of Object.keys(options.externalNamespaces)) {
    if (joinNet === undefined || options.externalNamespaces[key] !== joinNet) refuse(`'${key}' names no namespace the dump left out (crr takes external network namespaces and pipes, pipe:[ID], only)`);
  }
  const time = timeOffsets(checkpoint);
  if (time) unshare |= CLONE_NEWTIME;
  const nested = new Map<number, NestedNamespaces>();
  for (const [pid, fields] of nestedMade) {
    const ids = idsOf(pid);
    let flags = 0;
    let parts: NamespaceParts = {};
    for (const field of fields) {
      const id = ids[field]!;
      if (field === 'net_ns_id' && externalKey(checkpoint, id) !== undefined) refuse(`task ${pid}'s network namespace, nested in the tree's, was left out of the dump as external: crr joins an external network namespace for the tree's root only`, pid);
      const restored = namespaceParts(checkpoint, field, id, pid);
      parts = { ...parts, ...restored.parts };
      flags |= restored.flag;
    }
    nested.set(pid, { unshare: flags, ...parts, ...(user ? { user } : {}) });
  }
  return { unshare, ...made, ...(nested.size ? { nested } : {}), ...(cgroupRoots ? { cgroupRoots } : {}), ...(mnt ? { mnt } : {}), ...(user ? { user } : {}), ...(joinNet ? { joinNet } : {}), ...(time ? { time } : {}) };
}

type NamespaceParts = Pick<CheckpointNamespaces, 'uts' | 'ipc' | 'sysv' | 'net'>;

/**
 * What a UTS, IPC or (loopback-only) network namespace gets from its images, task `pid`'s (the
 * root's or a nested one), and the CLONE_NEW* flag that makes it.
 */
function namespaceParts(checkpoint: Checkpoint, field: NestedField, id: number, pid: number): { flag: number; parts: NamespaceParts } {
  if (field === 'uts_ns_id') {
    const e = namespaceImage(checkpoint, `utsns-${id}.img`, pid);
    return { flag: CLONE_NEWUTS, parts: { uts: { nodename: String(e['nodename'] ?? ''), domainname: String(e['domainname'] ?? '') } } };
  }
  if (field === 'ipc_ns_id') return { flag: CLONE_NEWIPC, parts: { ipc: namespaceImage(checkpoint, `ipcns-var-${id}.img`, pid), sysv: sysvObjects(checkpoint, id, pid) } };
  return { flag: CLONE_NEWNET, parts: { net: loopbackOf(checkpoint, id, pid) } };
}

/** The kinds a task may have a namespace of its own in, other than its parent's. */
const NESTED_FIELDS = ['uts_ns_id', 'ipc_ns_id', 'net_ns_id'] as const;
type NestedField = (typeof NESTED_FIELDS)[number];
const isNestedField = (field: string): field is NestedField => (NESTED_FIELDS as readonly string[]).includes(field);
const NETWORK_SOCKETS = new Map([[FD_TYPES['INETSK']!, 'inet'], [FD_TYPES['PACKETSK']!, 'packet'], [FD_TYPES['NETLINKSK']!, 'netlink']]);

/**
 * The tasks that made a namespace nested in the tree (their parent is not in it), with the fields
 * of ids-PID.img that differ. Refused: a nested kind other than uts, ipc and net; one that its
 * restore (forking the task into a new namespace) cannot give: crr's own or the root's again, or
 * one entered by a second task from outside; an inet, netlink or packet socket held in several
 * network namespaces (crr makes a socket in its maker's namespace).
 */
function nestedNamespaceMakers(checkpoint: Checkpoint, live: readonly Checkpoint['tasks'][number][], rootPid: number, own: Record<string, unknown>): Map<number, NestedField[]> {
  const idsOf = (pid: number) => checkpoint.ids(pid) as Record<string, number | undefined>;
  const rootIds = idsOf(rootPid);
  const makers = new Map<number, NestedField[]>();
  const madeBy = new Map<string, number>();
  const nestedNets = new Set<number>();
  for (const task of live) {
    if (task.pid === rootPid) continue;
    const ids = idsOf(task.pid);
    const parent = idsOf(task.ppid);
    for (const field of NS_FIELDS) {
      const id = ids[field];
      if (id === undefined || parent[field] === undefined || id === parent[field]) continue;
      const other = `task ${task.pid} is in a ${kindOf(field)} namespace other than its parent's (${task.ppid})`;
      if (!isNestedField(field)) refuse(`${other}; crr restores nested uts, ipc and net namespaces only`, task.pid);
      if (id === rootIds[field] || id === Number(own[field])) refuse(`${other}, back in ${id === rootIds[field] ? "the tree root's" : "the dumper's"}: crr makes a nested namespace by forking the task into a new one`, task.pid);
      const key = `${field}:${id}`;
      if (madeBy.has(key)) refuse(`${other}, which task ${madeBy.get(key)} entered from outside too: crr makes a nested namespace by forking one task into it`, task.pid);
      madeBy.set(key, task.pid);
      makers.set(task.pid, [...(makers.get(task.pid) ?? []), field]);
      if (field === 'net_ns_id') nestedNets.add(id);
    }
  }
  if (nestedNets.size) {
    // Its first holder makes a socket, in its own namespace: every holder must be in the socket's.
    const holderOf = new Map<number, { pid: number; net: number }>();
    for (const task of live) {
      const net = idsOf(task.pid)['net_ns_id']!;
      const filesId = checkpoint.ids(task.pid).files_id;
      for (const fd of checkpoint.has(`fdinfo-${filesId}.img`) ? checkpoint.fdinfo(filesId) : []) {
        if (!NETWORK_SOCKETS.has(fd.type)) continue;
        const first = holderOf.get(fd.id);
        if (!first) holderOf.set(fd.id, { pid: task.pid, net });
        else if (first.net !== net) refuse(`socket file ${fd.id} (${NETWORK_SOCKETS.get(fd.type)}) is held in several network namespaces (tasks ${first.pid} and ${task.pid}): crr makes a socket in the namespace of the task that makes it`, task.pid);
      }
    }
  }
  return makers;
}

/** netns-ID.img's ext_key: the dump left this network namespace out (criu's --external net[...]:KEY). */
function externalKey(checkpoint: Checkpoint, id: number): string | undefined {
  const name = `netns-${id}.img`;
  if (!checkpoint.has(name)) return undefined;
  const key = checkpoint.image(name).only()['ext_key'];
  return key === undefined || key === '' ? undefined : String(key);
}

/** The id in crr's user namespace of an id of the tree's, by uid_map / gid_map text. */
function hostIdOf(map: string): (id: number) => number {
  const extents = map.split('\n').filter(Boolean).map((line) => line.split(' ').map(Number) as [number, number, number]);
  return (id) => {
    const e = extents.find(([first, , count]) => id >= first && id < first + count);
    if (!e) throw new StageError({ stage: 'plan', resource: 'namespaces', message: `id ${id} is not in the tree's user namespace maps (${map.trim()})` });
    return e[1] + (id - e[0]);
  };
}

/** SysV objects with their owners as crr's namespace names them (IPC_SET takes the caller's ids). */
function ownedByHostIds(objects: SysvObjects, ids: { uid: (id: number) => number; gid: (id: number) => number }): SysvObjects {
  const own = <T extends { uid: number; gid: number; cuid: number; cgid: number }>(o: T): T => ({ ...o, uid: ids.uid(o.uid), gid: ids.gid(o.gid), cuid: ids.uid(o.cuid), cgid: ids.gid(o.cgid) });
  return { shm: objects.shm.map(own), msg: objects.msg.map(own), sem: objects.sem.map(own) };
}

/** uid_map / gid_map text ("first lower count" lines) from userns_entry's extents. */
function idMapText(extents: unknown): string {
  return ((extents ?? []) as Array<Record<string, unknown>>).map((x) => `${Number(x['first'])} ${Number(x['lower_first'])} ${Number(x['count'])}\n`).join('');
}

/**
 * The root of the tree's cgroup namespace in each hierarchy: the root task's cgroup paths in
 * cgroup.img cut at their cgns_prefix. Refused where cgroup.img has none.
 */
function cgroupNamespaceRoots(checkpoint: Checkpoint, pid: number): CgroupMember[] {
  requireImage(checkpoint, 'cgroup.img', pid);
  const setId = Number((checkpoint.core(pid)['tc'] as Record<string, unknown> | undefined)?.['cg_set'] ?? 0);
  const sets = (checkpoint.image('cgroup.img').only()['sets'] ?? []) as Array<Record<string, unknown>>;
  const members = ((sets.find((s) => Number(s['id']) === setId)?.['ctls'] ?? []) as Array<Record<string, unknown>>).filter((m) => m['cgns_prefix'] !== undefined);
  if (!members.length) refuse('the tree was dumped in a cgroup namespace of its own, and cgroup.img does not say where its root was (cgns_prefix)', pid);
  return members.map((m) => ({ name: String(m['name'] ?? ''), path: String(m['path'] ?? '/').slice(0, Number(m['cgns_prefix'])) || '/' }));
}

/** lo's flags and mtu from netdev-ID.img; any other device is refused (crr makes no links). */
function loopbackOf(checkpoint: Checkpoint, id: number, pid: number): { flags: number; mtu: number } {
  const name = `netdev-${id}.img`;
  if (!checkpoint.has(name)) refuse(`the network namespace image ${name} is missing from the checkpoint (task ${pid}'s namespace)`, pid);
  const devices = [...checkpoint.image(name).entries()].map((lazy) => lazy.decode());
  const others = devices.filter((d) => Number(d['type']) !== ND_TYPE_LOOPBACK).map((d) => String(d['name']));
  if (others.length) refuse(`its network namespace had devices other than lo (${others.join(', ')}); crr restores a loopback-only network namespace`, pid);
  const lo = devices[0];
  return { flags: Number(lo?.['flags'] ?? 0), mtu: Number(lo?.['mtu'] ?? 0) };
}

/** The SysV objects of ipcns-shm/msg/sem-ID.img (a missing image holds none), as sysvipc.cc makes them. */
function sysvObjects(checkpoint: Checkpoint, id: number, pid: number): SysvObjects {
  const entriesOf = (kind: string) => {
    const name = `ipcns-${kind}-${id}.img`;
    return checkpoint.has(name) ? [...checkpoint.image(name).entries()].map((lazy) => ({ e: lazy.decode(), payload: Buffer.from(lazy.payload ?? new Uint8Array()) })) : [];
  };
  const desc = (e: Record<string, unknown>) => {
    const d = (e['desc'] ?? {}) as Record<string, number>;
    return { key: d['key']! | 0, id: d['id']!, mode: d['mode']!, uid: d['uid']!, gid: d['gid']!, cuid: d['cuid']!, cgid: d['cgid']! };
  };
  const shm = entriesOf('shm').map(({ e, payload }) => {
    if (e['in_pagemaps']) refuse(`SysV shm ${desc(e).id} keeps its contents in pagemap images (CRIU's newer layout): not supported yet`, pid);
    const size = Number(e['size']);
    return { ...desc(e), size, data: payload.subarray(0, size) };
  });
  const msg = entriesOf('msg').map(({ e, payload }) => {
    const messages: Array<{ mtype: bigint; data: Buffer }> = [];
    for (let at = 0, i = 0; i < Number(e['qnum']); i++) {
      const length = payload.readUInt32LE(at);
      const head = decodeEntry('ipc_msg', payload.subarray(at + 4, at + 4 + length));
      const msize = Number(head['msize']);
      messages.push({ mtype: BigInt(head['mtype'] as bigint | number), data: payload.subarray(at + 4 + length, at + 4 + length + msize) });
      at += 4 + length + Math.ceil(msize / 8) * 8;
    }
    return { ...desc(e), qbytes: Number(e['qbytes']), messages };
  });
  const sem = entriesOf('sem').map(({ e, payload }) => {
    const values = Array.from({ length: Number(e['nsems']) }, (_, i) => payload.readUInt16LE(i * 2));
    return { ...desc(e), values };
  });
  return { shm, msg, sem };
}

function namespaceImage(checkpoint: Checkpoint, name: string, pid: number): Record<string, unknown> {
  requireImage(checkpoint, name, pid);
  return checkpoint.image(name).only();
}

function requireImage(checkpoint: Checkpoint, name: string, pid: number): void {
  if (!checkpoint.has(name)) refuse(`the namespace image ${name} is missing from the checkpoint (task ${pid}'s namespace)`, pid);
}


/**
 * Fills the namespaces `parentPid` unshared (or was forked into, for nested ones): host and
 * domain names, IPC sysctls (time offsets go through /proc/PID/timens_offsets, see the launcher).
 * Each write is made by a thread of crr's that entered the namespace (native writeInNamespace).
 */
export function fillNamespaces(parentPid: number, ns: NestedNamespaces): void {
  const inNamespace = (kind: string, call: (nsPath: string) => void) => {
    try {
      call(`/proc/${parentPid}/ns/${kind}`);
    } catch (err) {
      const e = err as { code: string; errno: number; syscall: string; path?: string };
      throw new NativeError({ code: e.code, errno: e.errno, syscall: e.syscall, pid: parentPid, detail: `restoring the ${kind} namespace: ${e.path ?? ''}` });
    }
  };
  const write = (kind: string, nstype: number, writes: Array<[string, string]>, euid?: number) => inNamespace(kind, (ns) => native.writeInNamespace(ns, nstype, writes, euid));
  // In a user namespace of the tree's, crr's ids are its parent's: the IPC limits are writable
  // by the namespace's root alone, and SysV owners are given as crr's ids.
  const toHost = ns.user ? { uid: hostIdOf(ns.user.uidMap), gid: hostIdOf(ns.user.gidMap) } : undefined;
  if (ns.net) {
    const { flags, mtu } = ns.net;
    inNamespace('net', (path) => {
      const sock = native.socketInNamespace(path, AF_INET, SOCK_DGRAM, 0);
      try {
        const req = Buffer.alloc(IFREQ_BYTES);
        req.write('lo', 0, 'latin1');
        if (mtu > 0) {
          req.writeInt32LE(mtu, 16);
          native.ioctlBuffer(sock, SIOCSIFMTU, req);
        }
        req.fill(0, 16);
        req.writeUInt16LE(flags, 16);
        native.ioctlBuffer(sock, SIOCSIFFLAGS, req);
      } finally {
        native.close(sock);
      }
    });
  }
  if (ns.uts) {
    write('uts', CLONE_NEWUTS, [
      ['/proc/sys/kernel/hostname', ns.uts.nodename],
      ['/proc/sys/kernel/domainname', ns.uts.domainname],
    ]);
  }
  if (ns.ipc) {
    // The limits first (the objects must fit them), the objects, then the next ids (each object
    // was made by setting its kind's next id).
    const vars = ns.ipc;
    const limits: Array<[string, string]> = [];
    const nextIds: Array<[string, string]> = [];
    const sem = vars['sem_ctls'];
    if (Array.isArray(sem) && sem.length === 4) limits.push(['/proc/sys/kernel/sem', sem.map(String).join(' ')]);
    for (const [field, sysctl] of IPC_SYSCTLS) {
      const value = vars[field];
      // auto_msgmni is not written: the kernel ignores it. A *_next_id of -1 (unset; CRIU's
      // unsigned 4294967295) is not either: a new namespace has it, and the kernel takes 0 and up.
      if (value === undefined || value === null || field === 'auto_msgmni') continue;
      const n = BigInt(value as number | bigint);
      if (!field.endsWith('_next_id')) limits.push([`/proc/sys/${sysctl}`, String(n)]);
      else if (BigInt.asIntN(32, n) !== -1n) nextIds.push([`/proc/sys/${sysctl}`, String(n)]);
    }
    write('ipc', CLONE_NEWIPC, limits, toHost?.uid(0));
    const sysv = ns.sysv && toHost ? ownedByHostIds(ns.sysv, toHost) : ns.sysv;
    if (sysv) inNamespace('ipc', (path) => native.sysvIpcCreate(path, sysv));
    write('ipc', CLONE_NEWIPC, nextIds);
  }
}

/**
 * The clock offsets that make CLOCK_MONOTONIC and CLOCK_BOOTTIME go on from their values at dump
 * time (timens-0.img), as CRIU does: programs that sleep until an absolute monotonic deadline
 * (python's time.sleep) would otherwise sleep for the uptime difference between the machines.
 */
export function timeOffsets(checkpoint: Checkpoint): TimeOffsets | undefined {
  if (!checkpoint.has('timens-0.img')) return undefined;
  const entry = checkpoint.image('timens-0.img').only();
  const ns = (ts: unknown) => {
    const t = (ts ?? {}) as Record<string, unknown>;
    return BigInt(Number(t['tv_sec'] ?? 0)) * 1_000_000_000n + BigInt(Number(t['tv_nsec'] ?? 0));
  };
  const uptime = readFileSync('/proc/uptime', 'utf8').split(' ')[0]!;
  const [secs, frac = '0'] = uptime.split('.');
  const boottimeNow = BigInt(secs!) * 1_000_000_000n + BigInt(frac.padEnd(9, '0').slice(0, 9));
  return { monotonic: ns(entry['monotonic']) - process.hrtime.bigint(), boottime: ns(entry['boottime']) - boottimeNow };
}
