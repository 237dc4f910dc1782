// Terminals at dump: pseudo-terminals, written like CRIU writes them: a TTY files.img entry per
// description with a REG entry of its path (regf_id), and a tty-info.img entry per terminal end
// (id = index * 2, + 1 for the master: termios, locked termios, window size, lock and packet
// mode of a master, exclusive mode; on a slave, the session and foreground group it controls).
// - A master (/dev/ptmx) and its slaves in the tree: the pair comes back, with the bytes queued
//   in it either way (tty-data.img; read out, and put back if the tree runs on).
// - A slave whose master is not in the tree: a shell job's terminal, taken with --shell-job only
//   (CRIU's rule), since the restore can only hand it the terminal crr itself runs on; or a
//   container's, whose master its runtime holds, with orphan_pts_master (the restore makes a
//   new pair and hands the master to the caller).
// - /dev/tty (the holder's controlling terminal, whichever it is): a TTY entry of CRIU's CTTY
//   kind (tty-info id 2012, CTTY_INDEX 1006 * 2) with a REG entry of /dev/tty; the terminal it
//   leads to is the session's, restored as such.
// Consoles, virtual and serial terminals are refused.
import { closeSync, constants as C, openSync, statSync, type Stats } from 'node:fs';
import { native } from '../actors/native.js';
import { CTTY_INFO_ID, TTY_TYPE } from '../images/index.js';
import type { DumpIds, Entry } from './ids.js';
import { UnsupportedFdError, type FileOrder, type OpenFiles } from './files.js';
import { parseStat, readProc } from './proc.js';
import { regFileEntry, zeroFown } from './regfile.js';
import { copyOfTaskFd } from './socket-common.js';
import { drainPty, ptyQueued, requeuePty, TCGETS2, TERMIOS2_BYTES } from '../pty-queues.js';

