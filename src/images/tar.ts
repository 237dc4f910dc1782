// The tar archives of tmpfs contents (tmpfs-dev-DEV.tar.gz.img, DEV the tmpfs's device number as mnt_entry's root_dev holds it): ustar, gzipped, the archive CRIU
// writes for a tmpfs mount of a mount namespace it restores. Directories, regular files,
// symlinks and device nodes (a container's /dev), with mode, owner and modification time; names
// up to 255 bytes (prefix + name).
import { gunzipSync, gzipSync } from 'node:zlib';
import { ImageError } from '../errors.js';

export interface TarEntry {
  /** Relative to the archive's root, without a leading "./" or "/". */
  readonly path: string;
  readonly type: 'file' | 'dir' | 'symlink' | 'chardev' | 'blockdev';
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  /** Seconds since the epoch. */
  readonly mtime: number;
  readonly data?: Uint8Array;
  readonly target?: string;
  /** A device node's numbers. */
  readonly major?: number;
  readonly minor?: number;
}

const BLOCK = 512;
const TYPE_FLAG = { file: '0', dir: '5', symlink: '2', chardev: '3', blockdev: '4' } as const;
const TYPE_OF_FLAG: Readonly<Record<string, TarEntry['type']>> = { '0': 'file', '\0': 'file', '5': 'dir', '2': 'symlink', '3': 'chardev', '4': 'blockdev' };

function octal(header: Buffer, at: number, width: number, value: number): void {
  header.write(`${value.toString(8).padStart(width - 1, '0')}\0`, at, width, 'latin1');
}

function header(e: TarEntry): Buffer {
  const h = Buffer.alloc(BLOCK);
  const name = e.type === 'dir' ? `${e.path}/` : e.path;
  let prefix = '';
  let rest = name;
  if (Buffer.byteLength(name) > 100) {
    const cut = name.lastIndexOf('/', 155);
    if (cut <= 0 || Buffer.byteLength(name.slice(cut + 1)) > 100) throw new Error(`a name of ${Buffer.byteLength(name)} bytes is too long for a tar archive: ${name}`);
    prefix = name.slice(0, cut);
    rest = name.slice(cut + 1);
  }
  h.write(rest, 0, 100, 'utf8');
  octal(h, 100, 8, e.mode & 0o7777);
  octal(h, 108, 8, e.uid);
  octal(h, 116, 8, e.gid);
  octal(h, 124, 12, e.type === 'file' ? (e.data?.length ?? 0) : 0);
  octal(h, 136, 12, Math.max(0, Math.floor(e.mtime)));
  h.write(TYPE_FLAG[e.type], 156, 1, 'latin1');
  if (e.target) h.write(e.target, 157, 100, 'utf8');
  h.write('ustar\0', 257, 6, 'latin1');
  h.write('00', 263, 2, 'latin1');
  if (e.major !== undefined) octal(h, 329, 8, e.major);
  if (e.minor !== undefined) octal(h, 337, 8, e.minor);
  h.write(prefix, 345, 155, 'utf8');
  h.fill(' ', 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'latin1');
  return h;
}

/** A gzipped ustar archive of `entries`, in order (a directory before what it holds). */
export function writeTarGz(entries: readonly TarEntry[]): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    parts.push(header(e));
    if (e.type === 'file' && e.data?.length) {
      parts.push(Buffer.from(e.data.buffer, e.data.byteOffset, e.data.byteLength), Buffer.alloc((BLOCK - (e.data.length % BLOCK)) % BLOCK));
    }
  }
  parts.push(Buffer.alloc(2 * BLOCK));
  return gzipSync(Buffer.concat(parts));
}

/** The entries of a gzipped ustar archive; `path` names it in errors. */
export function readTarGz(bytes: Uint8Array, path: string): TarEntry[] {
  let tar: Buffer;
  try {
    tar = gunzipSync(bytes);
  } catch (err) {
    throw new ImageError(path, 0, 'a gzipped tar archive', (err as Error).message);
  }
  const out: TarEntry[] = [];
  const text = (at: number, width: number) => {
    const field = tar.subarray(at, at + width);
    const end = field.indexOf(0);
    return field.subarray(0, end < 0 ? width : end).toString('utf8');
  };
  const num = (at: number, width: number) => parseInt(text(at, width).trim() || '0', 8);
  for (let at = 0; at + BLOCK <= tar.length; ) {
    if (tar.subarray(at, at + BLOCK).every((b) => b === 0)) break;
    const size = num(at + 124, 12);
    const flag = String.fromCharCode(tar[at + 156]!);
    const prefix = text(at + 345, 155);
    const name = (prefix ? `${prefix}/` : '') + text(at, 100);
    const type = TYPE_OF_FLAG[flag];
    if (!type || !Number.isSafeInteger(size) || at + BLOCK + size > tar.length) throw new ImageError(path, at, 'a tar header of a file, directory, symlink or device node', `type '${flag}', size ${size}`);
    const data = tar.subarray(at + BLOCK, at + BLOCK + size);
    const relative = name.replace(/^\.?\/+/, '').replace(/\/$/, '');
    // The archive's own root ("./", as GNU tar writes `-C DIR .`, CRIU's way): the mount itself.
    if (type === 'dir' && (relative === '' || relative === '.')) {
      at += BLOCK;
      continue;
    }
    // Every entry stays below the archive's root.
    if (!relative || relative.split('/').some((part) => part === '..' || part === '')) throw new ImageError(path, at, 'a relative name without ".." in a tar header', JSON.stringify(name));
    out.push({
      path: relative,
      type,
      mode: num(at + 100, 8),
      uid: num(at + 108, 8),
      gid: num(at + 116, 8),
      mtime: num(at + 136, 12),
      ...(type === 'file' ? { data } : {}),
      ...(type === 'symlink' ? { target: text(at + 157, 100) } : {}),
      ...(type === 'chardev' || type === 'blockdev' ? { major: num(at + 329, 8), minor: num(at + 337, 8) } : {}),
    });
    at += BLOCK + Math.ceil(size / BLOCK) * BLOCK;
  }
  return out;
}
