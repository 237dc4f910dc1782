// A scratch area in a frozen process, with the remote-syscall stub in it: the dumper asks the
// task for what only the task knows (brk, sigactions, itimers, tid address, robust list, ...)
// in one batch per thread. Everything here is undone by close(): munmap of the scratch area.
import { StageError } from '../errors.js';
import type { BatchCommand, TaskControl } from './control.js';
import type { Regs } from './regs.js';

export const NR = {
  fcntl: 72,
  mmap: 9,
  mprotect: 10,
  munmap: 11,
  brk: 12,
  rt_sigaction: 13,
  getitimer: 36,
  sigaltstack: 131,
  personality: 135,
  prctl: 157,
  get_thread_area: 211,
  timer_gettime: 224,
  get_robust_list: 274,
  kcmp: 312,
} as const;

export const SCRATCH_SIZE = 0x100000;
/** Start of the area the stub leaves to the caller (see native/stub/stub.h). */
const DATA_OFFSET = 0x49000;
/** The last page is never written: reading it maps the zero page, whose PFN the page dumper needs. */
const ZERO_PROBE_OFFSET = SCRATCH_SIZE - 0x1000;

const PROT_RWX = 7;
const MAP_PRIVATE_ANON = 0x22;

function isErr(v: bigint): boolean {
  const s = BigInt.asIntN(64, v);
  return s < 0n && s >= -4095n;
}

export class Scratch {
  private next: bigint;
  private constructor(readonly ctl: TaskControl, readonly pid: number, readonly base: bigint) {
    this.next = base + BigInt(DATA_OFFSET);
  }

  /** Maps the scratch area through the main thread and copies the stub in. */
  static async open(ctl: TaskControl, pid: number): Promise<Scratch> {
    const addr = await ctl.inject(pid, NR.mmap, [0, SCRATCH_SIZE, PROT_RWX, MAP_PRIVATE_ANON, -1, 0]);
    if (isErr(addr)) {
      throw new StageError({ stage: 'dump', pid, syscall: 'mmap', errno: Number(-BigInt.asIntN(64, addr)), message: 'cannot map the scratch area in the task' });
    }
    const s = new Scratch(ctl, pid, addr);
    ctl.writeMemory(pid, addr, ctl.stubCode());
    return s;
  }

  /** Where the data area ends (the probe page follows). */
  get dataEnd(): number {
    return ZERO_PROBE_OFFSET;
  }

  /** Address of the never-written probe page (for the zero-page PFN). */
  get zeroProbe(): bigint {
    return this.base + BigInt(ZERO_PROBE_OFFSET);
  }

  /** Reserves `len` bytes of the data area (8-byte aligned), optionally filled. */
  alloc(len: number, fill?: Uint8Array): bigint {
    const at = this.next;
    this.next += BigInt((len + 7) & ~7);
    if (this.next > this.base + BigInt(ZERO_PROBE_OFFSET)) throw new Error('dump scratch data area exhausted');
    if (fill) this.ctl.writeMemory(this.pid, at, fill);
    return at;
  }

  /** Forgets every allocation (the memory is reused by the next round). */
  reset(): void {
    this.next = this.base + BigInt(DATA_OFFSET);
  }

  read(addr: bigint, len: number): Buffer {
    return this.ctl.readMemory(this.pid, [{ addr, len }]);
  }

  /** Runs the commands in thread `tid`; results are rax values (negative errno as bigint). */
  async run(tid: number, commands: BatchCommand[]): Promise<bigint[]> {
    if (!commands.length) return [];
    return this.ctl.batch(tid, this.base, commands);
  }

  /** Unmaps the scratch area (through a bare injected syscall: the stub cannot unmap itself). */
  async close(mainRegs?: Regs): Promise<void> {
    // The last batch left the main thread's ip inside the scratch area: put it back first, so
    // the injected munmap runs from the task's own code (and its bytes can be put back).
    if (mainRegs) await this.ctl.setRegs(this.pid, mainRegs);
    const r = await this.ctl.inject(this.pid, NR.munmap, [this.base, SCRATCH_SIZE]);
    if (isErr(r)) throw new StageError({ stage: 'dump', pid: this.pid, syscall: 'munmap', errno: Number(-BigInt.asIntN(64, r)), message: 'cannot unmap the scratch area' });
  }
}

export function syscallFailed(v: bigint): boolean {
  return isErr(v);
}
