// The tree's namespaces at dump: the root's of each kind, where it is not crr's own, and those
// nested in the tree (below). Where the root's is crr's own, nothing is written; where it is not,
// crr writes what restores it or refuses the dump, naming the kind:
// - user: userns-ID.img, and every task's credentials as that namespace sees them;
// - UTS: utsns-ID.img; IPC: ipcns-var-ID.img and its SysV objects in ipcns-shm/msg/sem-ID.img;
// - mount: mountpoints-ID.img and tmpfs contents (src/dump/mounts.ts); cgroup: its root in each
//   hierarchy, cgns_prefix in cgroup.img;
// - network: netdev-ID.img, lo only; or, named external (criu's --external net[INODE]:KEY: a
//   container's, which its runtime sets up again), netns-ID.img with only that key;
// - time: the root's clocks in timens-0.img;
// - PID: every PID in the images as that namespace numbers it (namespacePids).
// A task may have UTS, IPC and network namespaces other than its parent's (nested: a sandboxed
// child's), each written as the root's are, read through the task that made it; any other kind
// nested is refused.
import { readFileSync, statSync } from 'node:fs';
import { native, type SysvDesc } from '../actors/native.js';
import { encodeEntry } from '../images/codec.js';
import { IPC_SYSCTLS } from '../images/ipc-sysctls.js';
import { NS_KINDS, type Entry } from './ids.js';
import { parseCgroupFile } from '../cgroup-fs.js';
import { mountImages } from './mounts.js';
import { TaskRefusedError } from './tree.js';
import { UsageError } from '../errors.js';

const CLONE_NEWIPC = 0x08000000;
const CLONE_NEWUTS = 0x04000000;

type NsField = (typeof NS_KINDS)[number][1];
type NsKind = (typeof NS_KINDS)[number][0];

/** The kinds whose namespace of the root crr writes images for (time: its clocks, always written). */
const RESTORED: ReadonlySet<NsKind> = new Set(['pid', 'user', 'mnt', 'cgroup', 'uts', 'ipc', 'net', 'time']);

export interface NamespacedTask {
  readonly pid: number;
  readonly ppid: number;
  /** ids-PID.img's namespace fields. */
  readonly ids: Readonly<Record<string, number>>;
}

type ImageItem = Entry | { entry: Entry; payload: Uint8Array };

/** A network namespace the dump leaves out (criu's --external net[INODE]:KEY): the restore is given one for KEY. */
export interface ExternalNet {
  readonly inode: number;
  readonly key: string;
}

/** What the dump leaves out (criu's --external): the tree's network namespace, and mounts by mount point (the key of each). */
export interface Externals {
  readonly net?: ExternalNet;
  readonly mounts: ReadonlyMap<string, string>;
}

/** criu's --external values: `net[INODE]:KEY` and `mnt[MOUNTPOINT]:KEY` are the kinds crr takes. */
export function parseExternal(specs: readonly string[]): Externals {
  let net: ExternalNet | undefined;
  const mounts = new Map<string, string>();
  for (const spec of specs) {
    const mnt = /^mnt\[(\/[^\]]*)\]:(.+)$/.exec(spec);
    if (mnt) {
      mounts.set(mnt[1]!.replace(/(.)\/+$/, '$1'), mnt[2]!);
      continue;
    }
    const m = /^net\[(\d+)\]:(.+)$/.exec(spec);
    if (!m) throw new UsageError(`--external '${spec}': crr takes net[INODE]:KEY (the tree's network namespace) and mnt[MOUNTPOINT]:KEY (a mount of its namespace), left out of the dump`);
    if (net) throw new UsageError(`--external '${spec}': one network namespace only, the tree's (net[${net.inode}]:${net.key} already)`);
    net = { inode: Number(m[1]), key: m[2]! };
  }
  return { ...(net ? { net } : {}), mounts };
}

