// Bytes queued in a pseudo-terminal, read out and put back: for the dump (which reads them and,
// when the tree runs on, puts them back) and the restore. A terminal has no peek: the bytes are
// read, and put back through the slave's line discipline, which processes them again: what the
// master reads is written at the slave, what the slave reads is pushed into its input with
// TIOCSTI (processed at once; bytes written at the master are processed later by a kernel
// worker). Meanwhile the slave's echo, signal characters, flow control, input translation and
// output processing are off: the bytes were processed once already, and an echo would queue
// what the slave reads a second time at the master. Canonical mode stays, so the lines queued
// for the slave stay lines. TIOCSTI needs CAP_SYS_ADMIN (crr runs as root).
import { readSync, writeSync } from 'node:fs';
import { native } from './actors/native.js';

/** The kernel's termios2 ioctls (speeds after c_cc) and its size: for the dump's and restore's terminals too. */
export const TCGETS2 = 0x802c542a;
export const TCSETS2 = 0x402c542b;
export const TERMIOS2_BYTES = 44;
const FIONREAD = 0x541b;
const TIOCSTI = 0x5412;
const IFLAG_OFF = 0o40 /* ISTRIP */ | 0o100 /* INLCR */ | 0o200 /* IGNCR */ | 0o400 /* ICRNL */ | 0o1000 /* IUCLC */ | 0o2000; /* IXON */
const OPOST = 0o1;
const LFLAG_OFF = 0o1 /* ISIG */ | 0o10 /* ECHO */ | 0o20 /* ECHOE */ | 0o40 /* ECHOK */ | 0o100 /* ECHONL */ | 0o1000 /* ECHOCTL */ | 0o2000 /* ECHOPRT */ | 0o4000; /* ECHOKE */
/** The largest read: a line discipline's buffer is 4 KiB, a pty's flip buffers hold more. */
const READ_BYTES = 65536;

/** Bytes one end of a pty would read next (FIONREAD: complete lines only, on a slave in canonical mode). */
export function ptyQueued(fd: number): number {
  return native.ioctlBuffer(fd, FIONREAD, Buffer.alloc(4)).readInt32LE(0);
}

/**
 * Reads out what end `fd` of a pty would read (it is gone from the terminal after). A master in
 * packet mode starts each read with a status byte, which is not data.
 */
export function drainPty(fd: number, packetMode: boolean): Buffer {
  const parts: Buffer[] = [];
  const buf = Buffer.alloc(READ_BYTES);
  // FIONREAD > 0 means a read returns at once, blocking or not.
  while (ptyQueued(fd) > 0) {
    const got = readSync(fd, buf, 0, buf.length, null);
    if (got === 0) break; // an end-of-file character at the start of a line
    parts.push(Buffer.from(buf.subarray(packetMode ? 1 : 0, got)));
  }
  return Buffer.concat(parts);
}

/** Queues `forSlave` to be read at the slave `slave` of a pty and `forMaster` at its master. */
export function requeuePty(slave: number, forSlave: Uint8Array, forMaster: Uint8Array): void {
  if (!forSlave.length && !forMaster.length) return;
  const saved = native.ioctlBuffer(slave, TCGETS2, Buffer.alloc(TERMIOS2_BYTES));
  const quiet = Buffer.from(saved);
  quiet.writeUInt32LE(quiet.readUInt32LE(0) & ~IFLAG_OFF, 0);
  quiet.writeUInt32LE(quiet.readUInt32LE(4) & ~OPOST, 4);
  quiet.writeUInt32LE(quiet.readUInt32LE(12) & ~LFLAG_OFF, 12);
  native.ioctlBuffer(slave, TCSETS2, quiet);
  try {
    for (let done = 0; done < forMaster.length; ) done += writeSync(slave, forMaster, done, forMaster.length - done);
    for (const byte of forSlave) native.ioctlBuffer(slave, TIOCSTI, Buffer.of(byte));
  } finally {
    native.ioctlBuffer(slave, TCSETS2, saved);
  }
}
