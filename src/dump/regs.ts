// x86-64 thread state in the core image's thread_info: general registers (with the syscall
// restart fix-up CRIU applies), the FPU/SSE/AVX state decoded from the NT_X86_XSTATE buffer,
// and the three GDT TLS slots.
import type { Entry } from './ids.js';
import { bufferFeatures } from '../restore/remote-regs.js';

export const GPREG_NAMES = [
  'r15', 'r14', 'r13', 'r12', 'bp', 'bx', 'r11', 'r10', 'r9', 'r8', 'ax', 'cx', 'dx', 'si', 'di',
  'orig_ax', 'ip', 'cs', 'flags', 'sp', 'ss', 'fs_base', 'gs_base', 'ds', 'es', 'fs', 'gs',
] as const;
export type Regs = Record<(typeof GPREG_NAMES)[number], bigint>;

const ERESTARTSYS = 512n;
const ERESTARTNOINTR = 513n;
const ERESTARTNOHAND = 514n;
const ERESTART_RESTARTBLOCK = 516n;
const EINTR = 4n;
const U64 = (1n << 64n) - 1n;
const neg = (n: bigint) => (-n) & U64;

/**
 * A thread stopped inside a syscall shows the kernel's -ERESTART* in ax. The image holds what the
 * thread must run when restored: re-issue the syscall (ax = orig_ax, ip back over `syscall`),
 * or for restart-block syscalls return -EINTR, as CRIU records it.
 */
export function fixSyscallRestart(regs: Regs): Regs {
  const out = { ...regs };
  if ((regs.orig_ax & U64) === U64) return out; // not in a syscall
  const ax = regs.ax & U64;
  if (ax === neg(ERESTARTSYS) || ax === neg(ERESTARTNOINTR) || ax === neg(ERESTARTNOHAND)) {
    out.ax = regs.orig_ax;
    out.ip = (regs.ip - 2n) & U64;
  } else if (ax === neg(ERESTART_RESTARTBLOCK)) {
    out.ax = neg(EINTR);
  }
  return out;
}

/** user_x86_regs_entry, mode NATIVE (1). */
export function gpregsEntry(regs: Regs): Entry {
  const e: Entry = {};
  for (const n of GPREG_NAMES) e[n] = regs[n] & U64;
  e.mode = 1;
  return e;
}

function words(buf: Buffer, off: number, count: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < count; i++) out.push(buf.readUInt32LE(off + i * 4));
  return out;
}

/**
 * user_x86_fpregs_entry from an XSAVE buffer (standard, non-compacted format): the legacy
 * 512-byte area, then the header's xstate_bv and the AVX upper halves at offset 576.
 */
export function fpregsEntry(xsave: Buffer): Entry {
  const e: Entry = {
    cwd: xsave.readUInt16LE(0),
    swd: xsave.readUInt16LE(2),
    twd: xsave.readUInt16LE(4),
    fop: xsave.readUInt16LE(6),
    rip: xsave.readBigUInt64LE(8),
    rdp: xsave.readBigUInt64LE(16),
    mxcsr: xsave.readUInt32LE(24),
    mxcsr_mask: xsave.readUInt32LE(28),
    st_space: words(xsave, 32, 32),
    xmm_space: words(xsave, 160, 64),
  };
  // Only the components the buffer holds (sw_reserved says which) are recorded, at their
  // standard-format offsets.
  const features = xsave.length > 512 ? bufferFeatures(xsave) : 0n;
  const has = (bit: number, end: number) => (features & (1n << BigInt(bit))) !== 0n && xsave.length >= end;
  if (has(2, 576 + 256)) {
    const x: Entry = {
      xstate_bv: xsave.readBigUInt64LE(512),
      ymmh_space: words(xsave, 576, 64),
    };
    if (has(3, 960 + 64)) x.bndreg_state = Array.from({ length: 8 }, (_, i) => xsave.readBigUInt64LE(960 + i * 8));
    if (has(4, 1024 + 16)) x.bndcsr_state = Array.from({ length: 2 }, (_, i) => xsave.readBigUInt64LE(1024 + i * 8));
    if (has(5, 1088 + 64)) x.opmask_reg = Array.from({ length: 8 }, (_, i) => xsave.readBigUInt64LE(1088 + i * 8));
    if (has(6, 1152 + 512)) x.zmm_upper = Array.from({ length: 64 }, (_, i) => xsave.readBigUInt64LE(1152 + i * 8));
    if (has(7, 1664 + 1024)) x.hi16_zmm = Array.from({ length: 128 }, (_, i) => xsave.readBigUInt64LE(1664 + i * 8));
    if (has(9, 2688 + 8)) x.pkru = words(xsave, 2688, 2);
    // Shadow stacks are not enabled for the tasks crr dumps: CET state is all zero.
    x.cet = { cet: 0n, ssp: 0n };
    e.xsave = x;
  }
  return e;
}

/** One GDT TLS slot as get_thread_area returns it (struct user_desc, 16 bytes). */
export function tlsEntry(desc: Buffer): Entry {
  const bits = desc.readUInt32LE(12);
  return {
    entry_number: desc.readUInt32LE(0),
    base_addr: desc.readUInt32LE(4),
    limit: desc.readUInt32LE(8),
    seg_32bit: (bits & 1) !== 0,
    contents_h: (bits & 4) !== 0,
    contents_l: (bits & 2) !== 0,
    read_exec_only: (bits & 8) !== 0,
    limit_in_pages: (bits & 16) !== 0,
    seg_not_present: (bits & 32) !== 0,
    usable: (bits & 64) !== 0,
  };
}

/** An unused TLS slot (what get_thread_area reports for a 64-bit task that never set one). */
export function emptyTlsDesc(entryNumber: number): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt32LE(entryNumber, 0);
  b.writeUInt32LE(8 | 32, 12);
  return b;
}