/**
 * The root's namespaces crr restores (`kinds`: those that are not crr's) and their images
 * ([name, entries]; timens-0.img always), read right after the freeze so a refusal comes before
 * the long part of the dump. Throws TaskRefusedError for a namespace crr cannot restore
 * (checkNamespaces, a network namespace with devices other than lo unless it is external).
 */
export function rootNamespaces(
  tasks: readonly NamespacedTask[],
  own: Readonly<Record<string, number>>,
  external: Externals = { mounts: new Map() },
): { kinds: Set<NsKind>; images: Array<[string, ImageItem[]]>; archives: Array<[string, Buffer]>; nestedNets: Map<number, number>; ids?: IdMaps; cgroupRoots?: Map<string, string> } {
  const { rootKinds: kinds, nested } = checkNamespaces(tasks, own);
  const root = tasks[0]!;
  const images: Array<[string, ImageItem[]]> = [];
  let ids: IdMaps | undefined;
  if (kinds.has('user')) {
    ids = new IdMaps(root.pid);
    images.push([`userns-${root.ids['user_ns_id']}.img`, [{ uid_map: ids.uids, gid_map: ids.gids }]]);
  }
  let archives: Array<[string, Buffer]> = [];
  if (kinds.has('mnt')) {
    const made = mountImages(root.pid, external.mounts);
    images.push([`mountpoints-${root.ids['mnt_ns_id']}.img`, made.mounts]);
    archives = made.archives;
  }
  const externalNet = external.net;
  if (external.mounts.size && !kinds.has('mnt')) throw new UsageError(`--external mnt[${[...external.mounts.keys()][0]}]: the tree's mount namespace is crr's own; only a mount of a namespace of its own can be external`);
  if (externalNet) {
    const inode = statSync(`/proc/${root.pid}/ns/net`).ino;
    if (inode !== externalNet.inode) throw new UsageError(`--external net[${externalNet.inode}]:${externalNet.key}: the tree's network namespace is net:[${inode}]`);
  }
  // The root's UTS, IPC and network namespaces are written as nested ones are (but an external one).
  for (const kind of NESTED) {
    if (!kinds.has(kind)) continue;
    const id = root.ids[`${kind}_ns_id`]!;
    images.push(...(kind === 'net' && externalNet ? [[`netns-${id}.img`, [{ ext_key: externalNet.key }]] as [string, ImageItem[]]] : namespaceImages(kind, id, root.pid, ids)));
  }
  images.push(['timens-0.img', [timensEntry(root.pid)]]);
  // Namespaces nested in the tree, read through the task that made each.
  for (const kind of NESTED) for (const [id, pid] of nested.get(kind) ?? []) images.push(...namespaceImages(kind, id, pid, ids));
  const cgroupRoots = kinds.has('cgroup') ? cgroupNamespaceRoots(root.pid) : undefined;
  const nestedNets = nested.get('net') ?? new Map<number, number>();
  return { kinds, images, archives, nestedNets, ...(ids ? { ids } : {}), ...(cgroupRoots ? { cgroupRoots } : {}) };
}

const CLONE_NEWCGROUP = 0x02000000;

/**
 * The root of the task's cgroup namespace in each hierarchy: its cgroup path as crr sees it less
 * the path as a thread inside that namespace sees it (/proc/PID/cgroup shows paths relative to
 * the reader's cgroup namespace).
 */
function cgroupNamespaceRoots(pid: number): Map<string, string> {
  const outside = parseCgroupFile(readFileSync(`/proc/${pid}/cgroup`, 'latin1'));
  const [text] = native.readInNamespace(`/proc/${pid}/ns/cgroup`, CLONE_NEWCGROUP, [`/proc/${pid}/cgroup`]);
  const inside = new Map(parseCgroupFile(text!).map((m) => [m.name, m.path]));
  const roots = new Map<string, string>();
  for (const m of outside) {
    const relative = inside.get(m.name);
    if (relative === undefined) continue;
    const root = relative === '/' ? m.path : m.path.endsWith(relative) ? m.path.slice(0, -relative.length) || '/' : undefined;
    if (root === undefined) throw new TaskRefusedError(pid, `its cgroup ${m.name || '(v2)'}:${m.path} is outside its cgroup namespace (${relative} there)`);
    roots.set(m.name, root);
  }
  return roots;
}