export const FD_TYPE_TTY = 11;
const UNIX98_PTY_SLAVE_MAJOR = 136;
const UNIX98_PTY_MAJOR_COUNT = 8;
const UNIX98_PTY_MASTER_MAJOR = 128;
const TTYAUX_MAJOR = 5;
const TTY_MAJOR = 4;

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
export function terminalKind(rdev: number): 'pty-slave' | 'pty-master' | 'dev-tty' | 'tty' | undefined {
  const major = majorOf(rdev);
  if (major === TTYAUX_MAJOR && minorOf(rdev) === 0) return 'dev-tty';
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

/** One end of a pseudo-terminal as some task holds it. */
interface TtyEnd {
  readonly pid: number;
  readonly fd: number;
  readonly link: string;
}

/** Bytes read out of a pair, and its slave (open until the dump ends) to put them back through. */
interface PtyQueue {
  readonly index: number;
  readonly slaveFd: number;
  forMaster: Buffer;
  forSlave: Buffer;
}

/** The dump's terminals: tty-info entries by id, each pty's ends by index, the bytes read out of them. */
interface Terminals {
  readonly infos: Map<number, Entry>;
  readonly ends: Map<number, { master?: TtyEnd; slave?: TtyEnd }>;
  readonly queues: PtyQueue[];
}

const terminals = new WeakMap<OpenFiles, Terminals>();

function terminalsOf(open: OpenFiles): Terminals {
  let t = terminals.get(open);
  if (!t) terminals.set(open, (t = { infos: new Map(), ends: new Map(), queues: [] }));
  return t;
}

/** tty-info.img entries, once per terminal end of the dump. */
export function ttyInfosOf(open: OpenFiles): Map<number, Entry> {
  return terminalsOf(open).infos;
}

const TIOCGPTN = 0x80045430;
const TIOCGPTLCK = 0x80045439;
const TIOCGPKT = 0x80045438;
const TIOCGSID = 0x5429;
const TIOCGPGRP = 0x540f;

/**
 * The fdinfo entry of fd `fd` of `pid`, a terminal (`st` its stat): its files.img entries are
 * made once per description. Throws UnsupportedFdError for a terminal crr does not dump; a slave
 * without its master is checked once every fd is seen (finishTerminals).
 */
export async function dumpTtyFd(
  at: { pid: number; fd: number; link: string; st: Stats; fileFlags: number; fdflags: number },
  ids: DumpIds,
  open: OpenFiles,
  order: FileOrder | undefined,
): Promise<Entry> {
  const { pid, fd, link, st } = at;
  const kind = terminalKind(st.rdev);
  let infoId: number;
  if (kind === 'dev-tty') infoId = devTtyInfo(at, open);
  else if (kind === 'pty-slave' || kind === 'pty-master') infoId = ptyEndInfo(at, open, kind === 'pty-master');
  else throw new UnsupportedFdError(pid, fd, `a terminal other than a pseudo-terminal or /dev/tty (${link})`);
  const id = await open.idFor(`tty:${st.rdev}:${infoId}:${at.fileFlags}`, pid, fd, order, (id) => {
    const regfId = ids.newFileId();
    ids.addFile(regFileEntry(regfId, link, statSync(`/proc/${pid}/fd/${fd}`), at.fileFlags, 0n));
    ids.addFile({ type: FD_TYPE_TTY, id, tty: { id, tty_info_id: infoId, flags: at.fileFlags, fown: zeroFown(), regf_id: regfId } });
  }, ids);
  return { id, flags: at.fdflags, type: FD_TYPE_TTY, fd };
}

/** A pty end: its tty-info id (CRIU's numbering: index * 2, + 1 for the master), its entry made once. */
function ptyEndInfo(at: { pid: number; fd: number; link: string; st: Stats }, open: OpenFiles, master: boolean): number {
  const { pid, fd, link, st } = at;
  const index = master ? ptyIndexOf(pid, fd) : minorOf(st.rdev) + (majorOf(st.rdev) - UNIX98_PTY_SLAVE_MAJOR) * 256;
  const infoId = index * 2 + (master ? 1 : 0);
  const { infos, ends } = terminalsOf(open);
  const pair = ends.get(index) ?? {};
  ends.set(index, pair);
  if (master) pair.master ??= { pid, fd, link };
  else pair.slave ??= { pid, fd, link };
  if (!infos.has(infoId)) infos.set(infoId, ttyInfoEntry(pid, fd, infoId, index, st, master));
  return infoId;
}

/**
 * /dev/tty: every description on the one CTTY tty-info entry (its termios and window size are
 * those of the terminal it leads to, as CRIU records them).
 */
function devTtyInfo(at: { pid: number; fd: number; st: Stats }, open: OpenFiles): number {
  const { pid, fd, st } = at;
  if (!parseStat(readProc(pid, 'stat')).ttyNr) throw new UnsupportedFdError(pid, fd, '/dev/tty, but the task has no controlling terminal now (hung up)');
  const { infos } = terminalsOf(open);
  if (!infos.has(CTTY_INFO_ID)) infos.set(CTTY_INFO_ID, ttyInfoEntry(pid, fd, CTTY_INFO_ID, undefined, st, false));
  return CTTY_INFO_ID;
}

/** A pty master's index (TIOCGPTN), through a copy of the task's fd. */
function ptyIndexOf(pid: number, fd: number): number {
  return withCopy(pid, fd, (copy) => native.ioctlBuffer(copy, TIOCGPTN, Buffer.alloc(4)).readInt32LE(0));
}

function withCopy<T>(pid: number, fd: number, use: (copy: number) => T): T {
  const copy = copyOfTaskFd(pid, fd);
  try {
    return use(copy);
  } finally {
    native.close(copy);
  }
}

const readInt = (fd: number, request: number) => native.ioctlBuffer(fd, request, Buffer.alloc(4)).readInt32LE(0);

/** The terminal end's state, read through a copy of the task's fd; `index` undefined for /dev/tty. */
function ttyInfoEntry(pid: number, fd: number, infoId: number, index: number | undefined, st: Stats, master: boolean): Entry {
  return withCopy(pid, fd, (copy) => {
    const winsize = native.ioctlBuffer(copy, TIOCGWINSZ, Buffer.alloc(8));
    // A shell job's terminal: the session and group the holder's stat gives, where it is its
    // controlling terminal (a pair's slave gets them from its master, in finishTerminals).
    const stat = master ? undefined : parseStat(readProc(pid, 'stat'));
    const controlling = stat !== undefined && stat.ttyNr === st.rdev;
    return {
      id: infoId,
      type: index === undefined ? TTY_TYPE.CTTY : TTY_TYPE.PTY,
      locked: master && readInt(copy, TIOCGPTLCK) !== 0,
      exclusive: readInt(copy, TIOCGEXCL) !== 0,
      packet_mode: master && readInt(copy, TIOCGPKT) !== 0,
      sid: controlling ? stat.sid : 0,
      pgrp: controlling && stat.tpgid > 0 ? stat.tpgid : 0,
      rdev: st.rdev,
      termios: termiosEntry(native.ioctlBuffer(copy, TCGETS2, Buffer.alloc(TERMIOS2_BYTES))),
      termios_locked: termiosEntry(native.ioctlBuffer(copy, TIOCGLCKTRMIOS, Buffer.alloc(TERMIOS_BYTES))),
      winsize: { ws_row: winsize.readUInt16LE(0), ws_col: winsize.readUInt16LE(2), ws_xpixel: winsize.readUInt16LE(4), ws_ypixel: winsize.readUInt16LE(6) },
      ...(index === undefined ? {} : { pty: { index } }),
      dev: st.dev,
      uid: st.uid,
      gid: st.gid,
    };
  });
}

/**
 * Once every fd is seen: a slave without its master needs --shell-job; a pair's slave info gets
 * the session and foreground group the master reports (TIOCGSID and TIOCGPGRP on a master answer
 * for its slave, whoever asks); and the bytes queued in a pair are read out for tty-data.img
 * (CRIU's: tty_id the end that reads them), its slave kept open to put them back through
 * (finishTerminalQueues). Reading them is the dump's last step that changes the tree.
 */
export function finishTerminals(open: OpenFiles): void {
  const { infos, ends, queues } = terminalsOf(open);
  for (const { master, slave } of ends.values()) {
    if (!master && !open.shellJob && !open.orphanPtyMaster) throw new UnsupportedFdError(slave!.pid, slave!.fd, `a terminal (${slave!.link}) whose master is not in the tree: dump with --shell-job (the restore gives the tree crr's own terminal) or, over criu's RPC, orphan_pts_master (a new one, its master handed to the caller)`);
  }
  const pairs = [...ends].flatMap(([index, { master, slave }]) => (master ? [{ index, master, slave }] : []));
  const queued = (end: TtyEnd) => withCopy(end.pid, end.fd, ptyQueued);
  for (const { index, master } of pairs) {
    const info = infos.get(index * 2);
    if (!info) continue; // no slave open in the tree
    withCopy(master.pid, master.fd, (copy) => {
      info['sid'] = ioctlOrZero(copy, TIOCGSID);
      info['pgrp'] = info['sid'] ? ioctlOrZero(copy, TIOCGPGRP) : 0;
    });
  }
  for (const { index, master, slave } of pairs) {
    if (!queued(master) && !(slave && queued(slave))) continue;
    // The slave opened again, read-write (the task's own description may be read-only, and
    // putting back writes), in the tree's devpts: through a slave fd of the tree, or else by its
    // path under the master holder's root.
    const slavePath = slave ? `/proc/${slave.pid}/fd/${slave.fd}` : `/proc/${master.pid}/root/dev/pts/${index}`;
    let slaveFd: number;
    try {
      slaveFd = openSync(slavePath, C.O_RDWR | C.O_NOCTTY);
    } catch (err) {
      throw new UnsupportedFdError(master.pid, master.fd, `a pseudo-terminal (index ${index}) with bytes queued, whose slave crr cannot open to put them back (${(err as Error).message})`);
    }
    const queue: PtyQueue = { index, slaveFd, forMaster: Buffer.alloc(0), forSlave: Buffer.alloc(0) };
    queues.push(queue); // from here on, a failed dump puts back what was read
    const packetMode = Boolean(infos.get(index * 2 + 1)?.['packet_mode']);
    queue.forMaster = withCopy(master.pid, master.fd, (copy) => drainPty(copy, packetMode));
    queue.forSlave = drainPty(slaveFd, false);
  }
}

/** tty-data.img entries: the bytes each end of a pair was to read, by its tty-info id. */
export function ttyDataOf(open: OpenFiles): Entry[] {
  return terminalsOf(open).queues.flatMap((q) => [
    ...(q.forSlave.length ? [{ tty_id: q.index * 2, data: q.forSlave }] : []),
    ...(q.forMaster.length ? [{ tty_id: q.index * 2 + 1, data: q.forMaster }] : []),
  ]);
}

/**
 * Ends the dump's hold on the ptys' queued bytes: `live` (the tree runs on, or the dump failed)
 * puts them back first, so the tree reads what it would have read.
 */
export function finishTerminalQueues(open: OpenFiles, live: boolean): void {
  for (const q of terminalsOf(open).queues.splice(0)) {
    try {
      if (live) requeuePty(q.slaveFd, q.forSlave, q.forMaster);
    } finally {
      closeSync(q.slaveFd);
    }
  }
}

/** An int ioctl's answer, or 0 where the terminal has none (ENOTTY: no session). */
function ioctlOrZero(fd: number, request: number): number {
  try {
    return readInt(fd, request);
  } catch {
    return 0;
  }
}
