// The TypeScript client of the tracer thread (native/addon/tracer*.cc): typed results, every
// failure a NativeError with the pid (a TracerStopError when a stop cut an operation short),
// and stub batches packed here. See docs/ARCHITECTURE.md ("The tracer thread and the remote-syscall stub") for what each call does.
import { NativeError } from '../errors.js';
import { native } from './native.js';
import { packCommands, STUB_CMD_SIZE, STUB_MAX_COMMANDS, unpackResults, type StubCommand } from './stub.js';
import type { RawRegs, RawRseqConfig, RawSeizeOptions, RawStop, RawTraceeInfo } from './tracer-binding.js';

export type Regs = RawRegs;
export type Stop = RawStop;
export type RseqConfig = RawRseqConfig;
export type TraceeInfo = RawTraceeInfo;
export type SeizeOptions = RawSeizeOptions;
export type { StubCommand } from './stub.js';
type Int = number | bigint;

export const NT_PRSTATUS = 1;
export const NT_PRFPREG = 2;
export const NT_X86_XSTATE = 0x202;

/** An operation ended by a stop it did not expect (a signal, an exit) or by its timeout. */
export class TracerStopError extends NativeError {
  readonly stop: Stop | undefined;
  constructor(fields: ConstructorParameters<typeof NativeError>[0] & { stop?: Stop }) {
    super(fields);
    this.stop = fields.stop;
  }
}

interface RawFailure {
  code?: string;
  errno?: number;
  syscall?: string;
  pid?: number;
  detail?: string;
  stop?: Stop;
  message?: string;
}

/** Turns what the addon throws into a NativeError (TypeErrors for bad arguments pass through). */
export function toNativeError(e: unknown, pid?: number): unknown {
  if (e instanceof NativeError || e instanceof TypeError || e instanceof RangeError) return e;
  const raw = (e ?? {}) as RawFailure;
  if (typeof raw.code !== 'string') return e;
  const fields = {
    code: raw.code,
    errno: raw.errno ?? 0,
    syscall: raw.syscall ?? 'unknown',
    pid: raw.pid ?? pid,
    ...(raw.detail !== undefined ? { detail: raw.detail } : {}),
  };
  return raw.stop || raw.code === 'ETIMEDOUT' || raw.code === 'UNEXPECTED_STOP'
    ? new TracerStopError({ ...fields, ...(raw.stop ? { stop: raw.stop } : {}) })
    : new NativeError(fields);
}

async function call<T>(pid: number | undefined, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (e) {
    throw toNativeError(e, pid);
  }
}

function sync<T>(pid: number, run: () => T): T {
  try {
    return run();
  } catch (e) {
    throw toNativeError(e, pid);
  }
}

export interface BatchResult {
  /** Signed results of the commands that ran, in order (an errno as -errno). */
  results: bigint[];
  /** How many commands ran: fewer than given when a STOP_ON_ERROR command failed. */
  executed: number;
}

/**
 * A list longer than the stub's command area (STUB_MAX_COMMANDS) run as consecutive lists, as
 * one list would: results in order, stopping after the part where a command stopped the stub.
 * (A dumper's kcmp batch against every task seen so far passes 4,096 beyond ~1,000 tasks.)
 */
interface BatchOptions {
  scratch: bigint;
  timeoutMs?: number;
  data?: { addr: bigint; bytes: Buffer };
}

/** Commands as objects, or already packed as crr_stub_cmd structs (`list`, at most STUB_MAX_COMMANDS). */
type BatchInput = BatchOptions & ({ commands: readonly StubCommand[]; list?: undefined } | { list: Buffer; commands?: undefined });

