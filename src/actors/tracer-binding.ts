// The raw tracer part of the native addon (native/addon/tracer*.cc), as the addon exports it.
// Callers use src/actors/tracer.ts, which turns failures into NativeError and packs batches.
// Every promise rejects with an Error carrying code (errno name, or ETIMEDOUT/UNEXPECTED_STOP),
// errno (positive, 0 for our own checks), syscall, pid, and `stop` when a stop cut it short.

/** user_regs_struct, named like CRIU's user_x86_regs_entry. */
export interface RawRegs {
  r15: bigint; r14: bigint; r13: bigint; r12: bigint; bp: bigint; bx: bigint; r11: bigint;
  r10: bigint; r9: bigint; r8: bigint; ax: bigint; cx: bigint; dx: bigint; si: bigint; di: bigint;
  orig_ax: bigint; ip: bigint; cs: bigint; flags: bigint; sp: bigint; ss: bigint; fs_base: bigint;
  gs_base: bigint; ds: bigint; es: bigint; fs: bigint; gs: bigint;
}

export type StopKind = 'signal' | 'group-stop' | 'event' | 'syscall' | 'exited' | 'killed';
export type StopEvent =
  | 'fork' | 'vfork' | 'clone' | 'exec' | 'vfork-done' | 'exit' | 'seccomp' | 'stop' | 'unknown';

/** One decoded wait status. `status` is the exit code of an 'exited' stop. */
export interface RawStop {
  kind: StopKind;
  pid: number;
  waitStatus: number;
  signal?: number;
  event?: StopEvent;
  eventMsg?: bigint;
  status?: number;
}

export interface RawSeizeOptions {
  exitKill?: boolean;     // default true
  traceClone?: boolean;   // default false
  traceSysgood?: boolean; // default true
  traceExit?: boolean;    // default false
  /** PTRACE_O_SUSPEND_SECCOMP: injected syscalls ignore the task's seccomp until detach. */
  suspendSeccomp?: boolean; // default false
}

export interface RawRseqConfig {
  rseqAbiPointer: bigint;
  rseqAbiSize: number;
  signature: number;
  flags: number;
}

export interface RawTraceeInfo {
  pid: number;
  pendingStops: number;
  waiting: boolean;
  exited: boolean;
}

type Int = number | bigint;

export interface TracerBinding {
  seize(pid: number, options?: RawSeizeOptions): Promise<void>;
  interrupt(pid: number): Promise<void>;
  cont(pid: number, sig?: number): Promise<void>;
  waitStop(pid: number, timeoutMs?: number): Promise<RawStop>;
  /** SIGKILL, then wait for the exit as the tracer (reaps the ptrace side). */
  kill(pid: number, timeoutMs?: number): Promise<RawStop>;
  getRegs(pid: number): Promise<RawRegs>;
  /** Fields left out keep their current values. */
  setRegs(pid: number, regs: Partial<Record<keyof RawRegs, Int>>): Promise<void>;
  detach(pid: number, options?: { regs?: Partial<Record<keyof RawRegs, Int>>; sig?: number }): Promise<void>;
  /** Detached by the tracer thread at its next stop (a signal it stopped for passed on): for one seized that never stopped. */
  release(pid: number): Promise<void>;
  getRegset(pid: number, nt: number): Promise<Buffer>;
  setRegset(pid: number, nt: number, buf: Buffer): Promise<void>;
  getSigmask(pid: number): Promise<bigint>;
  setSigmask(pid: number, mask: Int): Promise<void>;
  peekSiginfo(pid: number, options: { shared?: boolean; offset?: Int; count?: number }): Promise<Buffer[]>;
  getRseqConfig(pid: number): Promise<RawRseqConfig>;
  /** list: packed crr_stub_cmd structs; results: executed little-endian i64s. */
  /** `data`, when given, is written at `dataAddr` by the tracer thread before the list. */
  runBatch(pid: number, batch: { scratch: Int; list: Buffer; timeoutMs?: number; data?: Buffer; dataAddr?: Int }): Promise<{ results: Buffer; executed: number }>;
  /** items: records {i32 tid, u32 unused, u64 list header address}. */
  runThreadLists(pid: number, lists: { scratch: Int; items: Buffer; timeoutMs?: number }): Promise<void>;
  /** Seizes and interrupts untraced threads; resolves with each one's rdi (u64 LE) at its stop. */
  seizeThreads(pid: number, threads: { tids: Buffer; options: number; timeoutMs?: number }): Promise<Buffer>;
  /** PTRACE_SETOPTIONS with raw option bits. */
  setOptions(pid: number, options: number): Promise<void>;
  /** tids: i32[n]; regs: user_regs_struct[n]; masks: u64[n]; xstate: n equal-sized NT_X86_XSTATE buffers. */
  setThreadsCpu(cpu: { tids: Buffer; regs: Buffer; masks: Buffer; xstate?: Buffer; xstateOf?: Buffer }): Promise<void>;
  /** tids: i32[n], detached in order. */
  detachAll(tids: Buffer): Promise<void>;
  runSyscall(pid: number, call: { scratch: Int; nr: Int; args?: Int[]; stopAtExit?: boolean; timeoutMs?: number }): Promise<bigint>;
  injectSyscall(pid: number, nr: Int, args: Int[], timeoutMs?: number): Promise<bigint>;
  listTracees(): Promise<RawTraceeInfo[]>;
  /** One seccomp filter of the task (index 0 = newest): struct sock_filter array and its flags. */
  seccompGetFilter(pid: number, index: number): Promise<{ filter: Buffer; flags: number }>;
  /** Synchronous, any thread; a short transfer throws EFAULT. */
  processVmRead(pid: number, addr: Int, len: number): Buffer;
  processVmWrite(pid: number, addr: Int, buf: Buffer): number;
  processVmReadv(pid: number, ranges: Array<{ addr: Int; len: number }>): Buffer;
  /** The ranges' bytes back to back into `buf` from `offset`; returns the byte count. */
  processVmReadvInto(pid: number, ranges: Array<{ addr: Int; len: number }>, buf: Buffer, offset?: number): number;
}
