// Deleted files a task still has open or mapped (CRIU's ghost files). Such a file exists only
// through the task, so its bytes go into the checkpoint: ghost-file-ID.img (its owner, mode,
// times and whole contents, read through /proc while the tree is frozen), once per inode, and
// remap-fpath.img sends every files.img entry of it there (remap_type GHOST). Its files.img
// entry keeps the path it had, without " (deleted)". A deleted directory (a task's cwd) is a
// ghost too, without contents. A file over the ghost limit (CRIU's --ghost-limit, 1 MiB by
// default) is refused, as is one deleted but linked elsewhere.
import { readFileSync, type Stats } from 'node:fs';
import { CrrError } from '../errors.js';
import type { Entry } from './ids.js';

export const DELETED = ' (deleted)';
export const DEFAULT_GHOST_LIMIT = 1 << 20;
const REMAP_GHOST = 1;
const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;

/** Why a deleted file cannot be taken as a ghost, or undefined. */
export function ghostRefusal(st: Stats, limit: number): string | undefined {
  if ((st.mode & S_IFMT) === S_IFDIR) return undefined; // removed, so empty: made again empty
  if ((st.mode & S_IFMT) !== S_IFREG) return 'a deleted file that is not a regular file or directory';
  if (st.nlink > 0) return 'a file removed from this path but linked at another (crr keeps deleted files only)';
  if (st.size > limit) return `a deleted file of ${st.size} bytes, over the ghost limit of ${limit} (--ghost-limit)`;
  return undefined;
}

export class GhostFiles {
  private readonly byInode = new Map<string, number>();
  /** ghost-file-ID.img images: name, entry, contents. */
  readonly images: Array<{ name: string; entry: Entry; payload: Uint8Array }> = [];
  /** remap-fpath.img entries. */
  readonly remaps: Entry[] = [];

  constructor(readonly limit = DEFAULT_GHOST_LIMIT) {}

  /**
   * Sends files.img entry `fileId` to the ghost of the deleted file `st`, read through `procPath`
   * (/proc/PID/fd/N or /proc/PID/map_files/RANGE) the first time the inode is seen; `newId`
   * numbers a new ghost. Throws CrrError (`what` names the fd or mapping) for a file it refuses.
   */
  remap(fileId: number, st: Stats, procPath: string, newId: () => number, what: string): void {
    const why = ghostRefusal(st, this.limit);
    if (why) throw new CrrError(`${what}: ${why}`);
    const key = `${st.dev}:${st.ino}`;
    let ghostId = this.byInode.get(key);
    if (ghostId === undefined) {
      ghostId = newId();
      this.byInode.set(key, ghostId);
      const time = (ms: number) => ({ tv_sec: BigInt(Math.floor(ms / 1000)), tv_usec: BigInt(Math.round((ms % 1000) * 1000)) });
      const entry: Entry = { uid: st.uid, gid: st.gid, mode: st.mode, dev: st.dev >>> 0, ino: BigInt(st.ino), atim: time(st.atimeMs), mtim: time(st.mtimeMs) };
      // A directory (a deleted cwd) has no contents and, as CRIU writes it, no size.
      const contents = (st.mode & S_IFMT) === S_IFDIR ? new Uint8Array() : readFileSync(procPath);
      if ((st.mode & S_IFMT) !== S_IFDIR) entry['size'] = BigInt(contents.length);
      this.images.push({ name: `ghost-file-${ghostId.toString(16)}.img`, entry, payload: contents });
    }
    this.remaps.push({ orig_id: fileId, remap_id: ghostId, remap_type: REMAP_GHOST });
  }
}
