// Pseudo-terminals at restore. crr opens every terminal description of the tree itself, once,
// when the first task holding one gets here, and each holder receives its descriptions at their
// fd numbers (offer / receive, src/resources/shared-fds.ts):
// - a pair (its master in the tree): /dev/ptmx opened until the kernel gives the dumped index
//   (CRIU's way: the lowest free index comes first), unlocked, packet mode, then each slave
//   description by its /dev/pts path; termios and window size on each end; the bytes queued
//   either way (tty-data.img, src/pty-queues.ts); locked again if it was;
// - a shell job's terminal (a slave without its master; --shell-job): crr's own terminal
//   (`terminalFd`, its stdin by default) reopened through /proc/self/fd, with the program's
//   termios; its window size and locked termios stay the terminal's own.
// Every description is opened with O_NOCTTY; a session leader's controlling terminal is set by
// the ctty kind afterwards (TIOCSCTTY, then its foreground process group). /dev/tty (CRIU's CTTY
// kind) leads to the session's controlling terminal, so each holder opens it itself once every
// session has its own: the dev-tty kind, at the barrier.
import { closeSync, constants as C, openSync } from 'node:fs';
import { isatty } from 'node:tty';
import { native } from '../actors/native.js';
import { StageError } from '../errors.js';
import { TTY_TYPE, type Entry, type FdinfoEntry } from '../images/index.js';
import { perKey } from '../memo.js';
import { helperOf, type RestoreCtx, type RestoreSession } from '../restore/context.js';
import { requeuePty, TCSETS2, TERMIOS2_BYTES } from '../pty-queues.js';
import { FD_CLOEXEC, holdsFdOfType, O_CLOEXEC, offer, receive } from './shared-fds.js';
import type { ResourceKind } from './types.js';

export const FD_TYPE_TTY = 11;
const TIOCSLCKTRMIOS = 0x5457;
const TIOCSWINSZ = 0x5414;
const TIOCGPTN = 0x80045430;
export const TIOCSPTLCK = 0x40045431;
const TIOCPKT = 0x5420;
const TERMIOS_BYTES = 36;
const NCCS = 19;
/** Opens of /dev/ptmx a pair's index may take (each one holds an index until the right one comes). */
const MAX_PTMX_OPENS = 64;

/** One tty description of the checkpoint, with its end's info and its holders. */
interface TtyFile {
  readonly id: number;
  readonly flags: number;
  readonly info: Entry;
  readonly index: number;
  readonly master: boolean;
  /** /dev/tty: not a terminal of its own, the holder's controlling one. */
  readonly devTty: boolean;
  /** Holding tasks, each once. */
  readonly holders: number[];
}

/** Every tty description the tree holds, by files.img id, decoded once per restore. */
const ttyFiles = perKey((session: RestoreSession): Map<number, TtyFile> => {
  const checkpoint = session.checkpoint;
  const infos = new Map<number, Entry>();
  if (checkpoint.has('tty-info.img')) for (const lazy of checkpoint.image('tty-info.img').entries()) infos.set(Number(lazy.decode()['id']), lazy.decode());
  const files = new Map<number, TtyFile>();
  for (const [pid, set] of session.images) {
    for (const fd of set.fds) {
      if (fd.type !== FD_TYPE_TTY) continue;
      let file = files.get(fd.id);
      if (!file) {
        const tty = (checkpoint.file(fd.id, `task ${pid} fd ${fd.fd}`)['tty'] ?? {}) as Entry;
        const infoId = Number(tty['tty_info_id']);
        const info = infos.get(infoId);
        if (!info) refuse(pid, fd, `its tty-info entry ${infoId} is missing`);
        const index = Number((info['pty'] as Entry | undefined)?.['index'] ?? -1);
        const devTty = Number(info['type']) === TTY_TYPE.CTTY;
        if (!devTty && (Number(info['type']) !== TTY_TYPE.PTY || index < 0)) refuse(pid, fd, 'crr restores pseudo-terminals and /dev/tty only');
        files.set(fd.id, (file = { id: fd.id, flags: Number(tty['flags'] ?? 0), info, index, master: !devTty && infoId % 2 === 1, devTty, holders: [] }));
      }
      if (!file.holders.includes(pid)) file.holders.push(pid);
    }
  }
  return files;
});

function refuse(pid: number, fd: Pick<FdinfoEntry, 'fd'>, message: string): never {
  throw new StageError({ stage: 'plan', pid, resource: 'tty', message: `fd ${fd.fd} is a terminal: ${message}` });
}

/** Whether the checkpoint has the master of pty `index`. */
function hasMaster(files: Map<number, TtyFile>, index: number): boolean {
  return [...files.values()].some((f) => f.master && f.index === index);
}

