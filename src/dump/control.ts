// What the dumper needs from the tracer, as one small interface: the dump modules are written
// against it, and `tracerControl()` adapts the tracer actor (src/actors/tracer.ts) to it. Tests
// of the collectors can pass a fake.
import type { Regs } from './regs.js';

export interface BatchCommand {
  nr: number;
  args: Array<bigint | number>;
}

export interface TaskControl {
  seize(tid: number): Promise<void>;
  interrupt(tid: number): Promise<void>;
  /** The thread's next stop: `group-stop` (with its stop signal), `signal`, `event`... */
  waitStop(tid: number, timeoutMs?: number): Promise<{ kind: string; signal?: number }>;
  /** PTRACE_CONT, delivering `signal` when given. */
  cont(tid: number, signal?: number): Promise<void>;
  getRegs(tid: number): Promise<Regs>;
  setRegs(tid: number, regs: Regs): Promise<void>;
  getXstate(tid: number): Promise<Buffer>;
  getSigmask(tid: number): Promise<bigint>;
  setSigmask(tid: number, mask: bigint): Promise<void>;
  peekSiginfo(tid: number, shared: boolean): Promise<Uint8Array[]>;
  getRseq(tid: number): Promise<{ ptr: bigint; len: number; sig: number } | undefined>;
  /** One syscall run by the stopped thread (through `syscall; int3` at its ip); returns rax. */
  inject(tid: number, nr: number, args: Array<bigint | number>): Promise<bigint>;
  /** A list of syscalls run by the stub at `scratch` in the thread; results as rax values. */
  batch(tid: number, scratch: bigint, commands: BatchCommand[]): Promise<bigint[]>;
  /**
   * Every thread runs its own stub list at once (header at `header`, written there by the
   * caller, results left in place). Optional: without it the dumper runs one batch per thread.
   */
  threadLists?(pid: number, scratch: bigint, lists: Array<{ tid: number; header: bigint }>): Promise<void>;
  readMemory(pid: number, iovs: Array<{ addr: bigint; len: number }>): Buffer;
  writeMemory(pid: number, addr: bigint, data: Uint8Array): void;
  /** Detaches, first setting `regs` when given. */
  detach(tid: number, regs?: unknown): Promise<void>;
  /** Detaches a thread seized but never stopped once it stops (PTRACE_DETACH needs a stopped tracee). */
  release?(tid: number): Promise<void>;
  /** SIGKILLs a process and waits until the tracer sees it gone. */
  kill(pid: number): Promise<void>;
  /** The stub's code bytes, copied to the start of a scratch area. */
  stubCode(): Buffer;
  /** One seccomp filter of a stopped thread (index 0 = newest): sock_filter array and flags. */
  seccompFilter?(tid: number, index: number): Promise<{ filter: Buffer; flags: number }>;
}