/** One line of /proc/PID/uid_map or gid_map, as userns_entry keeps it. */
interface IdExtent {
  first: number;
  lower_first: number;
  count: number;
}

/**
 * The id maps of a task's user namespace (read from crr's, its parent: lower ids are crr's),
 * and the way from crr's ids to the namespace's: /proc shows a task's uids and gids as crr's
 * namespace sees them, while the images hold them as the task sees them (as CRIU's do).
 */
export class IdMaps {
  readonly uids: IdExtent[];
  readonly gids: IdExtent[];

  constructor(readonly pid: number) {
    this.uids = parseIdMap(readFileSync(`/proc/${pid}/uid_map`, 'latin1'));
    this.gids = parseIdMap(readFileSync(`/proc/${pid}/gid_map`, 'latin1'));
  }

  uid(id: number, what: string): number {
    return inner(this.uids, id, () => new TaskRefusedError(this.pid, `${what}: uid ${id} is not mapped into the tree's user namespace`));
  }

  gid(id: number, what: string): number {
    return inner(this.gids, id, () => new TaskRefusedError(this.pid, `${what}: gid ${id} is not mapped into the tree's user namespace`));
  }

  /** A creds_entry with its ids as the namespace sees them. */
  creds(creds: Entry, pid: number): Entry {
    const what = `pid ${pid}'s credentials`;
    const out: Entry = { ...creds };
    for (const f of ['uid', 'euid', 'suid', 'fsuid']) out[f] = this.uid(Number(creds[f]), what);
    for (const f of ['gid', 'egid', 'sgid', 'fsgid']) out[f] = this.gid(Number(creds[f]), what);
    if (Array.isArray(creds['groups'])) out['groups'] = (creds['groups'] as number[]).map((g) => this.gid(Number(g), what));
    return out;
  }
}

function parseIdMap(text: string): IdExtent[] {
  return text
    .split('\n')
    .map((line) => line.trim().split(/\s+/).map(Number))
    .filter((f) => f.length === 3 && f.every(Number.isFinite))
    .map(([first, lower, count]) => ({ first: first!, lower_first: lower!, count: count! }));
}

function inner(extents: readonly IdExtent[], id: number, unmapped: () => Error): number {
  const e = extents.find((x) => id >= x.lower_first && id < x.lower_first + x.count);
  if (!e) throw unmapped();
  return e.first + (id - e.lower_first);
}

/** The kinds a task may have a namespace of its own in, other than its parent's (nested). */
const NESTED = ['uts', 'ipc', 'net'] as const;
type NestedKind = (typeof NESTED)[number];
const isNested = (kind: NsKind): kind is NestedKind => (NESTED as readonly string[]).includes(kind);

/** The images of a UTS, IPC or (loopback-only) network namespace, read through task `pid` in it. */
function namespaceImages(kind: NestedKind, id: number, pid: number, ids: IdMaps | undefined): Array<[string, ImageItem[]]> {
  if (kind === 'uts') return [[`utsns-${id}.img`, [utsnsEntry(pid)]]];
  if (kind === 'net') return [[`netdev-${id}.img`, netdevEntries(pid)]];
  const objects = sysvObjects(pid, ids);
  return [[`ipcns-var-${id}.img`, [ipcVarEntry(pid)]], [`ipcns-shm-${id}.img`, objects.shm], [`ipcns-msg-${id}.img`, objects.msg], [`ipcns-sem-${id}.img`, objects.sem]];
}

/** Namespaces nested in the tree: kind -> namespace id -> the task that made it (its one task whose parent is not in it). */
export type NestedNamespaces = Map<NestedKind, Map<number, number>>;