/**
 * Plan-time checks: every terminal is a pseudo-terminal end; a pair has one master description;
 * a slave without its master needs a shell-job restore and a terminal to hand over; a session
 * leader whose controlling terminal is a pair's slave holds an fd of it.
 */
export function checkTerminals(session: RestoreSession): void {
  const files = ttyFiles(session);
  const leaders = new Set(controllingTerminals(session).map((c) => c.pid));
  for (const file of files.values()) {
    const pid = file.holders[0]!;
    const fd = session.images.get(pid)!.fds.find((f) => f.id === file.id)!;
    if (file.devTty) {
      // A session of the tree has a terminal if its leader gets a pty of the tree; a session from
      // outside the tree is crr's own with --shell-job, and so is its terminal.
      const hasTerminal = (sid: number) => leaders.has(sid) || (session.options.shellJob && !session.images.has(sid));
      const homeless = file.holders.find((holder) => !hasTerminal(session.checkpoint.task(holder).sid));
      if (homeless !== undefined) refuse(homeless, session.images.get(homeless)!.fds.find((f) => f.id === file.id)!, "it is /dev/tty, and the task's session gets no controlling terminal (a pseudo-terminal of the tree held by its leader, or with --shell-job crr's own)");
      continue;
    }
    if (file.master && [...files.values()].some((f) => f.master && f.index === file.index && f.id !== file.id)) refuse(pid, fd, `pty ${file.index} has several master descriptions`);
    if (file.master || hasMaster(files, file.index)) continue;
    if (session.options.orphanPtyMaster) {
      if (!session.options.actionScript) refuse(pid, fd, 'its master was not in the tree, and with orphanPtyMaster its new master goes to the caller\'s action script orphan-pts-master, which there is none of');
      continue;
    }
    if (!session.options.shellJob) refuse(pid, fd, "its master was not in the tree: restore it as a shell job (--shell-job), and the tree gets crr's own terminal");
    if (!isatty(session.options.terminalFd)) refuse(pid, fd, `crr's fd ${session.options.terminalFd}, the terminal it would hand over, is not a terminal`);
  }
  for (const { pid, fd } of controllingTerminals(session)) if (fd === undefined) throw new StageError({ stage: 'plan', pid, resource: 'ctty', message: 'the session leader holds no fd of its controlling terminal (a pseudo-terminal of the tree): crr sets it through one' });
}

/** Each session leader whose controlling terminal is a pair's slave, with its fd of it (if any) and the foreground group. */
function controllingTerminals(session: RestoreSession): Array<{ pid: number; fd: number | undefined; pgrp: number }> {
  const files = ttyFiles(session);
  const out: Array<{ pid: number; fd: number | undefined; pgrp: number }> = [];
  const seen = new Set<number>();
  for (const file of files.values()) {
    const sid = Number(file.info['sid'] ?? 0);
    if (file.master || !sid || seen.has(sid) || !(hasMaster(files, file.index) || session.options.orphanPtyMaster) || !session.images.has(sid)) continue;
    seen.add(sid);
    const slaveIds = new Set([...files.values()].filter((f) => !f.master && f.index === file.index).map((f) => f.id));
    const fd = session.images.get(sid)!.fds.find((f) => slaveIds.has(f.id))?.fd;
    out.push({ pid: sid, fd, pgrp: Number(file.info['pgrp'] ?? 0) });
  }
  return out;
}

/** The kernel's struct termios2 (or, `bytes` 36, termios) from a termios_entry. */
function termios(entry: Entry, bytes = TERMIOS2_BYTES): Buffer {
  const raw = Buffer.alloc(bytes);
  raw.writeUInt32LE(Number(entry['c_iflag'] ?? 0), 0);
  raw.writeUInt32LE(Number(entry['c_oflag'] ?? 0), 4);
  raw.writeUInt32LE(Number(entry['c_cflag'] ?? 0), 8);
  raw.writeUInt32LE(Number(entry['c_lflag'] ?? 0), 12);
  raw[16] = Number(entry['c_line'] ?? 0);
  ((entry['c_cc'] ?? []) as number[]).slice(0, NCCS).forEach((c, i) => (raw[17 + i] = Number(c)));
  if (bytes >= TERMIOS2_BYTES) {
    raw.writeUInt32LE(Number(entry['c_ispeed'] ?? 0), 36);
    raw.writeUInt32LE(Number(entry['c_ospeed'] ?? 0), 40);
  }
  return raw;
}

