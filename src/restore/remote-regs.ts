// A thread's final CPU state from its core image: general registers with the syscall-restart
// fix-up done here (kernel notes trap 5) and orig_ax = -1 (trap 1), and the NT_X86_XSTATE buffer
// (trap 7) built over the task's current one so its size and supported features stay the kernel's.
import type { Regs } from '../actors/tracer.js';

const U64 = (1n << 64n) - 1n;
const neg = (n: bigint) => (-n) & U64;
const ERESTARTSYS = 512n;
const ERESTARTNOINTR = 513n;
const ERESTARTNOHAND = 514n;
const ERESTART_RESTARTBLOCK = 516n;
const EINTR = 4n;
const FP_XSTATE_MAGIC1 = 0x46505853;

export const GPREG_FIELDS = [
  'r15', 'r14', 'r13', 'r12', 'bp', 'bx', 'r11', 'r10', 'r9', 'r8', 'ax', 'cx', 'dx', 'si', 'di',
  'orig_ax', 'ip', 'cs', 'flags', 'sp', 'ss', 'fs_base', 'gs_base', 'ds', 'es', 'fs', 'gs',
] as const satisfies ReadonlyArray<keyof Regs>;

const FIELD = Object.fromEntries(GPREG_FIELDS.map((f, i) => [f, i])) as Record<(typeof GPREG_FIELDS)[number], number>;

/** A core image's gpregs as user_regs_struct words at `base` (a BigUint64Array wraps negatives). */
function loadWords(gpregs: Record<string, unknown>, words: BigUint64Array, base: number): void {
  for (let k = 0; k < GPREG_FIELDS.length; k++) {
    const v = gpregs[GPREG_FIELDS[k]!];
    words[base + k] = typeof v === 'bigint' ? v : BigInt((v as number | undefined) ?? 0);
  }
}

/** The syscall-restart fix-up and orig_ax = -1 (see finalRegs), in place on the words at `base`. */
function fixRestart(words: BigUint64Array, base: number): void {
  const orig = words[base + FIELD.orig_ax]!;
  if (orig !== U64) {
    const ax = words[base + FIELD.ax]!;
    if (ax === neg(ERESTARTSYS) || ax === neg(ERESTARTNOINTR) || ax === neg(ERESTARTNOHAND)) {
      words[base + FIELD.ax] = orig;
      words[base + FIELD.ip] = (words[base + FIELD.ip]! - 2n) & U64;
    } else if (ax === neg(ERESTART_RESTARTBLOCK)) {
      words[base + FIELD.ax] = neg(EINTR);
    }
  }
  words[base + FIELD.orig_ax] = U64;
}

/**
 * The registers a thread resumes with. A thread dumped inside a syscall still shows -ERESTART* in
 * ax when the dumper did not fix it (CRIU and crr dump do): -512/-513/-514 re-run the syscall
 * (ax = orig_ax, ip back over the 2-byte `syscall`), -516 returns -EINTR like CRIU. orig_ax is
 * always -1 so neither the kernel's restart logic nor the helper's restart state touches them.
 */
export function finalRegs(gpregs: Record<string, unknown>): Regs {
  const words = new BigUint64Array(GPREG_FIELDS.length);
  loadWords(gpregs, words, 0);
  fixRestart(words, 0);
  const regs = {} as Regs;
  GPREG_FIELDS.forEach((f, k) => (regs[f] = words[k]!));
  return regs;
}

/** finalRegs of many threads, packed back to back as user_regs_struct (no object per thread). */
export function packFinalRegs(gpregsOfThreads: ReadonlyArray<Record<string, unknown>>): Buffer {
  const n = GPREG_FIELDS.length;
  const words = new BigUint64Array(gpregsOfThreads.length * n);
  gpregsOfThreads.forEach((gpregs, t) => {
    loadWords(gpregs, words, t * n);
    fixRestart(words, t * n);
  });
  return Buffer.from(words.buffer);
}