/**
 * Throws TaskRefusedError for a namespace crr cannot restore: the root's, of a kind other than
 * those in RESTORED, where it is not crr's own; a task's other than its parent's, of a kind
 * other than uts, ipc and net, or one that its restore could not make by forking the task into a
 * new one (crr's own or the root's again, or entered by a second task from outside it).
 * Returns the kinds whose root namespace is not crr's, and the nested namespaces.
 */
export function checkNamespaces(tasks: readonly NamespacedTask[], own: Readonly<Record<string, number>>): { rootKinds: Set<NsKind>; nested: NestedNamespaces } {
  const byPid = new Map(tasks.map((t) => [t.pid, t]));
  const root = tasks[0]!;
  const differ = (a: Readonly<Record<string, number>>, b: Readonly<Record<string, number>>, field: NsField) => a[field] !== undefined && a[field] !== b[field];
  const rootKinds = new Set<NsKind>();
  for (const [kind, field] of NS_KINDS) {
    if (!differ(root.ids, own, field)) continue;
    if (!RESTORED.has(kind)) {
      throw new TaskRefusedError(root.pid, `the tree is in a ${kind} namespace other than crr's (${nsLink(root.pid, kind)}); crr restores pid, user, mount, cgroup, uts, ipc, net and time namespaces only: dump from inside that namespace, or run the program in crr's`);
    }
    rootKinds.add(kind);
  }
  const nested: NestedNamespaces = new Map();
  for (const task of tasks.slice(1)) {
    const parent = byPid.get(task.ppid);
    if (!parent) continue;
    for (const [kind, field] of NS_KINDS) {
      if (!differ(task.ids, parent.ids, field)) continue;
      const id = task.ids[field]!;
      const refuse = (why: string) => new TaskRefusedError(task.pid, `it is in a ${kind} namespace other than its parent's (pid ${parent.pid}): ${why}`);
      if (!isNested(kind)) throw refuse('crr restores nested uts, ipc and net namespaces only');
      if (id === root.ids[field] || id === own[field]) throw refuse(`back in ${id === own[field] ? "crr's" : "the tree root's"}, which crr cannot restore (it forks a task into a new namespace)`);
      const made = nested.get(kind) ?? new Map<number, number>();
      nested.set(kind, made);
      if (made.has(id)) throw refuse(`one task ${made.get(id)} entered from outside too; crr restores a nested namespace as made by one task, which the others descend from`);
      made.set(id, task.pid);
    }
  }
  return { rootKinds, nested };
}

function nsLink(pid: number, kind: string): string {
  try {
    return readFileSync(`/proc/${pid}/ns/${kind}`, 'latin1');
  } catch {
    return `/proc/${pid}/ns/${kind}`;
  }
}

/** utsns-ID.img's entry: the host and domain names in the task's UTS namespace. */
export function utsnsEntry(pid: number): Entry {
  const [nodename, domainname] = native.readInNamespace(`/proc/${pid}/ns/uts`, CLONE_NEWUTS, ['/proc/sys/kernel/hostname', '/proc/sys/kernel/domainname']);
  return { nodename: nodename!.trimEnd(), domainname: domainname!.trimEnd() };
}


const AF_INET = 2;
const SOCK_DGRAM = 2;
const SIOCGIFFLAGS = 0x8913;
const SIOCGIFMTU = 0x8921;
/** struct ifreq: the name, then a union (flags, mtu) at byte 16. */
export const IFREQ_BYTES = 40;
export const ND_TYPE_LOOPBACK = 1;
/** The loopback device's index in every network namespace. */
const LOOPBACK_IFINDEX = 1;

/** struct ifreq naming `device`, its union zeroed. */
export function ifreq(device: string): Buffer {
  const req = Buffer.alloc(IFREQ_BYTES);
  req.write(device, 0, 15, 'latin1');
  return req;
}

/**
 * netdev-ID.img's entries of the task's network namespace: lo with its flags (up or down) and
 * mtu. Any other device is refused: crr restores a loopback-only network namespace (a sandboxed
 * job's) and makes no links.
 */
