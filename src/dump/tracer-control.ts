// TaskControl on top of the native tracer (src/actors/native.ts): every ptrace call goes through
// the addon's one tracer thread. Errors from the addon already carry code, errno, syscall, pid;
// they are turned into NativeError values here.
import { readFileSync } from 'node:fs';
import { NativeError } from '../errors.js';
import type { BatchCommand, TaskControl } from './control.js';
import type { Regs } from './regs.js';

const NT_X86_XSTATE = 0x202;

interface RawBinding {
  seize(pid: number, o: object): Promise<void>;
  interrupt(pid: number): Promise<void>;
  waitStop(pid: number, timeoutMs?: number): Promise<unknown>;
  getRegs(pid: number): Promise<Regs>;
  setRegs(pid: number, regs: Regs): Promise<void>;
  getRegset(pid: number, nt: number): Promise<Buffer>;
  getSigmask(pid: number): Promise<bigint>;
  peekSiginfo(pid: number, o: object): Promise<Buffer[]>;
  getRseqConfig(pid: number): Promise<{ rseqAbiPointer: bigint; rseqAbiSize: number; signature: number }>;
  injectSyscall(pid: number, nr: number, args: Array<bigint | number>, timeoutMs?: number): Promise<bigint>;
  runBatch(pid: number, o: object): Promise<{ results: bigint[]; executed: number }>;
  detach(pid: number, o: object): Promise<void>;
  kill(pid: number, timeoutMs?: number): Promise<unknown>;
  processVmReadv(pid: number, ranges: Array<{ addr: bigint; len: number }>): Buffer;
  processVmWrite(pid: number, addr: bigint, buf: Buffer): number;
}

function wrap(err: unknown): never {
  const e = err as { code?: string; errno?: number; syscall?: string; pid?: number; detail?: string; message?: string };
  if (e && typeof e.code === 'string' && typeof e.syscall === 'string') {
    throw new NativeError({ code: e.code, errno: e.errno ?? 0, syscall: e.syscall, pid: e.pid, detail: e.detail });
  }
  throw err;
}

async function call<T>(p: () => Promise<T>): Promise<T> {
  try {
    return await p();
  } catch (err) {
    wrap(err);
  }
}

function sync<T>(f: () => T): T {
  try {
    return f();
  } catch (err) {
    wrap(err);
  }
}

export async function tracerControl(): Promise<TaskControl> {
  const { native, nativePaths } = await import('../actors/native.js');
  const b = native as unknown as RawBinding;
  let stub: Buffer | undefined;
  return {
    seize: (tid) => call(() => b.seize(tid, { exitKill: false, traceClone: false, traceSysgood: true })),
    interrupt: (tid) => call(() => b.interrupt(tid)),
    waitStop: async (tid, ms) => {
      await call(() => b.waitStop(tid, ms));
    },
    getRegs: (tid) => call(() => b.getRegs(tid)),
    setRegs: (tid, regs) => call(() => b.setRegs(tid, regs)),
    getXstate: (tid) => call(() => b.getRegset(tid, NT_X86_XSTATE)),
    getSigmask: (tid) => call(() => b.getSigmask(tid)),
    peekSiginfo: async (tid, shared) => {
      const out: Uint8Array[] = [];
      for (;;) {
        const got = await call(() => b.peekSiginfo(tid, { shared, offset: out.length, count: 64 }));
        out.push(...got);
        if (got.length < 64) return out;
      }
    },
    getRseq: async (tid) => {
      const c = await call(() => b.getRseqConfig(tid));
      return c.rseqAbiPointer ? { ptr: c.rseqAbiPointer, len: c.rseqAbiSize, sig: c.signature } : undefined;
    },
    inject: (tid, nr, args) => call(() => b.injectSyscall(tid, nr, args, 5000)).then(BigInt),
    batch: async (tid, scratch, commands: BatchCommand[]) => {
      const r = await call(() => b.runBatch(tid, { scratch, commands: commands.map((c) => ({ nr: c.nr, args: c.args, flags: 0 })), timeoutMs: 5000 }));
      return r.results;
    },
    readMemory: (pid, iovs) => sync(() => b.processVmReadv(pid, iovs)),
    writeMemory: (pid, addr, data) => {
      sync(() => b.processVmWrite(pid, addr, Buffer.from(data.buffer, data.byteOffset, data.byteLength)));
    },
    detach: (tid, regs) => call(() => b.detach(tid, regs ? { regs } : {})),
    kill: async (pid) => {
      await call(() => b.kill(pid, 5000));
    },
    stubCode: () => (stub ??= readFileSync(nativePaths.stub)),
  };
}
