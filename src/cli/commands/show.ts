// `crr show FILE.img` prints one image as crit-style JSON (`crit decode --pretty`'s shape, so
// scripts written for crit keep working); `crr show DIR` summarises a whole checkpoint: the task
// tree, each task's memory and fds. `--json` gives the summary in a form a machine reads.
import { readlinkSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { constants } from 'node:os';
import { ImageError, UsageError } from '../../errors.js';
import { entryToCrit, stringifyCrit } from '../../images/crit-json.js';
import { ghostsOf } from '../../restore/files.js';
import { treeMounts } from '../../restore/mounts.js';
import { packetsWithFds } from '../../restore/in-flight.js';
import { nameText, outsideUnixSockets } from '../../resources/unixsk-plan.js';
import { perKey } from '../../memo.js';
import { socketText } from '../../images/inet-address.js';
import { readImage } from '../../images/reader.js';
import { CTTY_INFO_ID, FD_TYPES, fileSubMessage, openCheckpoint, type Checkpoint } from '../../images/checkpoint.js';
import { hasParentCheckpoint, readPagemap, PE_PRESENT } from '../../images/pagemap.js';
import type { Entry } from '../../images/schema.js';

const USAGE = 'usage: crr show FILE.img | DIR [--json]   (also -i FILE)';

/** One image as `{magic, entries}`, the way crit decode prints it. */
export function imageAsCrit(path: string): { magic: string; entries: unknown[] } {
  const image = readImage(path);
  const entries: unknown[] = [];
  for (const lazy of image.entries()) {
    const entry = lazy.decode();
    try {
      entries.push(entryToCrit(lazy.type, entry, lazy.payload));
    } catch (err) {
      // A message can decode as protobuf yet hold values crit cannot name (a bad enum, say).
      throw new ImageError(path, lazy.offset, `a ${lazy.type} entry crit can print`, (err as Error).message);
    }
  }
  return { magic: image.kind.magicName, entries };
}

export interface FdSummary {
  fd: number;
  type: string;
  fileId: number;
  /** Human words for what the fd is: a path, `pipe:[id]`, `socket:[ino]`, ... */
  what: string;
}

export interface TaskSummary {
  pid: number;
  ppid: number;
  pgid: number;
  sid: number;
  threads: number[];
  comm: string;
  zombie: boolean;
  /** The stop signal of a task stopped when dumped (SIGSTOP, SIGTSTP...). */
  stopped?: string;
  vmas: number;
  /** Bytes of page data stored for this task (PRESENT runs). */
  dumpedBytes: number;
  pagemapRuns: number;
  /** Kernel AIO contexts (io_setup), each its ring's address. */
  aioRings: string[];
  fds: FdSummary[];
}

export interface CheckpointSummary {
  dir: string;
  imgVersion: number;
  images: number;
  /** The tree's own namespaces (where the root's differs from the dumper's), each described. */
  namespaces: string[];
  /** An incremental dump's parent checkpoint (its "parent" link), which keeps the pages it did not store. */
  parent?: string;
  tasks: TaskSummary[];
}

const FD_TYPE_NAMES = Object.fromEntries(Object.entries(FD_TYPES).map(([name, n]) => [n, name]));

function text(v: unknown): string {
  if (v instanceof Uint8Array) return Buffer.from(v).toString('utf8');
  return typeof v === 'bigint' ? v.toString() : String(v);
}

/** What a file is, in the words /proc/PID/fd would use where there are some. */
export function describeFile(type: string, file: Entry): string {
  const sub = fileSubMessage(file);
  switch (type) {
    case 'REG':
      return sub['name'] !== undefined ? text(sub['name']) : 'regular file';
    case 'PIPE':
      return `pipe:[${text(sub['pipe_id'])}]`;
    case 'FIFO':
      return `fifo:[${text(sub['pipe_id'])}]`;
    case 'UNIXSK': {
      const name = sub['name'] instanceof Uint8Array && sub['name'].length ? ` ${text(sub['name']).replace(/\0/g, '@')}` : '';
      return `socket:[${text(sub['ino'])}] unix${name}`;
    }
    case 'INETSK':
      return `socket:[${text(sub['ino'])}] ${socketText(sub)}`;
    case 'PACKETSK':
    case 'NETLINKSK':
      return `socket:[${text(sub['ino'])}] ${type.replace(/SK$/, '').toLowerCase()}`;
    case 'TTY': {
      const info = Number(sub['tty_info_id']);
      if (info === CTTY_INFO_ID) return '/dev/tty';
      return `pty ${info >> 1} ${info % 2 ? 'master' : 'slave'}`;
    }
    case 'MEMFD':
      return `memfd (inode id ${text(sub['inode_id'])})`;
    case 'NS':
      return `namespace (id ${text(sub['ns_id'])}, CLONE_NEW* 0x${Number(sub['ns_cflag'] ?? 0).toString(16)})`;
    default:
      return `anon_inode:${type.toLowerCase()}`;
  }
}

/** For a unix socket with fds in flight in its queue: what they are, in queue order. */
function inFlightText(checkpoint: Checkpoint, fileId: number): string {
  const packets = packetsWithFds(checkpoint).get(fileId);
  if (!packets) return '';
  const what = packets.flat().map((id) => {
    const file = checkpoint.file(id, 'sk-queues.img');
    return describeFile(FD_TYPE_NAMES[Number(file['type'])] ?? String(file['type']), file);
  });
  return ` (fds in flight: ${what.join(', ')})`;
}

const outsideSockets = perKey((checkpoint: Checkpoint) => outsideUnixSockets(checkpoint.files()));

/** For a unix socket connected to a socket outside the tree: which. */
function outsidePeerText(checkpoint: Checkpoint, file: Entry): string {
  const peer = Number((file['usk'] as Entry | undefined)?.['peer'] ?? 0);
  const name = peer ? outsideSockets(checkpoint).get(peer) : undefined;
  return name === undefined ? '' : ` -> ${nameText(name)} (outside the tree; connected again at restore)`;
}

function signalName(signal: number): string {
  return Object.entries(constants.signals).find(([, n]) => n === signal)?.[0] ?? `signal ${signal}`;
}

function summariseTask(checkpoint: Checkpoint, task: Checkpoint['tasks'][number]): TaskSummary {
  const core = checkpoint.core(task.pid);
  const tc = (core['tc'] ?? {}) as Entry;
  const zombie = checkpoint.isZombie(task.pid);
  const summary: TaskSummary = {
    ...task,
    comm: tc['comm'] !== undefined ? text(tc['comm']) : '',
    zombie,
    vmas: 0,
    dumpedBytes: 0,
    pagemapRuns: 0,
    aioRings: [],
    fds: [],
  };
  if (zombie) return summary;
  const stopSignal = checkpoint.stopSignal(task.pid);
  if (stopSignal) summary.stopped = signalName(stopSignal);
  const mm = checkpoint.mm(task.pid);
  summary.vmas = Array.isArray(mm['vmas']) ? mm['vmas'].length : 0;
  summary.aioRings = ((mm['aios'] as Entry[] | undefined) ?? []).map((a) => `0x${BigInt(a['id'] as bigint).toString(16)}`);
  const pagemap = readPagemap(checkpoint, task.pid);
  summary.dumpedBytes = pagemap.presentBytes;
  summary.pagemapRuns = pagemap.runs.filter((r) => r.flags & PE_PRESENT).length;
  const filesId = checkpoint.ids(task.pid).files_id;
  if (!checkpoint.has(`fdinfo-${filesId}.img`)) return summary;
  for (const fd of checkpoint.fdinfo(filesId)) {
    const file = checkpoint.file(fd.id, `fdinfo-${filesId}.img`);
    const type = FD_TYPE_NAMES[fd.type] ?? String(fd.type);
    const deleted = ghostsOf(checkpoint).has(fd.id) ? ' (deleted)' : '';
    summary.fds.push({ fd: fd.fd, type, fileId: fd.id, what: describeFile(type, file) + deleted + inFlightText(checkpoint, fd.id) + outsidePeerText(checkpoint, file) });
  }
  summary.fds.sort((a, b) => a.fd - b.fd);
  return summary;
}

/**
 * The root's namespaces that are not the dumper's (inventory root_ids), then those nested in the
 * tree (a task's other than its parent's), with what their images hold.
 */
function namespacesOf(checkpoint: Checkpoint): string[] {
  const live = checkpoint.tasks.filter((t) => !checkpoint.isZombie(t.pid));
  const root = live.find((t) => t.ppid === 0);
  if (!root) return [];
  const own = (checkpoint.inventory['root_ids'] ?? {}) as Entry;
  const idsOf = (pid: number) => checkpoint.ids(pid) as Record<string, number | undefined>;
  const ids = idsOf(root.pid);
  const out: string[] = [];
  for (const kind of ['pid', 'net', 'ipc', 'uts', 'time', 'mnt', 'user', 'cgroup']) {
    const id = ids[`${kind}_ns_id`];
    if (id === undefined || own[`${kind}_ns_id`] === undefined || Number(own[`${kind}_ns_id`]) === id) continue;
    out.push(`${kind}${namespaceText(checkpoint, kind, id)}`);
  }
  for (const task of live) {
    const parent = task.ppid ? idsOf(task.ppid) : undefined;
    if (!parent) continue;
    for (const kind of ['net', 'ipc', 'uts']) {
      const id = idsOf(task.pid)[`${kind}_ns_id`];
      if (id !== undefined && parent[`${kind}_ns_id`] !== undefined && id !== parent[`${kind}_ns_id`]) out.push(`${kind} of task ${task.pid} (nested)${namespaceText(checkpoint, kind, id)}`);
    }
  }
  return out;
}

/** What a namespace's images hold, as ": ..." (empty when there is nothing to say). */
function namespaceText(checkpoint: Checkpoint, kind: string, id: number): string {
  const entries = (name: string) => (checkpoint.has(name) ? [...checkpoint.image(name).entries()].map((e) => e.decode()) : []);
  if (kind === 'uts') {
    const [uts] = entries(`utsns-${id}.img`);
    return uts ? `: host ${text(uts['nodename'])}, domain ${text(uts['domainname'])}` : '';
  }
  if (kind === 'ipc') {
    const count = (['shm', 'msg', 'sem'] as const).map((k) => `${entries(`ipcns-${k}-${id}.img`).length} ${k}`);
    return `: SysV ${count.join(', ')}`;
  }
  if (kind === 'net') {
    const [netns] = entries(`netns-${id}.img`);
    const external = netns?.['ext_key'] ? text(netns['ext_key']) : '';
    return external ? `: external '${external}' (left out of the dump; the restore joins the one given for it)` : `: ${entries(`netdev-${id}.img`).map((d) => `${text(d['name'])} ${Number(d['flags']) & 1 ? 'up' : 'down'}`).join(', ')}`;
  }
  if (kind === 'mnt' && checkpoint.has(`mountpoints-${id}.img`)) {
    const { mounts } = treeMounts(checkpoint, id);
    const root = mounts.find((m) => m.mountPoint === '/');
    const ownRoot = root && !entries(`mountpoints-${id}.img`).find((e) => e['mnt_id'] === root.id)?.['ext_mount'];
    return `: ${mounts.length} mounts${ownRoot ? `, a root of its own (${root.fstype} ${root.source}: not in the checkpoint; the restore takes --root DIR, or finds it where crr sees it)` : ''}`;
  }
  return '';
}

export function summariseCheckpoint(dir: string): CheckpointSummary {
  const checkpoint = openCheckpoint(dir);
  return {
    dir,
    imgVersion: Number(checkpoint.inventory['img_version']),
    images: checkpoint.imageFiles.size,
    namespaces: namespacesOf(checkpoint),
    ...(hasParentCheckpoint(checkpoint) ? { parent: readlinkSync(join(dir, 'parent')) } : {}),
    tasks: checkpoint.tasks.map((task) => summariseTask(checkpoint, task)),
  };
}

function size(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(0)} KiB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

/** Depth of each task in the tree, for indenting comm. */
function depths(tasks: TaskSummary[]): Map<number, number> {
  const byPid = new Map(tasks.map((t) => [t.pid, t]));
  const depth = new Map<number, number>();
  const of = (t: TaskSummary, seen = 0): number => {
    const parent = byPid.get(t.ppid);
    return parent && seen < tasks.length ? of(parent, seen + 1) + 1 : 0;
  };
  for (const t of tasks) depth.set(t.pid, of(t));
  return depth;
}

export function formatSummary(summary: CheckpointSummary): string {
  const lines = [`checkpoint ${summary.dir}: img_version ${summary.imgVersion}, ${summary.images} images, ${summary.tasks.length} tasks`];
  if (summary.namespaces.length) lines.push(`namespaces of its own: ${summary.namespaces.join('; ')}`);
  if (summary.parent !== undefined) lines.push(`an incremental dump: the pages it did not store are in its parent checkpoint ${summary.parent}`);
  lines.push('');
  const header = ['PID', 'PPID', 'PGID', 'SID', 'THREADS', 'VMAS', 'MEMORY', 'COMM'];
  const depth = depths(summary.tasks);
  const rows = summary.tasks.map((t) => [
    String(t.pid),
    String(t.ppid),
    String(t.pgid),
    String(t.sid),
    t.threads.join(','),
    String(t.vmas),
    size(t.dumpedBytes),
    `${'  '.repeat(depth.get(t.pid) ?? 0)}${t.comm}${t.zombie ? ' <zombie>' : ''}${t.stopped ? ` <stopped by ${t.stopped}>` : ''}`,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  for (const row of [header, ...rows]) lines.push(row.map((c, i) => (i === row.length - 1 ? c : c.padEnd(widths[i]!))).join('  '));
  for (const t of summary.tasks) {
    lines.push('', `task ${t.pid} (${t.comm}) fds:`);
    if (!t.fds.length) lines.push('  (none)');
    for (const fd of t.fds) lines.push(`  ${String(fd.fd).padStart(4)}  ${fd.type.padEnd(6)}  ${fd.what}  (file id ${fd.fileId})`);
    if (t.aioRings.length) lines.push(`  AIO contexts (io_setup): rings at ${t.aioRings.join(', ')}`);
  }
  return `${lines.join('\n')}\n`;
}

function parseArgs(argv: string[]): { target: string; json: boolean } {
  let target: string | undefined;
  let json = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--json') json = true;
    else if (arg === '-i' || arg === '--in' || arg === '-D') target = argv[++i];
    else if (arg.startsWith('-')) throw new UsageError(`show: unknown option '${arg}' (${USAGE})`);
    else if (target === undefined) target = arg;
    else throw new UsageError(`show: one FILE or DIR only (${USAGE})`);
  }
  if (!target) throw new UsageError(`show: nothing to show (${USAGE})`);
  return { target, json };
}

export async function run(argv: string[]): Promise<number> {
  const { target, json } = parseArgs(argv);
  let isDir: boolean;
  try {
    isDir = statSync(target).isDirectory();
  } catch (err) {
    throw new ImageError(target, 0, 'an image file or checkpoint directory', (err as NodeJS.ErrnoException).code);
  }
  if (!isDir) {
    process.stdout.write(`${stringifyCrit(imageAsCrit(target))}\n`);
    return 0;
  }
  const summary = summariseCheckpoint(target);
  process.stdout.write(json ? `${JSON.stringify(summary, null, 2)}\n` : formatSummary(summary));
  return 0;
}