function netdevEntries(pid: number): Entry[] {
  const devices = readFileSync(`/proc/${pid}/net/dev`, 'latin1').split('\n').slice(2).map((line) => line.split(':')[0]!.trim()).filter(Boolean);
  const others = devices.filter((d) => d !== 'lo');
  if (others.length) throw new TaskRefusedError(pid, `its network namespace has devices other than lo (${others.join(', ')}); crr restores a loopback-only network namespace`);
  const sock = native.socketInNamespace(`/proc/${pid}/ns/net`, AF_INET, SOCK_DGRAM, 0);
  try {
    const flags = native.ioctlBuffer(sock, SIOCGIFFLAGS, ifreq('lo')).readUInt16LE(16);
    const mtu = native.ioctlBuffer(sock, SIOCGIFMTU, ifreq('lo')).readInt32LE(16);
    return [{ type: ND_TYPE_LOOPBACK, ifindex: LOOPBACK_IFINDEX, mtu, flags, name: 'lo' }];
  } finally {
    native.close(sock);
  }
}

/** ipcns-var-ID.img's entry: the IPC namespace's sysctls (a *_next_id of -1, unset, as CRIU's unsigned 4294967295). */
export function ipcVarEntry(pid: number): Entry {
  const texts = native.readInNamespace(`/proc/${pid}/ns/ipc`, CLONE_NEWIPC, ['/proc/sys/kernel/sem', ...IPC_SYSCTLS.map(([, f]) => `/proc/sys/${f}`)]);
  const entry: Entry = { sem_ctls: texts[0]!.trim().split(/\s+/).map(Number) };
  for (const [i, [field]] of IPC_SYSCTLS.entries()) {
    const value = BigInt(texts[1 + i]!.trim());
    entry[field] = field === 'shm_ctlmax' || field === 'shm_ctlall' ? value : Number(BigInt.asUintN(32, value));
  }
  return entry;
}

const padded = (bytes: Uint8Array, to: number) => Buffer.concat([bytes, Buffer.alloc((to - (bytes.length % to)) % to)]);

/**
 * The SysV objects of the task's IPC namespace as ipcns-shm/msg/sem entries with their payloads,
 * as CRIU lays them out: a segment's bytes inline (in_pagemaps false), padded to 4; each queue's
 * messages (u32 length, ipc_msg, bytes padded to 8); a set's u16 values padded to 8.
 */
function sysvObjects(pid: number, ids: IdMaps | undefined): { shm: ImageItem[]; msg: ImageItem[]; sem: ImageItem[] } {
  const read = native.sysvIpcRead(`/proc/${pid}/ns/ipc`);
  // Owners as the tree's user namespace sees them (the reading thread is in crr's).
  const uid = (id: number) => (ids ? ids.uid(id, 'a SysV object\'s owner') : id);
  const gid = (id: number) => (ids ? ids.gid(id, 'a SysV object\'s group') : id);
  const desc = (o: SysvDesc) => ({ key: o.key >>> 0, uid: uid(o.uid), gid: gid(o.gid), cuid: uid(o.cuid), cgid: gid(o.cgid), mode: o.mode, id: o.id });
  return {
    shm: read.shm.map((o) => ({ entry: { desc: desc(o), size: BigInt(o.size), in_pagemaps: false }, payload: padded(o.data, 4) })),
    msg: read.msg.map((o) => ({
      entry: { desc: desc(o), qbytes: o.qbytes, qnum: o.messages.length },
      payload: Buffer.concat(o.messages.flatMap((m) => {
        const head = encodeEntry('ipc_msg', { mtype: m.mtype, msize: m.data.length });
        const length = Buffer.alloc(4);
        length.writeUInt32LE(head.length);
        return [length, head, padded(m.data, 8)];
      })),
    })),
    sem: read.sem.map((o) => {
      const values = Buffer.alloc(o.values.length * 2);
      o.values.forEach((v, i) => values.writeUInt16LE(v, i * 2));
      return { entry: { desc: desc(o), nsems: o.values.length }, payload: padded(values, 8) };
    }),
  };
}