/** Termios (and, for an end of a pair, locked termios and window size) from the end's info. */
function setParameters(fd: number, info: Entry, own: boolean): void {
  if (own && info['termios_locked']) native.ioctlBuffer(fd, TIOCSLCKTRMIOS, termios(info['termios_locked'] as Entry, TERMIOS_BYTES));
  if (info['termios']) native.ioctlBuffer(fd, TCSETS2, termios(info['termios'] as Entry));
  const ws = info['winsize'] as Record<string, number> | undefined;
  if (own && ws) {
    const raw = Buffer.alloc(8);
    [ws['ws_row'], ws['ws_col'], ws['ws_xpixel'], ws['ws_ypixel']].forEach((v, i) => raw.writeUInt16LE(Number(v ?? 0), i * 2));
    native.ioctlBuffer(fd, TIOCSWINSZ, raw);
  }
}

const openFlags = (file: TtyFile) => (file.flags & ~(C.O_CREAT | C.O_TRUNC | C.O_EXCL)) | C.O_NOCTTY;

/** /dev/ptmx (`ptmx`, of another devpts) opened until the kernel gives `index`; the other opens are closed again. */
export function openPtmx(index: number, flags: number, ptmx = '/dev/ptmx'): number {
  const held: number[] = [];
  try {
    for (let i = 0; i < MAX_PTMX_OPENS; i++) {
      const fd = openSync(ptmx, flags);
      const got = native.ioctlBuffer(fd, TIOCGPTN, Buffer.alloc(4)).readInt32LE(0);
      if (got === index) return fd;
      held.push(fd);
      if (got > index) break; // the index is someone else's: no later open gives it
    }
    throw new Error(`pty index ${index} is in use on this machine (${ptmx.replace(/ptmx$/, 'pts/')}${index})`);
  } finally {
    for (const fd of held) closeSync(fd);
  }
}

/**
 * Opens every terminal description (masters, then their slaves, then shell-job terminals) and
 * offers each to its holders. Once per restore: the first task to get here does it.
 */
const openTerminals = perKey((session: RestoreSession, ctx: RestoreCtx): Promise<void> => {
  const files = [...ttyFiles(session).values()];
  const opened: Array<{ file: TtyFile; fd: number }> = [];
  // A pair's slave descriptions by the path of its slave; the first gets the end's parameters.
  const openSlaves = (slaves: readonly TtyFile[], path: string) =>
    slaves.forEach((slave, i) => {
      const fd = openSync(path, openFlags(slave));
      opened.push({ file: slave, fd });
      if (i === 0) setParameters(fd, slave.info, true);
    });
  try {
    for (const master of files.filter((f) => f.master)) {
      const fd = openPtmx(master.index, openFlags(master));
      opened.push({ file: master, fd });
      native.ioctlBuffer(fd, TIOCSPTLCK, Buffer.alloc(4)); // unlocked, so its slaves can open
      setParameters(fd, master.info, true);
      if (master.info['packet_mode']) native.ioctlBuffer(fd, TIOCPKT, int32(1));
      openSlaves(files.filter((f) => !f.master && f.index === master.index), `/dev/pts/${master.index}`);
      requeue(session, master.index);
      if (master.info['locked']) native.ioctlBuffer(fd, TIOCSPTLCK, int32(1));
    }
    const orphans = files.filter((f) => !f.master && !f.devTty && !files.some((m) => m.master && m.index === f.index));
    if (session.options.orphanPtyMaster) {
      // A new pair on the tree's own devpts (a container's), where its slave was: its master is
      // the caller's (action-post-restore hands it over).
      const root = `/proc/${session.runtimes.get(session.checkpoint.root.pid)!.hostPid}/root`;
      for (const index of new Set(orphans.map((f) => f.index))) {
        // Made already when a bind mount needed its slave (makePtySlave, src/restore/launcher.ts).
        const early = session.earlyPtys?.get(index);
        session.earlyPtys?.delete(index);
        const master = early ?? openPtmx(index, C.O_RDWR | C.O_NOCTTY | O_CLOEXEC, `${root}/dev/ptmx`);
        (session.orphanMasters ??= []).push(master);
        native.ioctlBuffer(master, TIOCSPTLCK, Buffer.alloc(4));
        openSlaves(orphans.filter((f) => f.index === index), `${root}/dev/pts/${index}`);
      }
    } else {
      for (const shellJob of orphans) {
        const fd = openSync(`/proc/self/fd/${session.options.terminalFd}`, openFlags(shellJob));
        opened.push({ file: shellJob, fd });
        setParameters(fd, shellJob.info, false);
      }
    }
  } catch (err) {
    for (const { fd } of opened) closeSync(fd);
    const e = err as { code?: string; errno?: number; syscall?: string; message: string };
    return Promise.reject(new StageError({ stage: ctx.stage, pid: ctx.pid, resource: 'tty', message: `opening the tree's terminals: ${e.message}`, ...(e.code ? { code: e.code } : {}), ...(e.errno !== undefined ? { errno: Math.abs(e.errno) } : {}), ...(e.syscall ? { syscall: e.syscall } : {}) }));
  }
  for (const { file, fd } of opened) offer(ctx, 'tty', String(file.id), fd, file.holders.length);
  return Promise.resolve();
});

