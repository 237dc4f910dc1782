// TaskControl on top of the tracer actor (src/actors/tracer.ts): every ptrace call goes through
// the addon's one tracer thread; its errors are already NativeError values (code, errno,
// syscall, pid).
import { readdirSync } from 'node:fs';
import type { BatchCommand, TaskControl } from './control.js';
import type { Regs } from './regs.js';
import { seccompModeOf } from './seccomp.js';

function otherThreads(pid: number): number[] {
  try {
    return readdirSync(`/proc/${pid}/task`).map(Number).filter((tid) => tid !== pid);
  } catch {
    return [];
  }
}

export async function tracerControl(): Promise<TaskControl> {
  const { tracer, NT_X86_XSTATE } = await import('../actors/tracer.js');
  const { stubCode } = await import('../actors/stub.js');
  return {
    seize: async (tid) => {
      // A thread under seccomp would be killed (strict) or filtered by the syscalls the dump injects.
      await tracer.seize(tid, { exitKill: false, traceClone: false, traceSysgood: true, suspendSeccomp: seccompModeOf(tid) !== 0 });
    },
    interrupt: async (tid) => {
      await tracer.interrupt(tid);
    },
    waitStop: (tid, ms) => tracer.waitStop(tid, ms),
    cont: async (tid, signal) => {
      await tracer.cont(tid, signal);
    },
    getRegs: async (tid) => (await tracer.getRegs(tid)) as unknown as Regs,
    setRegs: async (tid, regs) => {
      await tracer.setRegs(tid, regs);
    },
    getXstate: (tid) => tracer.getRegset(tid, NT_X86_XSTATE),
    getSigmask: (tid) => tracer.getSigmask(tid),
    setSigmask: async (tid, mask) => {
      await tracer.setSigmask(tid, mask);
    },
    peekSiginfo: async (tid, shared) => {
      const out: Uint8Array[] = [];
      for (;;) {
        const got = await tracer.peekSiginfo(tid, { shared, offset: out.length, count: 64 });
        out.push(...got);
        if (got.length < 64) return out;
      }
    },
    getRseq: async (tid) => {
      const c = await tracer.getRseqConfig(tid);
      return c.rseqAbiPointer ? { ptr: c.rseqAbiPointer, len: c.rseqAbiSize, sig: c.signature } : undefined;
    },
    inject: async (tid, nr, args) => BigInt(await tracer.injectSyscall(tid, nr, args, 5000)),
    batch: async (tid, scratch, commands: BatchCommand[]) => {
      const r = await tracer.runBatch(tid, { scratch, commands, timeoutMs: 5000 });
      return r.results;
    },
    threadLists: async (pid, scratch, lists) => {
      await tracer.runThreadLists(pid, scratch, lists, 5000 + lists.length);
    },
    readMemory: (pid, iovs) => tracer.processVmReadv(pid, iovs),
    writeMemory: (pid, addr, data) => {
      tracer.processVmWrite(pid, addr, Buffer.from(data.buffer, data.byteOffset, data.byteLength));
    },
    detach: async (tid, regs) => {
      await tracer.detach(tid, regs ? { regs: regs as Regs } : {});
    },
    release: (tid) => tracer.release(tid),
    kill: async (pid) => {
      const others = otherThreads(pid);
      await tracer.kill(pid, 5000);
      // Each other thread's exit was reaped by the tracer thread and is queued there as a stop
      // nobody asked for; a later tracee with the same TID (a restore at the dumped TIDs) would
      // be handed it as its own first stop ("killed 9"). Collect them now.
      for (const tid of others) await tracer.waitStop(tid, 1000).catch(() => undefined);
    },
    stubCode: () => stubCode(),
    seccompFilter: (tid, index) => tracer.seccompGetFilter(tid, index),
  };
}
