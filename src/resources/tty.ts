// A shell job's terminal (--shell-job): a pty slave whose master was not in the dumped tree. As
// with CRIU, the restored tree gets the terminal crr runs on (`terminalFd`, crr's stdin unless
// the caller names another): crr reopens it through /proc/self/fd with the dumped file flags,
// sets the dumped termios on it (the program's line discipline: raw mode, echo), and the first
// holder of each description receives it; every other holder takes a copy from that one. The
// window size and locked termios stay the terminal's own.
import { closeSync, constants as C, openSync } from 'node:fs';
import { isatty } from 'node:tty';
import { native } from '../actors/native.js';
import { StageError } from '../errors.js';
import type { Entry } from '../images/index.js';
import { perKey } from '../memo.js';
import type { RestoreCtx, RestoreSession } from '../restore/context.js';
import { restoreAnonFds } from './eventfd.js';
import { holdsFdOfType, offer, receive } from './shared-fds.js';
import type { ResourceKind } from './types.js';

export const FD_TYPE_TTY = 11;
const TTY_TYPE_PTY = 1;
const TCSETS2 = 0x402c542b;
const TERMIOS2_BYTES = 44;
const NCCS = 19;

/** Each tty-info.img entry by id, decoded once per restore. */
const ttyInfos = perKey((session: RestoreSession): Map<number, Entry> => {
  const checkpoint = session.checkpoint;
  if (!checkpoint.has('tty-info.img')) return new Map();
  return new Map([...checkpoint.image('tty-info.img').entries()].map((lazy) => lazy.decode()).map((e) => [Number(e['id']), e]));
});

/**
 * Plan-time checks for a checkpoint holding terminals: each is a pty slave (what crr's dump
 * writes), the restore is a shell job, and the terminal given to the tree is one.
 */
export function checkTerminals(session: RestoreSession): void {
  const infos = ttyInfos(session);
  for (const [pid, set] of session.images) {
    const fd = set.fds.find((f) => f.type === FD_TYPE_TTY);
    if (!fd) continue;
    const fail = (message: string) => {
      throw new StageError({ stage: 'plan', pid, resource: 'tty', message: `fd ${fd.fd} is a terminal: ${message}` });
    };
    const tty = session.checkpoint.file(fd.id, `task ${pid} fd ${fd.fd}`)['tty'] as Entry | undefined;
    const info = infos.get(Number(tty?.['tty_info_id']));
    if (!info) fail(`its tty-info entry ${String(tty?.['tty_info_id'])} is missing`);
    if (Number(info!['type']) !== TTY_TYPE_PTY || Number(info!['id']) % 2 !== 0) fail('crr restores a pseudo-terminal slave (a shell job\'s terminal) only');
    if (!session.options.shellJob) fail('restore it as a shell job (--shell-job): the tree then gets crr\'s own terminal');
    const own = session.options.terminalFd;
    if (!isatty(own)) fail(`crr's fd ${own}, the terminal it would hand over, is not a terminal`);
  }
}

/** The kernel's struct termios2 from a termios_entry. */
function termios2(entry: Entry): Buffer {
  const raw = Buffer.alloc(TERMIOS2_BYTES);
  raw.writeUInt32LE(Number(entry['c_iflag'] ?? 0), 0);
  raw.writeUInt32LE(Number(entry['c_oflag'] ?? 0), 4);
  raw.writeUInt32LE(Number(entry['c_cflag'] ?? 0), 8);
  raw.writeUInt32LE(Number(entry['c_lflag'] ?? 0), 12);
  raw[16] = Number(entry['c_line'] ?? 0);
  ((entry['c_cc'] ?? []) as number[]).slice(0, NCCS).forEach((c, i) => (raw[17 + i] = Number(c)));
  raw.writeUInt32LE(Number(entry['c_ispeed'] ?? 0), 36);
  raw.writeUInt32LE(Number(entry['c_ospeed'] ?? 0), 40);
  return raw;
}

export const tty: ResourceKind<RestoreCtx> = {
  name: 'tty',
  stage: 'shared-fds',
  images: ['files', 'fdinfo-*', 'tty-info'],
  appliesTo: holdsFdOfType(FD_TYPE_TTY),
  describe: () => ["a shell job's terminal: crr's own, reopened with the dumped flags and termios"],
  async restore(ctx) {
    await restoreAnonFds(ctx, FD_TYPE_TTY, async (first) => {
      const file = first.file['tty'] as Entry;
      const info = ttyInfos(ctx.session).get(Number(file['tty_info_id']))!;
      // O_NOCTTY: a session leader opening it must not take it as its controlling terminal here.
      const flags = (Number(file['flags'] ?? 0) & ~C.O_CREAT & ~C.O_TRUNC) | C.O_NOCTTY;
      const fd = openSync(`/proc/self/fd/${ctx.session.options.terminalFd}`, flags);
      try {
        if (info['termios']) native.ioctlBuffer(fd, TCSETS2, termios2(info['termios'] as Entry));
      } catch (err) {
        closeSync(fd);
        throw err;
      }
      offer(ctx, 'tty', String(first.id), fd, 1);
      await receive(ctx, [{ kind: 'tty', id: String(first.id), fd: first.fd, cloexec: first.cloexec }]);
    });
  },
};
