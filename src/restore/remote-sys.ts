// x86-64 numbers the address-space restorer injects: syscall numbers, and the flag and option
// values of mmap, madvise, prctl, clone3 and friends, written here once so every remote batch
// (src/restore/remote*.ts, src/resources/{memory,mm,threads,...}.ts) names them the same way.
import { constants } from 'node:os';

export const SYS = {
  read: 0,
  close: 3,
  mmap: 9,
  mprotect: 10,
  munmap: 11,
  rt_sigaction: 13,
  rt_sigprocmask: 14,
  mremap: 25,
  madvise: 28,
  shmat: 30,
  pause: 34,
  setitimer: 38,
  getpid: 39,
  fcntl: 72,
  setgroups: 116,
  setresuid: 117,
  setresgid: 119,
  setfsuid: 122,
  setfsgid: 123,
  capset: 126,
  rt_sigqueueinfo: 129,
  sigaltstack: 131,
  personality: 135,
  setpriority: 141,
  sched_setscheduler: 144,
  mlock: 149,
  prctl: 157,
  arch_prctl: 158,
  gettid: 186,
  io_setup: 206,
  io_getevents: 208,
  io_submit: 209,
  set_tid_address: 218,
  set_robust_list: 273,
  openat: 257,
  preadv: 295,
  rt_tgsigqueueinfo: 297,
  seccomp: 317,
  rseq: 334,
  clone3: 435,
  close_range: 436,
} as const;

/** Names by number, for error messages ("munmap failed: EINVAL"). */
export const SYSCALL_NAMES: ReadonlyMap<number, string> = new Map(Object.entries(SYS).map(([name, nr]) => [nr, name]));

/** Also the close-on-exec flag of userfaultfd(2), pipe2(2), dup3(2) and the helper's open. */
export const O_CLOEXEC = 0o2000000;

export const PROT_READ = 1;
export const PROT_WRITE = 2;
export const PROT_EXEC = 4;

export const MAP_SHARED = 0x01;
export const MAP_PRIVATE = 0x02;
export const MAP_FIXED = 0x10;
export const MAP_ANONYMOUS = 0x20;
export const MAP_GROWSDOWN = 0x100;
export const MAP_NORESERVE = 0x4000;
/** In a VMA entry's flags: the VMA is mlock()ed (VM_LOCKED); never passed to the restore's mmap. */
export const MAP_LOCKED = 0x2000;
/** mmap flags a dumped VMA may carry that mean the same at restore. */
export const MAP_KEEP = MAP_SHARED | MAP_PRIVATE | MAP_ANONYMOUS | MAP_GROWSDOWN | MAP_NORESERVE;

export const MADV_HUGEPAGE = 14;
export const MADV_NOHUGEPAGE = 15;
export const MADV_POPULATE_WRITE = 23;

export const ARCH_MAP_VDSO_64 = 0x2003;

export const PR_SET_PDEATHSIG = 1;
export const PR_SET_DUMPABLE = 4;
export const PR_SET_NAME = 15;
export const PR_CAPBSET_DROP = 24;
export const PR_SET_SECUREBITS = 28;
export const PR_SET_MM = 35;
export const PR_SET_MM_MAP = 14;
export const PR_SET_NO_NEW_PRIVS = 38;
export const PR_SET_THP_DISABLE = 41;
export const PR_CAP_AMBIENT = 47;
export const PR_CAP_AMBIENT_RAISE = 2;
export const PR_SET_SECCOMP = 22;

export const SECCOMP_MODE_STRICT = 1;
export const SECCOMP_SET_MODE_FILTER = 1;

export const PRIO_PROCESS = 0;

export const CLONE_VM = 0x100;
export const CLONE_FS = 0x200;
export const CLONE_FILES = 0x400;
export const CLONE_SIGHAND = 0x800;
export const CLONE_THREAD = 0x10000;
export const CLONE_SYSVSEM = 0x40000;
/** A thread of a restored process: everything shared like pthread_create does, minus TLS and tid words (set later). */
export const CLONE_THREAD_FLAGS = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM;

export const SIGKILL = 9;
export const SIGSTOP = 19;
export const SS_DISABLE = 2;

const ERRNO_NAMES = new Map<number, string>(Object.entries(constants.errno).map(([name, n]) => [n, name]));

/** 'EINVAL' for 22; 'E<n>' for a number the platform does not name. */
export function errnoName(errno: number): string {
  return ERRNO_NAMES.get(errno) ?? `E${errno}`;
}

// Constants, not expressions: a bigint expression is a new BigInt each time it is evaluated, and
// every result of every remote batch goes through these (~8 MB per tree-1000 restore when it did).
const U64 = (1n << 64n) - 1n;
const I64_MIN = -(1n << 63n);
const I64_MAX = (1n << 63n) - 1n;
const TWO_TO_64 = 1n << 64n;
const LAST_ERRNO = -4095n;

/**
 * A 64-bit register value read as signed: -4095..-1 means a failed syscall. A value already in
 * the signed range (the tracer's results are) is returned as it is, with no new bigint.
 */
export function signed(value: bigint): bigint {
  if (value >= I64_MIN && value <= I64_MAX) return value;
  const v = value & U64;
  return v > I64_MAX ? v - TWO_TO_64 : v;
}

export function isSyscallError(result: bigint): boolean {
  const r = signed(result);
  return r < 0n && r >= LAST_ERRNO;
}
