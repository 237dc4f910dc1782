// epoll files for files.img: one tfd entry per registered fd ("tfd: N events: X data: X pos:
// ino: sdev:" lines of fdinfo, hex but the fd number), with the target's inode and device so a
// reader can tell dup'ed targets apart, as CRIU records them.
import { native } from '../actors/native.js';
import { CrrError } from '../errors.js';
import type { AnonFdDumper } from './fd-eventfd.js';
import { zeroFown } from './regfile.js';
import type { Entry } from './ids.js';

const TFD_LINE = /^tfd:\s*(\d+)\s+events:\s*([0-9a-f]+)\s+data:\s*([0-9a-f]+)\s+pos:\s*(\d+)\s+ino:\s*([0-9a-f]+)\s+sdev:\s*([0-9a-f]+)/gm;

export function epollTargets(id: number, fdinfo: string): Entry[] {
  const out: Entry[] = [];
  for (const m of fdinfo.matchAll(TFD_LINE)) {
    out.push({
      id,
      tfd: Number(m[1]),
      events: parseInt(m[2]!, 16),
      data: BigInt(`0x${m[3]}`),
      dev: parseInt(m[6]!, 16),
      inode: BigInt(`0x${m[5]}`),
      pos: BigInt(m[4]!),
    });
  }
  return out.sort((a, b) => Number(a['tfd']) - Number(b['tfd']));
}

/**
 * The restore adds each target at its fd number: one the program closed since, or that names
 * another file now (the watched file lives on at another fd, or in another task), would come
 * back as EBADF or the wrong file. Refused, as CRIU refuses an escaped or closed target.
 */
function checkTargets(targets: readonly Entry[], at: { pid: number; fd: number }): void {
  for (const target of targets) {
    const tfd = Number(target['tfd']);
    const same = native.kcmpEpollTarget(at.pid, at.fd, tfd, tfd);
    if (same === 0) continue;
    const now = same === -9 /* EBADF */ ? 'closed since' : same < 0 ? `not comparable (errno ${-same})` : 'another file now';
    throw new CrrError(`pid ${at.pid}: fd ${at.fd} is an epoll instance watching fd ${tfd}, which is ${now} (the watched file lives on elsewhere), which crr dump does not support`, 1);
  }
}

export const eventpollDumper: AnonFdDumper = {
  type: 7,
  matches: (link) => link === 'anon_inode:[eventpoll]',
  entry(id, flags, fdinfo, at) {
    const tfd = epollTargets(id, fdinfo);
    checkTargets(tfd, at);
    return { type: 7, id, epfd: { id, flags, fown: zeroFown(), tfd } };
  },
};