/** tty-data.img: the bytes each pty end was to read, by its tty-info id. */
const queuedBytes = perKey((session: RestoreSession): Map<number, Uint8Array> => {
  const out = new Map<number, Uint8Array>();
  if (!session.checkpoint.has('tty-data.img')) return out;
  for (const lazy of session.checkpoint.image('tty-data.img').entries()) {
    const e = lazy.decode();
    out.set(Number(e['tty_id']), e['data'] as Uint8Array);
  }
  return out;
});

/**
 * Queues pty `index`'s dumped bytes again, through a slave opened for it (read-write; the tree's
 * own slave descriptions may be read-only, or there may be none).
 */
function requeue(session: RestoreSession, index: number): void {
  const forSlave = queuedBytes(session).get(index * 2) ?? new Uint8Array();
  const forMaster = queuedBytes(session).get(index * 2 + 1) ?? new Uint8Array();
  if (!forSlave.length && !forMaster.length) return;
  const slave = openSync(`/dev/pts/${index}`, C.O_RDWR | C.O_NOCTTY);
  try {
    requeuePty(slave, forSlave, forMaster);
  } finally {
    closeSync(slave);
  }
}

function int32(value: number): Buffer {
  const raw = Buffer.alloc(4);
  raw.writeInt32LE(value);
  return raw;
}

export const tty: ResourceKind<RestoreCtx> = {
  name: 'tty',
  stage: 'shared-fds',
  images: ['files', 'fdinfo-*', 'tty-info', 'tty-data'],
  appliesTo: holdsFdOfType(FD_TYPE_TTY),
  describe: () => ['pseudo-terminals: pairs opened by index with their termios; a shell job\'s terminal is crr\'s own'],
  async restore(ctx) {
    const files = ttyFiles(ctx.session);
    const fds = ctx.images.fds.filter((fd) => fd.type === FD_TYPE_TTY && !files.get(fd.id)!.devTty);
    if (!fds.length) return;
    await openTerminals(ctx.session, ctx);
    await receive(ctx, fds.map((fd) => ({ kind: 'tty', id: String(fd.id), fd: fd.fd, cloexec: Boolean(fd.flags & FD_CLOEXEC) })));
  },
};

/** A session leader's controlling terminal (a pty slave of the tree) and its foreground group. */
export const ctty: ResourceKind<RestoreCtx> = {
  name: 'ctty',
  stage: 'task-state',
  images: ['tty-info'],
  appliesTo: (task, source) => !task.zombie && task.sid === task.pid && (!source || (source.checkpoint as { has(name: string): boolean }).has('tty-info.img')),
  describe: () => ['the controlling terminal of a session leader (TIOCSCTTY) and its foreground process group'],
  async restore(ctx) {
    const mine = controllingTerminals(ctx.session).find((c) => c.pid === ctx.pid);
    if (!mine || mine.fd === undefined) return;
    const helper = helperOf(ctx);
    await helper.request('set_ctty', { fd: mine.fd });
    if (mine.pgrp) await helper.request('set_fg_pgrp', { fd: mine.fd, pgrp: mine.pgrp });
  },
};

/**
 * /dev/tty fds, opened by the task itself (each description once, dup'ed to its other fds) when
 * every session of the tree has its controlling terminal: the barrier is the first stage after
 * the ctty kind ran in every task. Descriptions shared between tasks come back as one each.
 */
export const devTty: ResourceKind<RestoreCtx> = {
  name: 'dev-tty',
  stage: 'barrier',
  images: ['files', 'fdinfo-*', 'tty-info'],
  appliesTo: holdsFdOfType(FD_TYPE_TTY),
  describe: () => ["/dev/tty fds, opened in the task once its session has its controlling terminal"],
  async restore(ctx) {
    const files = ttyFiles(ctx.session);
    const fds = ctx.images.fds.filter((fd) => fd.type === FD_TYPE_TTY && files.get(fd.id)!.devTty);
    const helper = helperOf(ctx);
    const openedAt = new Map<number, number>();
    for (const fd of fds) {
      const cloexec = fd.flags & FD_CLOEXEC ? O_CLOEXEC : 0;
      const first = openedAt.get(fd.id);
      if (first === undefined) {
        await helper.request('open', { path: '/dev/tty', flags: openFlags(files.get(fd.id)!) | cloexec, fd: fd.fd });
        openedAt.set(fd.id, fd.fd);
      } else {
        await helper.request('dup2', { oldfd: first, newfd: fd.fd, flags: cloexec });
      }
    }
  },
};
