// The tree's mount namespace at restore (mountpoints-ID.img). The root's parent holds a copy of
// crr's mount namespace (unshared, or the PID namespace's init's), made private first so nothing
// reaches crr's. It becomes the tree's: mounts the tree did not have are detached (deepest
// first); each mount it had and the copy lacks is made, parents first (howToMake: a tmpfs
// with its files, tmpfs-dev-DEV.tar.gz.img, put in by crr through /proc/PID/root; a fresh proc,
// sysfs, mqueue or cgroup2; a bind mount of what crr sees); per-mount flags (ro, nosuid, ...)
// follow. The mount syscalls are the holder's, injected; their strings go on its stack.
import { chmodSync, existsSync, lchownSync, mkdirSync, readFileSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { native } from '../actors/native.js';
import { ImageError, StageError } from '../errors.js';
import type { Checkpoint, Entry } from '../images/index.js';
import { readTarGz } from '../images/tar.js';
import { FRESH_FILESYSTEMS, howToMake, MNT_FSTYPES, mountFlags, type MountMaking, MS_NOATIME, MS_NODEV, MS_NODIRATIME, MS_NOEXEC, MS_NOSUID, MS_RDONLY, MS_RELATIME, parseMountinfo, type MountLine } from '../mountinfo.js';

const FSTYPE_NAMES: ReadonlyMap<number, string> = new Map(Object.entries(MNT_FSTYPES).map(([name, code]) => [code, name]));
const SYS_CHDIR = 80;
const SYS_PIVOT_ROOT = 155;
const SYS_MOUNT = 165;
const SYS_UMOUNT2 = 166;
const S_IFCHR = 0o020000;
const S_IFBLK = 0o060000;
const MNT_DETACH = 2;
const MS_BIND = 0x1000;
const MS_REMOUNT = 0x20;
const MS_REC = 0x4000;
const MS_PRIVATE = 1 << 18;
/** The per-mount flags a remount of a bind mount may set. */
const PER_MOUNT = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME | MS_NODIRATIME | MS_RELATIME;

export interface TreeMounts {
  readonly mounts: readonly MountLine[];
  /** Per-mount flags by mount point. */
  readonly flags: ReadonlyMap<string, number>;
  /** tmpfs-dev archives' paths by mount id. */
  readonly archives: ReadonlyMap<number, string>;
  /** ext_key by mount id: mounts the dump left out (criu's --external mnt[...]). */
  readonly extKeys: ReadonlyMap<number, string>;
  /** A root of the tree's own (a container's): the directory of crr's that becomes it. */
  readonly newRoot?: string;
  /** By mount id: the path of crr's an external mount is bound from (criu's --external mnt[KEY]:PATH at restore). */
  readonly externalSources?: ReadonlyMap<number, string>;
}

/** The tree's mounts from mountpoints-ID.img (mount points as absolute paths). */
export function treeMounts(checkpoint: Checkpoint, id: number): TreeMounts {
  const mounts: MountLine[] = [];
  const flags = new Map<string, number>();
  const archives = new Map<number, string>();
  const extKeys = new Map<number, string>();
  for (const lazy of checkpoint.image(`mountpoints-${id}.img`).entries()) {
    const e = lazy.decode() as Entry;
    const rootDev = Number(e['root_dev'] ?? 0);
    const mountPoint = String(e['mountpoint'] ?? '/').replace(/^\.(?=\/|$)/, '') || '/';
    const fstype = FSTYPE_NAMES.get(Number(e['fstype'])) ?? String(e['fsname'] ?? '');
    const mntId = Number(e['mnt_id']);
    // mountinfo's mount points are absolute and canonical, and a root (a path in the filesystem,
    // or a namespace file's "net:[INODE]") has no ".." either: one would reach out of the tree's root.
    const root = String(e['root'] ?? '/');
    if (!mountPoint.startsWith('/') || mountPoint.split('/').some((part) => part === '.' || part === '..')) throw new ImageError(checkpoint.path(`mountpoints-${id}.img`), 0, `an absolute mountpoint without "." or ".." (mount ${mntId})`, JSON.stringify(mountPoint));
    if (root.split('/').includes('..')) throw new ImageError(checkpoint.path(`mountpoints-${id}.img`), 0, `a root without ".." (mount ${mntId})`, JSON.stringify(root));
    mounts.push({ id: mntId, parent: Number(e['parent_mnt_id'] ?? 0), dev: `${rootDev >>> 20}:${rootDev & 0xfffff}`, root, mountPoint, options: '', fstype, source: String(e['source'] ?? ''), superOptions: String(e['options'] ?? '') });
    flags.set(mountPoint, Number(e['flags'] ?? 0));
    const archive = `tmpfs-dev-${rootDev}.tar.gz.img`;
    if (checkpoint.has(archive)) archives.set(mntId, checkpoint.path(archive));
    if (e['ext_key'] !== undefined && e['ext_key'] !== '') extKeys.set(mntId, String(e['ext_key']));
  }
  return { mounts, flags, archives, extKeys };
}

/**
 * Mount points of the tree's own mounts (not copies of crr's): files below them exist only once
 * they are made. Under a root of the tree's own, every mount but the root (its files are in
 * newRoot already).
 */
export function ownMountPoints(tree: TreeMounts, own: readonly MountLine[]): string[] {
  // A proc, sysfs, mqueue or cgroup2 holds the kernel's view of the tree's namespaces (a fresh
  // PID namespace gets a /proc of its own: /proc/PID of a restored task is not crr's /proc/PID).
  const made = tree.newRoot
    ? tree.mounts.filter((m) => m.mountPoint !== '/')
    : tree.mounts.filter((m) => FRESH_FILESYSTEMS.has(m.fstype) || howToMake(m, own, tree.mounts).how !== 'inherited');
  return made.map((m) => m.mountPoint);
}

/** Where crr finds the file a restored task knows as `path`: below the tree's root of its own, if it has one. */
export function crrPathOf(tree: TreeMounts | undefined, path: string): string {
  return tree?.newRoot ? `${tree.newRoot.replace(/\/$/, '')}${path}` : path;
}

/** What makeMounts needs of the stopped holder. */
export interface HolderOps {
  readonly pid: number;
  /** Injects a syscall; throws its errno as a NativeError. */
  inject(nr: number, args: Array<number | bigint>, syscall: string, detail: string): Promise<bigint>;
  /** Writes NUL-terminated strings to the holder's stack; their addresses. */
  strings(...list: string[]): bigint[];
  /** Its mount namespace's mountinfo now. */
  mountinfo(): string;
  /**
   * A bind mount's source that does not exist yet, as crr sees it: a pty slave of the tree's
   * devpts (runc binds a container's terminal at /dev/console) is made here, before the bind.
   */
  missingSource?(path: string): void;
}

/** Superblock options that are the filesystem's own (tmpfs: size, mode, uid, gid, nr_inodes...; devpts: mode, ptmxmode, gid), without rw/ro and seclabel. */
function ownOptions(superOptions: string): string {
  return superOptions.split(',').filter((o) => o && o !== 'rw' && o !== 'ro' && o !== 'seclabel').join(',');
}

export async function makeMounts(holder: HolderOps, tree: TreeMounts, privateAlready: boolean): Promise<void> {
  const mount = async (source: string | undefined, target: string, fstype: string | undefined, flags: number, data: string | undefined, what: string) => {
    const [s = 0n, t = 0n, f = 0n, d = 0n] = holder.strings(source ?? '', target, fstype ?? '', data ?? '');
    await holder.inject(SYS_MOUNT, [source === undefined ? 0 : s, t, fstype === undefined ? 0 : f, flags, data === undefined ? 0 : d], 'mount', what);
  };
  const path = async (nr: number, args: Array<number | bigint>, name: string, text: string, what: string) => {
    const [p = 0n] = holder.strings(text);
    await holder.inject(nr, [p, ...args], name, what);
  };
  if (!privateAlready) await mount(undefined, '/', undefined, MS_REC | MS_PRIVATE, undefined, 'make / private');
  const base = tree.newRoot?.replace(/\/$/, '') ?? '';
  // pivot_root needs the new root to be a mount point: a bind mount of it on itself.
  if (tree.newRoot) await mount(tree.newRoot, tree.newRoot, undefined, MS_BIND, undefined, `bind ${tree.newRoot}, the tree's root`);
  const copy = parseMountinfo(holder.mountinfo());
  if (!tree.newRoot) {
    const wanted = new Set(tree.mounts.map((m) => m.mountPoint));
    const extra = copy.filter((m) => !wanted.has(m.mountPoint)).sort((a, b) => b.mountPoint.length - a.mountPoint.length);
    for (const m of extra) await path(SYS_UMOUNT2, [MNT_DETACH], 'umount2', m.mountPoint, `detach ${m.mountPoint}, not in the tree's namespace`);
  }
  const root = `/proc/${holder.pid}/root`;
  for (const m of tree.mounts) {
    if (tree.newRoot && m.mountPoint === '/') continue;
    const given = tree.externalSources?.get(m.id);
    let making: MountMaking = given !== undefined ? { how: 'bind', source: given } : howToMake(m, copy, tree.mounts);
    const flags = (tree.flags.get(m.mountPoint) ?? 0) & PER_MOUNT;
    const where = `${m.fstype} at ${m.mountPoint}`;
    if (making.how === 'unsupported') throw new StageError({ stage: 'plan', resource: 'namespaces', message: `the tree's ${where} (${m.source}) cannot be made here: no mount of its filesystem (${m.dev}${m.root}) in crr's namespace` });
    if (making.how === 'inherited') {
      if (!tree.newRoot) {
        if ((mountFlags(making.own.options) & PER_MOUNT) !== flags) await mount(undefined, m.mountPoint, undefined, MS_REMOUNT | MS_BIND | flags, undefined, `remount ${m.mountPoint} with its flags`);
        continue;
      }
      // Under a new root a mount crr has too is made again there: a copy of crr's.
      making = FRESH_FILESYSTEMS.has(m.fstype) ? { how: 'fresh' } : { how: 'bind', source: making.own.mountPoint };
    }
    const target = `${base}${m.mountPoint}`;
    // Sources as the holder sees them: crr's paths, or the tree's below the new root.
    const source = making.how === 'bind' ? making.source : making.how === 'bind-tree' ? `${base}${making.path}` : undefined;
    if (source !== undefined && !existsSync(`${root}${source}`)) holder.missingSource?.(`${root}${source}`);
    makeMountPoint(`${root}${target}`, source !== undefined && !statSync(`${root}${source}`).isDirectory());
    if (making.how === 'tmpfs') {
      await mount('tmpfs', target, 'tmpfs', flags & ~MS_RDONLY, ownOptions(m.superOptions), `tmpfs at ${m.mountPoint}`);
      const archive = tree.archives.get(m.id);
      if (archive) fillTmpfs(`${root}${target === '/' ? '' : target}`, archive);
      if (flags & MS_RDONLY) await mount(undefined, target, undefined, MS_REMOUNT | flags, ownOptions(m.superOptions), `make the tmpfs at ${m.mountPoint} read-only`);
    } else if (making.how === 'fresh') {
      // devpts's own options (mode, ptmxmode, gid) make its ptmx usable; the others take none here.
      await mount(m.fstype, target, m.fstype, flags, m.fstype === 'devpts' ? ownOptions(m.superOptions) : undefined, where);
    } else {
      await mount(source, target, undefined, MS_BIND, undefined, `bind ${source} at ${m.mountPoint}`);
      if (flags) await mount(undefined, target, undefined, MS_REMOUNT | MS_BIND | flags, undefined, `the flags of ${m.mountPoint}`);
    }
  }
  if (!tree.newRoot) return;
  // pivot_root(".", "."): the old root ends up stacked on the new one, and the detach takes it
  // and every mount of crr's below it away.
  await path(SYS_CHDIR, [], 'chdir', tree.newRoot, `enter ${tree.newRoot}, the tree's root`);
  const [dot = 0n] = holder.strings('.');
  await holder.inject(SYS_PIVOT_ROOT, [dot, dot], 'pivot_root', `make ${tree.newRoot} the root`);
  await holder.inject(SYS_UMOUNT2, [dot, MNT_DETACH], 'umount2', "detach crr's root");
  await path(SYS_CHDIR, [], 'chdir', '/', 'enter the new root');
  const rootFlags = (tree.flags.get('/') ?? 0) & PER_MOUNT;
  if (rootFlags) await mount(undefined, '/', undefined, MS_REMOUNT | MS_BIND | rootFlags, undefined, 'the flags of /');
}

/** A missing mount point made: a directory, or an empty file for a file's bind mount (a device's on a container's /dev). */
function makeMountPoint(path: string, forFile: boolean): void {
  if (existsSync(path)) return;
  mkdirSync(forFile ? dirname(path) : path, { recursive: true });
  if (forFile) writeFileSync(path, '', { flag: 'wx' });
}

/** The files of a tmpfs archive put in below `dir` (crr's path to the mount), owners and times kept. */
function fillTmpfs(dir: string, archive: string): void {
  const entries = readTarGz(readFileSync(archive), archive);
  const links = new Set<string>();
  for (const e of entries) {
    // Nothing is written through a symlink the archive made (it could point anywhere).
    const parts = e.path.split('/');
    if (parts.some((_p, i) => i < parts.length - 1 && links.has(parts.slice(0, i + 1).join('/')))) throw new ImageError(archive, 0, 'no entry below a symlink of the archive', e.path);
    if (e.type === 'symlink') links.add(e.path);
    const path = `${dir}/${e.path}`;
    if (e.type === 'dir') mkdirSync(path, { recursive: true });
    else if (e.type === 'symlink') symlinkSync(e.target ?? '', path);
    else if (e.type === 'chardev' || e.type === 'blockdev') native.mknod(path, (e.type === 'chardev' ? S_IFCHR : S_IFBLK) | (e.mode & 0o7777), e.major ?? 0, e.minor ?? 0);
    else writeFileSync(path, e.data ?? new Uint8Array());
    lchownSync(path, e.uid, e.gid);
    if (e.type !== 'symlink') chmodSync(path, e.mode & 0o7777);
  }
  // Times last: adding entries to a directory moves its mtime.
  for (const e of [...entries].reverse()) if (e.type !== 'symlink') utimesSync(`${dir}/${e.path}`, e.mtime, e.mtime);
}
