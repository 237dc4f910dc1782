// inotify files for files.img: one wd entry per watch from fdinfo ("inotify wd: ino: sdev: mask:
// ignored_mask: fhandle-bytes: fhandle-type: f_handle:", all hex). Like CRIU, the watched
// inode is kept as a file handle (bytes packed into little-endian u64 words); the path is found
// the way CRIU's irmap does it, by looking for the inode under a few likely directories (the
// task's cwd first), and kept in fh_entry.path, which is what the restore opens.
import { readdirSync, lstatSync } from 'node:fs';
import { join } from 'node:path';
import { CrrError } from '../errors.js';
import type { AnonFdDumper } from './fd-eventfd.js';
import { readProcLink } from './proc.js';
import { zeroFown } from './regfile.js';
import type { Entry } from './ids.js';

const WD_LINE = /^inotify wd:([0-9a-f]+) ino:([0-9a-f]+) sdev:([0-9a-f]+) mask:([0-9a-f]+) ignored_mask:([0-9a-f]+) fhandle-bytes:([0-9a-f]+) fhandle-type:([0-9a-f]+) f_handle:([0-9a-f]*)/gm;
const SEARCH_LIMIT = 200_000;
const SKIP = new Set(['/proc', '/sys', '/dev']);

/** The kernel's s_dev (major << 20 | minor) as stat(2) reports st_dev. */
export function userDev(kdev: number): number {
  const major = Math.floor(kdev / 2 ** 20);
  const minor = kdev % 2 ** 20;
  return (minor & 0xff) | ((major & 0xfff) << 8) | ((minor & ~0xff) << 12) | ((major & ~0xfff) * 2 ** 32);
}

function handleWords(hex: string): bigint[] {
  const bytes = Buffer.from(hex, 'hex');
  const padded = Buffer.alloc(Math.ceil(bytes.length / 8) * 8);
  bytes.copy(padded);
  const out: bigint[] = [];
  for (let at = 0; at < padded.length; at += 8) out.push(padded.readBigUInt64LE(at));
  return out;
}

/** Breadth-first search for a path with this device and inode, bounded in entries looked at. */
export function findInode(roots: string[], dev: number, ino: number): string | undefined {
  const queue = [...roots];
  const seen = new Set<string>();
  let looked = 0;
  while (queue.length && looked < SEARCH_LIMIT) {
    const path = queue.shift()!;
    if (seen.has(path) || SKIP.has(path)) continue;
    seen.add(path);
    let st;
    try {
      st = lstatSync(path);
    } catch {
      continue;
    }
    looked++;
    if (st.ino === ino && st.dev === dev) return path;
    if (!st.isDirectory() || st.dev !== dev) continue;
    try {
      for (const name of readdirSync(path)) queue.push(join(path, name));
    } catch {
      // unreadable directory: not where the inode is
    }
  }
  return undefined;
}

export const inotifyDumper: AnonFdDumper = {
  type: 8,
  matches: (link) => link === 'anon_inode:inotify',
  entry(id, flags, fdinfo, where) {
    let cwd = '/';
    try {
      cwd = readProcLink(where.pid, 'cwd');
    } catch {
      // the root of the search is only a hint
    }
    const wd: Entry[] = [];
    for (const m of fdinfo.matchAll(WD_LINE)) {
      const ino = parseInt(m[2]!, 16);
      const sdev = parseInt(m[3]!, 16);
      const path = findInode([cwd, '/tmp', '/home', '/root', '/etc', '/var', '/'], userDev(sdev), ino);
      if (!path) throw new CrrError(`pid ${where.pid}: fd ${where.fd} is an inotify watch (wd ${parseInt(m[1]!, 16)}) on inode ${ino} whose path crr dump could not find`, 1);
      wd.push({
        id,
        i_ino: BigInt(ino),
        mask: parseInt(m[4]!, 16),
        ignored_mask: parseInt(m[5]!, 16),
        s_dev: sdev,
        wd: parseInt(m[1]!, 16),
        f_handle: { bytes: parseInt(m[6]!, 16), type: parseInt(m[7]!, 16), handle: handleWords(m[8]!), path },
      });
    }
    wd.sort((a, b) => Number(a['wd']) - Number(b['wd']));
    return { type: 8, id, ify: { id, flags, fown: zeroFown(), wd } };
  },
};