function writeWords(buf: Buffer, offset: number, words: unknown, width: 4 | 8, count: number): void {
  if (!Array.isArray(words)) return;
  const n = Math.min(words.length, count, Math.floor((buf.length - offset) / width));
  if (n <= 0) return;
  // Typed-array views (x86 is little-endian) when aligned: ~10x cheaper than a write call and a
  // BigInt conversion per word, which counts at 10,000 threads. BigUint64Array wraps negatives.
  if ((buf.byteOffset + offset) % width === 0) {
    if (width === 4) {
      const view = new Uint32Array(buf.buffer, buf.byteOffset + offset, n);
      for (let i = 0; i < n; i++) {
        const w = words[i] as number | bigint;
        view[i] = typeof w === 'number' ? w : Number(BigInt.asUintN(32, BigInt(w)));
      }
    } else {
      const view = new BigUint64Array(buf.buffer, buf.byteOffset + offset, n);
      for (let i = 0; i < n; i++) {
        const w = words[i] as number | bigint;
        view[i] = typeof w === 'bigint' ? w : BigInt(w);
      }
    }
    return;
  }
  for (let i = 0; i < n; i++) {
    const v = BigInt(words[i] as number | bigint);
    if (width === 4) buf.writeUInt32LE(Number(BigInt.asUintN(32, v)), offset + i * width);
    else buf.writeBigUInt64LE(BigInt.asUintN(64, v), offset + i * width);
  }
}

/**
 * The xfeatures an XSAVE buffer holds, from sw_reserved (bytes 464..511). PTRACE_GETREGSET puts
 * the kernel's user-visible XCR0 in its first u64 (asm/user.h, USER_XSTATE_XCR0_WORD); a
 * signal-frame buffer starts with FP_XSTATE_MAGIC1 and has xfeatures at 472. A bare legacy area
 * holds x87|SSE only. (Reading only the signal-frame form dropped every AVX upper half.)
 */
export function bufferFeatures(current: Buffer): bigint {
  if (current.length <= 512) return 3n;
  if (current.readUInt32LE(464) === FP_XSTATE_MAGIC1) return current.readBigUInt64LE(472);
  const xcr0 = current.readBigUInt64LE(464);
  return xcr0 !== 0n ? xcr0 : 3n;
}

/** XSAVE components by xstate_bv bit, for errors. */
const XFEATURE_NAMES: Readonly<Record<number, string>> = {
  2: 'AVX',
  3: 'MPX bound registers',
  4: 'MPX bound config',
  5: 'AVX-512 opmask',
  6: 'AVX-512 ZMM_Hi256',
  7: 'AVX-512 Hi16_ZMM',
  9: 'PKRU',
  11: 'CET user state',
  17: 'AMX tile config',
  18: 'AMX tile data',
};

function xfeatureNames(bits: bigint): string {
  const names: string[] = [];
  for (let bit = 0; bits >> BigInt(bit); bit++) if ((bits >> BigInt(bit)) & 1n) names.push(XFEATURE_NAMES[bit] ?? `component ${bit}`);
  return names.join(', ');
}

/**
 * An NT_X86_XSTATE buffer (standard format) with the image's FPU/SSE/AVX/... state written over
 * `current` (the thread's buffer now): the legacy area, xstate_bv, and every component the image
 * has. A component in use in the image that the kernel's buffer does not hold (a checkpoint of a
 * CPU with AVX-512 on one without) is an error: left out, the program would go on with those
 * registers zeroed, and its library code chosen for that CPU would fault.
 */
export function xstateBuffer(current: Buffer, fpregs: Record<string, unknown>): Buffer {
  const buf = Buffer.from(current);
  fillXstate(buf, bufferFeatures(current), fpregs);
  return buf;
}

/** An indexOf value: this thread has its xstate already (see xstateSets' `inherited`). */
export const KEEP_XSTATE = 0xffffffff;

