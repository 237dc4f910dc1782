// Regular-file entries of files.img (type REG): mapped files, fds on files, directories and
// character devices like /dev/null, described the way CRIU describes them (path, flags without
// O_CLOEXEC, pos, size for regular files only, mode, and the GNU build-id of ELF files).
import type { Stats } from 'node:fs';
import { readBuildId } from '../images/build-id.js';
import type { Entry } from './ids.js';

export const FD_TYPE = { REG: 1, PIPE: 2, INETSK: 4, UNIXSK: 5 } as const;
export const O_CLOEXEC = 0o2000000;
const S_IFMT = 0o170000;
const S_IFREG = 0o100000;

export function zeroFown(): Entry {
  return { uid: 0, euid: 0, signum: 0, pid_type: 0, pid: 0 };
}

/** A files.img REG entry. `stat` is of the open file (fstat-like), `name` its path. */
export function regFileEntry(id: number, name: string, stat: Stats, flags: number, pos: bigint, buildIdOf?: string): Entry {
  const reg: Entry = {
    id,
    flags: flags & ~O_CLOEXEC,
    pos,
    fown: zeroFown(),
    name,
  };
  if ((stat.mode & S_IFMT) === S_IFREG) {
    reg.size = BigInt(stat.size);
    reg.mode = stat.mode;
    const bid = buildIdOf ? readBuildId(buildIdOf) : undefined;
    if (bid) reg.build_id = bid;
  } else {
    reg.mode = stat.mode;
  }
  return { type: FD_TYPE.REG, id, reg };
}


