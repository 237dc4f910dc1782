// Terminals at dump. What crr takes is a shell job's terminal: a pty slave (/dev/pts/N) whose
// master is not in the tree, with --shell-job (CRIU's rule: without it such a slave is refused,
// since the restore can only hand it the terminal crr itself runs on). It is written like CRIU
// writes it: a TTY files.img entry, a REG entry with its /dev/pts path (regf_id), and a
// tty-info.img entry (termios, locked termios, window size, index, the session and foreground
// group it is the controlling terminal of). pty masters, /dev/tty, consoles, virtual and
// serial terminals are refused.
import { statSync, type Stats } from 'node:fs';
import { native } from '../actors/native.js';
import type { DumpIds, Entry } from './ids.js';
import { UnsupportedFdError, type FileOrder, type OpenFiles } from './files.js';
import { parseStat, readProc } from './proc.js';
import { regFileEntry, zeroFown } from './regfile.js';
import { copyOfTaskFd, perDump } from './socket-common.js';

export const FD_TYPE_TTY = 11;
const TTY_TYPE_PTY = 1;
const UNIX98_PTY_SLAVE_MAJOR = 136;
const UNIX98_PTY_MAJOR_COUNT = 8;
const UNIX98_PTY_MASTER_MAJOR = 128;
const TTYAUX_MAJOR = 5;
const TTY_MAJOR = 4;

export const TCGETS2 = 0x802c542a;
export const TERMIOS2_BYTES = 44;
const TIOCGLCKTRMIOS = 0x5456;
const TERMIOS_BYTES = 36;
const TIOCGWINSZ = 0x5413;
const TIOCGEXCL = 0x80045440;
/** c_cc's length in the kernel's struct termios. */
const NCCS = 19;

// glibc's dev_t: major in bits 8-19 and 32-43, minor in bits 0-7 and 20-31 (JS shifts are 32-bit).
const majorOf = (rdev: number) => ((rdev >>> 8) & 0xfff) | (Math.floor(rdev / 2 ** 32) & ~0xfff);
const minorOf = (rdev: number) => (rdev & 0xff) | ((rdev >>> 12) & ~0xff);

/** What a character device of `rdev` is, when it is a terminal crr knows of. */
export function terminalKind(rdev: number): 'pty-slave' | 'pty-master' | 'tty' | undefined {
  const major = majorOf(rdev);
  if (major >= UNIX98_PTY_SLAVE_MAJOR && major < UNIX98_PTY_SLAVE_MAJOR + UNIX98_PTY_MAJOR_COUNT) return 'pty-slave';
  if ((major >= UNIX98_PTY_MASTER_MAJOR && major < UNIX98_PTY_MASTER_MAJOR + UNIX98_PTY_MAJOR_COUNT) || (major === TTYAUX_MAJOR && minorOf(rdev) === 2)) return 'pty-master';
  if (major === TTYAUX_MAJOR || major === TTY_MAJOR) return 'tty';
  return undefined;
}

/** termios_entry from a kernel struct termios (or termios2, whose speeds follow c_cc). */
export function termiosEntry(raw: Buffer): Entry {
  const speeds = raw.length >= TERMIOS2_BYTES;
  return {
    c_iflag: raw.readUInt32LE(0),
    c_oflag: raw.readUInt32LE(4),
    c_cflag: raw.readUInt32LE(8),
    c_lflag: raw.readUInt32LE(12),
    c_line: raw[16]!,
    c_ispeed: speeds ? raw.readUInt32LE(36) : 0,
    c_ospeed: speeds ? raw.readUInt32LE(40) : 0,
    c_cc: [...raw.subarray(17, 17 + NCCS)],
  };
}

const ttyInfos = new WeakMap<OpenFiles, Map<number, Entry>>();

/** tty-info.img entries by tty_info_id, once per terminal of the dump. */
export function ttyInfosOf(open: OpenFiles): Map<number, Entry> {
  return perDump(ttyInfos, open, () => new Map());
}

/**
 * The fdinfo entry of fd `fd` of `pid`, a terminal (`st` its stat): its files.img entries are
 * made once per description. Throws UnsupportedFdError for a terminal crr does not dump.
 */
export async function dumpTtyFd(
  at: { pid: number; fd: number; link: string; st: Stats; fileFlags: number; fdflags: number },
  ids: DumpIds,
  open: OpenFiles,
  order: FileOrder | undefined,
): Promise<Entry> {
  const { pid, fd, link, st } = at;
  const kind = terminalKind(st.rdev);
  if (kind === 'pty-master') throw new UnsupportedFdError(pid, fd, `a pseudo-terminal master (${link}); crr restores a shell job's terminal only`);
  if (kind !== 'pty-slave') throw new UnsupportedFdError(pid, fd, `a terminal other than a pseudo-terminal (${link})`);
  if (!open.shellJob) throw new UnsupportedFdError(pid, fd, `a terminal (${link}) whose master is not in the tree: dump with --shell-job, and the restore gives the tree crr's own terminal`);
  const index = minorOf(st.rdev) + (majorOf(st.rdev) - UNIX98_PTY_SLAVE_MAJOR) * 256;
  const infoId = index << 1; // CRIU's numbering: index * 2, + 1 for a master
  const infos = ttyInfosOf(open);
  if (!infos.has(infoId)) infos.set(infoId, ttyInfoEntry(pid, fd, infoId, index, st));
  const id = await open.idFor(`tty:${st.rdev}:${at.fileFlags}`, pid, fd, order, (id) => {
    const regfId = ids.newFileId();
    ids.addFile(regFileEntry(regfId, link, statSync(link), at.fileFlags, 0n));
    ids.addFile({ type: FD_TYPE_TTY, id, tty: { id, tty_info_id: infoId, flags: at.fileFlags, fown: zeroFown(), regf_id: regfId } });
  }, ids);
  return { id, flags: at.fdflags, type: FD_TYPE_TTY, fd };
}

/** The terminal's state, read through a copy of the task's fd (ioctls need no session of ours). */
function ttyInfoEntry(pid: number, fd: number, infoId: number, index: number, st: Stats): Entry {
  const copy = copyOfTaskFd(pid, fd);
  try {
    const winsize = native.ioctlBuffer(copy, TIOCGWINSZ, Buffer.alloc(8));
    // The session and foreground group the task's stat gives, where this is its controlling terminal.
    const stat = parseStat(readProc(pid, 'stat'));
    const controlling = stat.ttyNr === st.rdev;
    return {
      id: infoId,
      type: TTY_TYPE_PTY,
      locked: false,
      exclusive: native.ioctlBuffer(copy, TIOCGEXCL, Buffer.alloc(4)).readInt32LE(0) !== 0,
      packet_mode: false,
      sid: controlling ? stat.sid : 0,
      pgrp: controlling && stat.tpgid > 0 ? stat.tpgid : 0,
      rdev: st.rdev,
      termios: termiosEntry(native.ioctlBuffer(copy, TCGETS2, Buffer.alloc(TERMIOS2_BYTES))),
      termios_locked: termiosEntry(native.ioctlBuffer(copy, TIOCGLCKTRMIOS, Buffer.alloc(TERMIOS_BYTES))),
      winsize: { ws_row: winsize.readUInt16LE(0), ws_col: winsize.readUInt16LE(2), ws_xpixel: winsize.readUInt16LE(4), ws_ypixel: winsize.readUInt16LE(6) },
      pty: { index },
      dev: st.dev,
      uid: st.uid,
      gid: st.gid,
    };
  } finally {
    native.close(copy);
  }
}

