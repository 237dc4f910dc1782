// /proc/PID/mountinfo, for the dump (a tree's mount namespace, against crr's) and the restore
// (the holder's namespace, to make the tree's again), and the mount flags its options mean.

export interface MountLine {
  readonly id: number;
  readonly parent: number;
  /** "major:minor" of the filesystem. */
  readonly dev: string;
  /** The path inside its filesystem this mount shows (a bind mount's source). */
  readonly root: string;
  readonly mountPoint: string;
  /** Per-mount options (ro, nosuid, nodev, noexec, relatime...). */
  readonly options: string;
  readonly fstype: string;
  readonly source: string;
  /** Superblock options (tmpfs size and mode, ...). */
  readonly superOptions: string;
}

/** mountinfo escapes space, tab, newline and backslash as \ooo. */
const unescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));

export function parseMountinfo(text: string): MountLine[] {
  const out: MountLine[] = [];
  for (const line of text.split('\n')) {
    const [left, right] = line.split(' - ');
    if (!left || !right) continue;
    const f = left.split(' ');
    const [fstype = '', source = '', superOptions = ''] = right.split(' ');
    out.push({ id: Number(f[0]), parent: Number(f[1]), dev: f[2]!, root: unescape(f[3]!), mountPoint: unescape(f[4]!), options: f[5]!, fstype, source: unescape(source), superOptions });
  }
  return out;
}

export const MS_RDONLY = 0x1;
export const MS_NOSUID = 0x2;
export const MS_NODEV = 0x4;
export const MS_NOEXEC = 0x8;
export const MS_NOATIME = 0x400;
export const MS_NODIRATIME = 0x800;
export const MS_RELATIME = 0x200000;
export const MS_STRICTATIME = 0x1000000;

const FLAG_OF_OPTION: Readonly<Record<string, number>> = {
  ro: MS_RDONLY,
  nosuid: MS_NOSUID,
  nodev: MS_NODEV,
  noexec: MS_NOEXEC,
  noatime: MS_NOATIME,
  nodiratime: MS_NODIRATIME,
  relatime: MS_RELATIME,
};

/** The MS_* flags of per-mount options ("ro,nosuid,relatime"). */
export function mountFlags(options: string): number {
  return options.split(',').reduce((flags, o) => flags | (FLAG_OF_OPTION[o] ?? 0), 0);
}

/** Whether `path` is `dir` or inside it. */
export function isWithin(path: string, dir: string): boolean {
  return dir === '/' || path === dir || path.startsWith(`${dir}/`);
}

/**
 * mnt_entry's fstype codes (proto/namespaces.proto) by the kernel's filesystem name; any other
 * filesystem is AUTO (16) with its name in fsname.
 */
export const MNT_FSTYPES: Readonly<Record<string, number>> = {
  proc: 1, sysfs: 2, devtmpfs: 3, binfmt_misc: 4, tmpfs: 5, devpts: 6, simfs: 7, pstore: 8, securityfs: 9, fusectl: 10,
  debugfs: 11, cgroup: 12, aufs: 13, mqueue: 14, fuse: 15, overlay: 17, autofs: 18, tracefs: 19, cgroup2: 23,
};
export const MNT_FSTYPE_AUTO = 16;

/** Filesystems a mount of which is made fresh (no contents to carry): their instance is the namespace's. (devpts: see howToMake.) */
export const FRESH_FILESYSTEMS: ReadonlySet<string> = new Set(['proc', 'sysfs', 'mqueue', 'cgroup2']);

/** How a mount of a tree's namespace comes back in a namespace that starts as a copy of `own`. */
export type MountMaking =
  | { readonly how: 'inherited'; readonly own: MountLine }
  | { readonly how: 'tmpfs' }
  | { readonly how: 'fresh' }
  | { readonly how: 'bind'; readonly source: string }
  /** A bind mount of a mount the tree has before it (a container's read-only /proc/sys, its /dev/null over /proc/kcore): `path` as the tree sees it. */
  | { readonly how: 'bind-tree'; readonly path: string }
  | { readonly how: 'unsupported' };

/** The path of `root` (a path inside the filesystem) below mount `holder` of the same filesystem. */
function pathBelow(holder: MountLine, root: string): string {
  return `${holder.mountPoint.replace(/\/$/, '')}${root.slice(holder.root === '/' ? 0 : holder.root.length)}` || '/';
}

/** `tree`: the tree's mounts in mountinfo order; those before `m` may be its bind source. */
export function howToMake(m: MountLine, own: readonly MountLine[], tree: readonly MountLine[] = []): MountMaking {
  const same = own.find((o) => o.mountPoint === m.mountPoint && o.fstype === m.fstype && (FRESH_FILESYSTEMS.has(m.fstype) || (o.dev === m.dev && o.root === m.root)));
  if (same) return { how: 'inherited', own: same };
  const at = tree.indexOf(m);
  const earlier = at > 0 ? tree.slice(0, at) : [];
  const source = earlier.find((o) => o.dev === m.dev && o.fstype === m.fstype && o.mountPoint !== m.mountPoint && isWithin(m.root, o.root));
  if (source) return { how: 'bind-tree', path: pathBelow(source, m.root) };
  if (m.fstype === 'tmpfs') return { how: 'tmpfs' };
  if (FRESH_FILESYSTEMS.has(m.fstype)) return { how: 'fresh' };
  // A bind mount of a directory crr sees: a mount of the same filesystem whose root holds it.
  // (An unmounted filesystem's anonymous device number goes to the next one mounted.)
  const holder = own.find((o) => o.dev === m.dev && o.fstype === m.fstype && isWithin(m.root, o.root));
  if (holder) return { how: 'bind', source: pathBelow(holder, m.root) };
  // A devpts instance of the tree's own (a container's /dev/pts): a new instance, its options kept.
  if (m.fstype === 'devpts' && m.root === '/') return { how: 'fresh' };
  return { how: 'unsupported' };
}
