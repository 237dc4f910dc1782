// The tree's mount namespace at dump, when it is not crr's. Every mount of it goes into
// mountpoints-ID.img (CRIU's mnt_entry), those also in crr's namespace marked external
// (ext_mount: the restore finds them in its own copy of crr's), and those named with
// --external mnt[MOUNTPOINT]:KEY with that key. Of the others crr makes again a tmpfs, whose files
// go into tmpfs-dev-DEV.tar.gz.img (DEV its device, as CRIU names it), a fresh proc, sysfs,
// mqueue, cgroup2 or devpts, a bind mount of a directory or file crr's namespace shows, or of
// another mount of the tree; any other mount, or one stacked on another mount point of the tree,
// is refused. A root other than crr's (a container's rootfs) is described, not carried. The tmpfs
// files are read through /proc/PID/root while the tree is frozen.
import { lstatSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { writeTarGz, type TarEntry } from '../images/tar.js';
import { FRESH_FILESYSTEMS, howToMake, isWithin, MNT_FSTYPE_AUTO, MNT_FSTYPES, mountFlags, parseMountinfo, type MountLine, type MountMaking } from '../mountinfo.js';
import type { Entry } from './ids.js';
import { TaskRefusedError } from './tree.js';

/** Most bytes of tmpfs files one dump keeps. */
export const TMPFS_LIMIT = 64 << 20;

/** The kernel's dev_t of "major:minor", as mnt_entry.root_dev holds it. */
function kdev(dev: string): number {
  const [major = 0, minor = 0] = dev.split(':').map(Number);
  return ((major << 20) | minor) >>> 0;
}

/** mountpoints-ID.img's entries and the tmpfs archives ([name, bytes]) of the task's mount namespace. */
export function mountImages(pid: number, external: ReadonlyMap<string, string> = new Map()): { mounts: Entry[]; archives: Array<[string, Buffer]> } {
  const tree = parseMountinfo(readFileSync(`/proc/${pid}/mountinfo`, 'latin1'));
  const own = parseMountinfo(readFileSync('/proc/self/mountinfo', 'latin1'));
  const points = new Set<string>();
  const archives: Array<[string, Buffer]> = [];
  const mounts: Entry[] = [];
  let bytes = 0;
  for (const point of external.keys()) {
    if (!tree.some((m) => m.mountPoint === point)) throw new TaskRefusedError(pid, `--external mnt[${point}]: its mount namespace has no mount at ${point}`);
  }
  for (const m of tree) {
    const key = external.get(m.mountPoint);
    if (key !== undefined) {
      points.add(m.mountPoint);
      mounts.push({ ...mountEntry(m, { how: 'unsupported' }), ext_mount: true, ext_key: key });
      continue;
    }
    const making = howToMake(m, own, tree);
    // Mounts stacked on one mount point come back only as copies of crr's own.
    if (points.has(m.mountPoint) && making.how !== 'inherited') throw new TaskRefusedError(pid, `its mount namespace has two mounts on ${m.mountPoint}, one its own; crr makes one mount per mount point`);
    points.add(m.mountPoint);
    // A root of the tree's own (a container's rootfs) is only described: the restore is given
    // it (criu --root) or finds it where crr's namespace shows it, as CRIU's restore is given it.
    if (m.mountPoint === '/' && making.how !== 'inherited') {
      mounts.push(mountEntry(m, making));
      continue;
    }
    if (making.how === 'unsupported') throw new TaskRefusedError(pid, `its mount namespace has ${m.fstype} ${m.source} mounted at ${m.mountPoint}, which crr cannot make again (it makes tmpfs, proc, sysfs, mqueue, cgroup2 and bind mounts of what crr sees)`);
    if (making.how === 'tmpfs') {
      const entries = tmpfsFiles(pid, m, tree);
      bytes += entries.reduce((n, e) => n + (e.data?.length ?? 0), 0);
      if (bytes > TMPFS_LIMIT) throw new TaskRefusedError(pid, `its tmpfs mounts hold over ${TMPFS_LIMIT} bytes of files (at ${m.mountPoint})`);
      archives.push([`tmpfs-dev-${kdev(m.dev)}.tar.gz.img`, writeTarGz(entries)]);
    }
    mounts.push(mountEntry(m, making));
  }
  return { mounts, archives };
}

function mountEntry(m: MountLine, making: MountMaking): Entry {
  return {
    fstype: MNT_FSTYPES[m.fstype] ?? MNT_FSTYPE_AUTO,
    ...(MNT_FSTYPES[m.fstype] === undefined ? { fsname: m.fstype } : {}),
    mnt_id: m.id,
    root_dev: kdev(m.dev),
    parent_mnt_id: m.parent,
    flags: mountFlags(m.options),
    root: m.root,
    mountpoint: m.mountPoint,
    source: m.source,
    options: m.superOptions,
    // A proc, sysfs, mqueue or cgroup2 is made fresh by either restore (crr's, CRIU's), not
    // external: CRIU's would want every external key named.
    ...(making.how === 'inherited' && !FRESH_FILESYSTEMS.has(m.fstype) ? { ext_mount: true, ext_key: m.mountPoint } : {}),
  };
}

/** The files of tmpfs mount `m` as the task sees them, without those of mounts below it. */
function tmpfsFiles(pid: number, m: MountLine, tree: readonly MountLine[]): TarEntry[] {
  const base = `/proc/${pid}/root${m.mountPoint === '/' ? '' : m.mountPoint}`;
  const below = tree.filter((o) => o !== m && o.mountPoint !== m.mountPoint && isWithin(o.mountPoint, m.mountPoint)).map((o) => o.mountPoint);
  const out: TarEntry[] = [];
  const walk = (rel: string) => {
    for (const name of readdirSync(`${base}/${rel}`).sort()) {
      const path = rel ? `${rel}/${name}` : name;
      const st = lstatSync(`${base}/${path}`);
      const common = { path, mode: st.mode, uid: st.uid, gid: st.gid, mtime: Math.floor(st.mtimeMs / 1000) };
      if (st.isDirectory()) {
        out.push({ ...common, type: 'dir' });
        // A mount point below: the directory is this tmpfs's, its contents the other mount's.
        if (!below.includes(`${m.mountPoint.replace(/\/$/, '')}/${path}`)) walk(path);
      } else if (st.isSymbolicLink()) {
        out.push({ ...common, type: 'symlink', target: readlinkSync(`${base}/${path}`) });
      } else if (st.isFile()) {
        out.push({ ...common, type: 'file', data: readFileSync(`${base}/${path}`) });
      } else if (st.isCharacterDevice() || st.isBlockDevice()) {
        // Linux's dev_t: minor in bits 0-7 and 20-31, major in bits 8-19 (and 32 up).
        const major = Math.floor(st.rdev / 256) & 0xfff;
        const minor = (st.rdev & 0xff) | (Math.floor(st.rdev / 4096) & ~0xff);
        out.push({ ...common, type: st.isCharacterDevice() ? 'chardev' : 'blockdev', major, minor });
      } else {
        throw new TaskRefusedError(pid, `its tmpfs at ${m.mountPoint} holds ${path}, neither a file, a directory, a symlink nor a device node`);
      }
    }
  };
  walk('');
  return out;
}
