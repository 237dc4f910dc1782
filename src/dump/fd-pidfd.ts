// pidfd files for files.img: the process a pidfd refers to, by the pid its holder's namespace
// gives it (fdinfo "NSpid", the last field), and the inode. A pidfd of a process that has exited
// (Pid -1) is refused: nothing could be made to refer to it again.
import { CrrError } from '../errors.js';
import { fdinfoField, type AnonFdDumper } from './fd-eventfd.js';
import { zeroFown } from './regfile.js';

export const FD_TYPE_PIDFD = 20;
/** pidfd_open's PIDFD_THREAD, kept in the file's flags (it is O_EXCL). */
const PIDFD_THREAD = 0o200;

export const pidfdDumper: AnonFdDumper = {
  type: FD_TYPE_PIDFD,
  matches: (link) => link === 'anon_inode:[pidfd]' || link.startsWith('pidfd:'),
  entry(id, flags, fdinfo, where) {
    const nspid = Number((fdinfoField(fdinfo, 'NSpid') ?? fdinfoField(fdinfo, 'Pid') ?? '-1').split(/\s+/).pop());
    if (nspid <= 0) throw new CrrError(`pid ${where.pid}: fd ${where.fd} is a pidfd of a process that has exited; crr cannot restore it`);
    // pidfd_open(tid, PIDFD_THREAD) (Linux 6.9): a thread's, which its fdinfo names as if a process.
    if (flags & PIDFD_THREAD) throw new CrrError(`pid ${where.pid}: fd ${where.fd} is a pidfd of thread ${nspid} (PIDFD_THREAD), which crr dump does not support`);
    const ino = BigInt(fdinfoField(fdinfo, 'ino') ?? '0');
    return { type: FD_TYPE_PIDFD, id, pidfd: { id, ino, flags, nspid, fown: zeroFown() } };
  },
};
