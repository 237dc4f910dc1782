// eventfd files for files.img, from /proc/PID/fdinfo/N (count in hex, semaphore flag). Also the
// small contract every anon-inode fd kind of the dumper fills (eventfd, signalfd, timerfd,
// epoll, inotify): src/dump/files.ts asks each in turn whether a /proc/PID/fd link is its own.
import { zeroFown } from './regfile.js';
import type { Entry } from './ids.js';

/** What one anon-inode fd kind gives files.ts. */
export interface AnonFdDumper {
  /** fdinfo_entry.type (fd_types). */
  readonly type: number;
  /** Whether /proc/PID/fd/N's link is this kind ('anon_inode:[eventfd]'). */
  matches(link: string): boolean;
  /** The files.img entry with id `id`; `flags` are the file's status flags without O_CLOEXEC. */
  entry(id: number, flags: number, fdinfo: string, where: { pid: number; fd: number }): Entry;
}

/** Bit 0 of eventfd_file_entry.flags: EFD_SEMAPHORE (an eventfd file is O_RDWR, so O_WRONLY's bit is free). */
export const EFD_SEMAPHORE = 1;

/** `key: value` of an fdinfo text (the first line with that key). */
export function fdinfoField(text: string, key: string): string | undefined {
  const m = new RegExp(`^${key}:\\s*(.*)$`, 'm').exec(text);
  return m?.[1]?.trim();
}

export const eventfdDumper: AnonFdDumper = {
  type: 6,
  matches: (link) => link === 'anon_inode:[eventfd]',
  entry(id, flags, fdinfo) {
    const counter = BigInt(`0x${fdinfoField(fdinfo, 'eventfd-count') ?? '0'}`);
    const semaphore = fdinfoField(fdinfo, 'eventfd-semaphore') === '1';
    return { type: 6, id, efd: { id, flags: flags | (semaphore ? EFD_SEMAPHORE : 0), fown: zeroFown(), counter } };
  },
};