/**
 * timens-0.img's entry: CLOCK_MONOTONIC and CLOCK_BOOTTIME as the root task sees them, that is
 * crr's clocks plus the offsets of the root's time namespace (a tree restored by crr lives in
 * one, so its clocks keep going from where they were at its first dump).
 */
export function timensEntry(rootPid: number): Entry {
  const mono = process.hrtime.bigint();
  const uptime = Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]) * 1e9;
  // /proc/uptime is CLOCK_BOOTTIME in centiseconds: take monotonic's precision unless they differ (suspend).
  const boot = Math.abs(uptime - Number(mono)) < 2e7 ? mono : BigInt(Math.round(uptime));
  const offsets = timeOffsetsOf(rootPid);
  const ts = (ns: bigint) => ({ tv_sec: ns / 1_000_000_000n, tv_nsec: ns % 1_000_000_000n });
  return { monotonic: ts(mono + offsets.monotonic), boottime: ts(boot + offsets.boottime) };
}

/** /proc/PID/timens_offsets: "monotonic SECS NANOS" and "boottime SECS NANOS" lines. */
function timeOffsetsOf(pid: number): { monotonic: bigint; boottime: bigint } {
  const out = { monotonic: 0n, boottime: 0n };
  let text = '';
  try {
    text = readFileSync(`/proc/${pid}/timens_offsets`, 'latin1');
  } catch {
    return out; // no time namespaces in this kernel
  }
  for (const line of text.split('\n')) {
    const [name, secs, nanos] = line.trim().split(/\s+/);
    if (name === 'monotonic' || name === 'boottime') out[name] = BigInt(secs!) * 1_000_000_000n + BigInt(nanos!);
  }
  return out;
}

/**
 * The numbers a task's /proc/PID/status gives its PID, process group and session in each PID
 * namespace, outermost (crr's) first.
 */
function nsNumbers(hostPid: number): { pid?: number[]; pgid?: number[]; sid?: number[] } {
  let status: string;
  try {
    status = readFileSync(`/proc/${hostPid}/status`, 'latin1');
  } catch {
    return {};
  }
  const list = (field: string) => new RegExp(`^${field}:\\s*(.*)$`, 'm').exec(status)?.[1]?.trim().split(/\s+/).map(Number);
  return { pid: list('NSpid'), pgid: list('NSpgid'), sid: list('NSsid') };
}

function nsPids(hostPid: number): number[] | undefined {
  return nsNumbers(hostPid).pid;
}

/**
 * The way from crr's PIDs to those of the tree's PID namespace (the root's), for a tree that has
 * one of its own: what pstree, the image names, locks, timers and terminals hold. A session or
 * group whose leader has exited (a daemon's double fork) is known by its members' NSsid and
 * NSpgid. A PID with no number there (a session or group of a process outside the namespace)
 * throws TaskRefusedError.
 */
export function namespacePids(rootPid: number, tids: readonly number[]): (hostPid: number) => number {
  const depth = nsPids(rootPid)?.length ?? 1;
  const known = new Map<number, number>();
  for (const tid of tids) {
    // (A session or group from outside the namespace shows as 0 in it: no number there.)
    for (const list of Object.values(nsNumbers(tid))) {
      if (list?.length === depth && list[depth - 1]) known.set(list[0]!, list[depth - 1]!);
    }
  }
  return (hostPid) => {
    if (hostPid === 0) return 0;
    let pid = known.get(hostPid);
    if (pid === undefined) {
      const list = nsPids(hostPid);
      if (list?.length !== depth) throw new TaskRefusedError(rootPid, `PID ${hostPid} (a session, group or owner the tree refers to) has no number in the tree's PID namespace`);
      known.set(hostPid, (pid = list[depth - 1]!));
    }
    return pid;
  };
}