/**
 * xstateBuffer of many threads over one template, each distinct FPU Entry's buffer built once
 * (the image decoder gives byte-identical ones the same object: idle threads of one process):
 * `buffers` back to back, `indexOf` (u32 per thread) says which is each thread's. The tracer
 * takes them so, not one copy per thread (10,000 threads: 27 MB written twice for one buffer).
 * A thread whose FPU Entry is `inherited` gets KEEP_XSTATE: it holds that state since clone3
 * (threads.ts gives it to the main thread before the threads are made).
 */
export function xstateSets(
  template: Buffer,
  fpregsOfThreads: ReadonlyArray<Record<string, unknown>>,
  inherited?: Record<string, unknown>,
): { buffers: Buffer; indexOf: Buffer } {
  const size = template.length;
  const supported = bufferFeatures(template);
  const built = new Map<Record<string, unknown>, number>();
  const indexOf = Buffer.allocUnsafe(4 * fpregsOfThreads.length);
  fpregsOfThreads.forEach((fpregs, i) => {
    let k = fpregs === inherited ? KEEP_XSTATE : built.get(fpregs);
    if (k === undefined) built.set(fpregs, (k = built.size));
    indexOf.writeUInt32LE(k, 4 * i);
  });
  const buffers = Buffer.allocUnsafe(size * built.size);
  for (const [fpregs, k] of built) {
    buffers.set(template, k * size);
    fillXstate(buffers.subarray(k * size, (k + 1) * size), supported, fpregs);
  }
  return { buffers, indexOf };
}

function fillXstate(buf: Buffer, supported: bigint, fpregs: Record<string, unknown>): void {
  const n = (name: string) => Number((fpregs[name] as number | bigint | undefined) ?? 0);
  buf.writeUInt16LE(n('cwd') & 0xffff, 0);
  buf.writeUInt16LE(n('swd') & 0xffff, 2);
  buf.writeUInt16LE(n('twd') & 0xffff, 4);
  buf.writeUInt16LE(n('fop') & 0xffff, 6);
  buf.writeBigUInt64LE(BigInt.asUintN(64, BigInt((fpregs['rip'] as bigint | number | undefined) ?? 0)), 8);
  buf.writeBigUInt64LE(BigInt.asUintN(64, BigInt((fpregs['rdp'] as bigint | number | undefined) ?? 0)), 16);
  buf.writeUInt32LE(n('mxcsr') >>> 0, 24);
  buf.writeUInt32LE(n('mxcsr_mask') >>> 0, 28);
  buf.fill(0, 32, 416);
  writeWords(buf, 32, fpregs['st_space'], 4, 32);
  writeWords(buf, 160, fpregs['xmm_space'], 4, 64);
  if (buf.length < 576) return;
  const xsave = fpregs['xsave'] as Record<string, unknown> | undefined;
  let bv = 3n; // x87 and SSE come from the legacy area
  if (xsave) {
    bv = BigInt((xsave['xstate_bv'] as bigint | number | undefined) ?? 3);
    writeWords(buf, 576, xsave['ymmh_space'], 4, 64);
    writeWords(buf, 960, xsave['bndreg_state'], 8, 8);
    writeWords(buf, 1024, xsave['bndcsr_state'], 8, 2);
    writeWords(buf, 1088, xsave['opmask_reg'], 8, 8);
    writeWords(buf, 1152, xsave['zmm_upper'], 8, 64);
    writeWords(buf, 1664, xsave['hi16_zmm'], 8, 128);
    writeWords(buf, 2688, xsave['pkru'], 4, 2);
  }
  const missing = bv & ~supported;
  if (missing) {
    throw new Error(
      `its FPU state uses XSAVE components this machine's kernel does not offer: ${xfeatureNames(missing)} (xstate_bv 0x${bv.toString(16)}, kernel 0x${supported.toString(16)}); restore it on a CPU that has them`,
    );
  }
  buf.writeBigUInt64LE(bv, 512);
  buf.writeBigUInt64LE(0n, 520); // xcomp_bv: ptrace speaks the standard format
}