async function runInParts(pid: number, batch: BatchOptions & { commands: readonly StubCommand[] }): Promise<BatchResult> {
  const results: bigint[] = [];
  let executed = 0;
  const { data, ...rest } = batch;
  for (let at = 0; at < batch.commands.length; at += STUB_MAX_COMMANDS) {
    const part = batch.commands.slice(at, at + STUB_MAX_COMMANDS);
    const got = await tracer.runBatch(pid, { ...rest, commands: part, ...(at === 0 && data ? { data } : {}) });
    results.push(...got.results);
    executed += got.executed;
    if (got.executed < part.length) break;
  }
  return { results, executed };
}

/** The tracer of this Node environment: every ptrace call goes through its one native thread. */
export const tracer = {
  seize: (pid: number, options: SeizeOptions = {}) => call(pid, () => native.seize(pid, options)),
  interrupt: (pid: number) => call(pid, () => native.interrupt(pid)),
  cont: (pid: number, sig = 0) => call(pid, () => native.cont(pid, sig)),
  /** The next stop of a tracee (queued ones first); ETIMEDOUT after timeoutMs. */
  waitStop: (pid: number, timeoutMs?: number) => call(pid, () => native.waitStop(pid, timeoutMs)),
  /** SIGKILL the tracee and wait for its exit as its tracer. */
  kill: (pid: number, timeoutMs?: number) => call(pid, () => native.kill(pid, timeoutMs)),
  getRegs: (pid: number) => call(pid, () => native.getRegs(pid)),
  /** Fields left out keep their current values. */
  setRegs: (pid: number, regs: Partial<Record<keyof Regs, Int>>) => call(pid, () => native.setRegs(pid, regs)),
  /** Optionally set registers, then PTRACE_DETACH (delivering sig if given). */
  detach: (pid: number, options: { regs?: Partial<Record<keyof Regs, Int>>; sig?: number } = {}) =>
    call(pid, () => native.detach(pid, options)),
  release: (pid: number) => call(pid, () => native.release(pid)),
  getRegset: (pid: number, nt: number) => call(pid, () => native.getRegset(pid, nt)),
  setRegset: (pid: number, nt: number, buf: Buffer) => call(pid, () => native.setRegset(pid, nt, buf)),
  getSigmask: (pid: number) => call(pid, () => native.getSigmask(pid)),
  setSigmask: (pid: number, mask: bigint) => call(pid, () => native.setSigmask(pid, mask)),
  /** 128-byte siginfo records of the task's private (or, with shared, its process's) queue. */
  peekSiginfo: (pid: number, options: { shared: boolean; offset?: number; count?: number }) =>
    call(pid, () => native.peekSiginfo(pid, options)),
  getRseqConfig: (pid: number) => call(pid, () => native.getRseqConfig(pid)),
  /**
   * Runs commands through the stub at `scratch` (its code must already be there) and waits for
   * its int3. Saves and restores no registers: the task is left at the stub's trap. `data` (the
   * commands' iovecs, paths, structs) is written first by the tracer thread, not this one.
   */
  async runBatch(pid: number, batch: BatchInput): Promise<BatchResult> {
    let list: Buffer;
    if (batch.list !== undefined) {
      if (batch.list.length > STUB_MAX_COMMANDS * STUB_CMD_SIZE) throw new RangeError(`a packed batch holds at most ${STUB_MAX_COMMANDS} commands`);
      list = batch.list;
    } else {
      if (batch.commands.length > STUB_MAX_COMMANDS) return runInParts(pid, batch);
      list = packCommands(batch.commands);
    }
    // Filled in place, not spread: a restore runs a few batches per task.
    const request: Parameters<typeof native.runBatch>[1] = { scratch: batch.scratch, list };
    if (batch.timeoutMs !== undefined) request.timeoutMs = batch.timeoutMs;
    if (batch.data) {
      request.data = batch.data.bytes;
      request.dataAddr = batch.data.addr;
    }
    const raw = await call(pid, () => native.runBatch(pid, request));
    return { results: unpackResults(raw.results, raw.executed), executed: raw.executed };
  },
  /**
   * Every thread runs its own stub command list at once (list header at `header`, written there
   * by the caller) from where it is stopped, and ends at the stub's trap. Results stay in the
   * task's memory. Rejects with the first thread's failure.
   */
  runThreadLists(pid: number, scratch: bigint, lists: ReadonlyArray<{ tid: number; header: bigint }>, timeoutMs?: number) {
    const items = Buffer.alloc(lists.length * 16);
    lists.forEach((l, i) => {
      items.writeInt32LE(l.tid, i * 16);
      items.writeBigUInt64LE(l.header, i * 16 + 8);
    });
    return call(pid, () => native.runThreadLists(pid, { scratch, items, ...(timeoutMs !== undefined ? { timeoutMs } : {}) }));
  },
  /**
   * Seizes threads that run untraced (ptrace `options` as raw bits), interrupts each and waits
   * for its stop; resolves with each thread's rdi there, in order.
   */
  async seizeThreads(pid: number, tids: readonly number[], options: number, timeoutMs?: number): Promise<bigint[]> {
    const raw = await call(pid, () => native.seizeThreads(pid, { tids: Buffer.from(Int32Array.from(tids).buffer), options, ...(timeoutMs !== undefined ? { timeoutMs } : {}) }));
    return Array.from({ length: raw.length / 8 }, (_, i) => raw.readBigUInt64LE(i * 8));
  },
  setOptions: (pid: number, options: number) => call(pid, () => native.setOptions(pid, options)),
  /**
   * Registers (packed user_regs_struct), NT_X86_XSTATE and blocked mask of many stopped threads.
   * xstate: one buffer per thread, or with xstateOf (u32 per thread) the distinct buffers each
   * thread picks one of.
   */
  setThreadsCpu: (cpu: { tids: number[]; regs: Buffer; masks: bigint[]; xstate?: Buffer; xstateOf?: Buffer }) => {
    const tids = Buffer.from(Int32Array.from(cpu.tids).buffer);
    const masks = Buffer.from(BigUint64Array.from(cpu.masks).buffer);
    const xstate = cpu.xstate ? { xstate: cpu.xstate, ...(cpu.xstateOf ? { xstateOf: cpu.xstateOf } : {}) } : {};
    return call(cpu.tids[0], () => native.setThreadsCpu({ tids, regs: cpu.regs, masks, ...xstate }));
  },
  /** PTRACE_DETACH every thread, in order. */
  detachAll: (tids: number[]) => call(tids[0], () => native.detachAll(Buffer.from(Int32Array.from(tids).buffer))),
  /**
   * One syscall through the stub's bare `syscall; int3` under PTRACE_SYSCALL; with stopAtExit
   * the task is left at the syscall-exit stop (rip inside the scratch area).
   */
  runSyscall: (pid: number, c: { scratch: bigint; nr: number; args?: Int[]; stopAtExit?: boolean; timeoutMs?: number }) =>
    call(pid, () => native.runSyscall(pid, c)),
  /** One syscall in a task without a stub: patched in at rip, then code and registers put back. */
  injectSyscall: (pid: number, nr: number, args: Int[] = [], timeoutMs?: number) =>
    call(pid, () => native.injectSyscall(pid, nr, args, timeoutMs)),
  listTracees: () => call(undefined, () => native.listTracees()),
  /** One seccomp filter of a stopped tracee (0 = newest); ENOENT past the oldest. */
  seccompGetFilter: (pid: number, index: number) => call(pid, () => native.seccompGetFilter(pid, index)),
  processVmRead: (pid: number, addr: bigint, len: number) => sync(pid, () => native.processVmRead(pid, addr, len)),
  processVmWrite: (pid: number, addr: bigint, buf: Buffer) => sync(pid, () => native.processVmWrite(pid, addr, buf)),
  processVmReadv: (pid: number, ranges: Array<{ addr: bigint; len: number }>) =>
    sync(pid, () => native.processVmReadv(pid, ranges)),
};

export type Tracer = typeof tracer;
