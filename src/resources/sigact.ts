// Signal dispositions: one rt_sigaction per signal of the image (handler, flags, restorer and mask
// are plain numbers: the handler code is back in memory by now). The image lists signals 1..64
// without SIGKILL and SIGSTOP, whose actions cannot change. Runs in the task through the stub so
// dispositions are set after the memory they point into, and the helper's own are overwritten.
import { hostPidOf, type RestoreCtx } from '../restore/context.js';
import { handedName, runHanded, takeHanded } from '../restore/remote.js';
import { SIGKILL, SIGSTOP, SYS } from '../restore/remote-sys.js';
import { scratchOf } from './memory.js';
import type { ResourceKind } from './types.js';

/** The signal number of the i-th sa_entry (SIGKILL and SIGSTOP are skipped, like CRIU). */
export function signalOfIndex(i: number): number {
  let sig = 0;
  let seen = -1;
  while (seen < i) {
    sig += 1;
    if (sig !== SIGKILL && sig !== SIGSTOP) seen += 1;
  }
  return sig;
}

/** struct kernel_sigaction for rt_sigaction: handler, flags, restorer, mask (64 bits). */
export function kernelSigaction(entry: Record<string, unknown>, into = Buffer.alloc(32), at = 0): Buffer {
  const word = (name: string) => BigInt.asUintN(64, BigInt((entry[name] as bigint | number | undefined) ?? 0));
  into.writeBigUInt64LE(word('sigaction'), at);
  into.writeBigUInt64LE(word('flags'), at + 8);
  into.writeBigUInt64LE(word('restorer'), at + 16);
  into.writeBigUInt64LE(word('mask'), at + 24);
  return into;
}

export const sigact: ResourceKind<RestoreCtx> = {
  name: 'sigact',
  stage: 'memory',
  images: ['core-*'],
  after: ['mm'],
  appliesTo: (task) => !task.zombie,
  describe: () => ['rt_sigaction for every signal of the image'],
  async restore(ctx) {
    const tc = ctx.images.core['tc'] as Record<string, unknown> | undefined;
    const entries = (tc?.['sigactions'] as Array<Record<string, unknown>> | undefined) ?? [];
    const start = ctx.now();
    // After what memory and mm handed on (their commands run first, in this one round trip).
    const handed = takeHanded(ctx, scratchOf(ctx), 'sigactions', start);
    const { batch } = handed;
    // Every struct in one data block: one put per task, not one per signal (64 per task).
    const signals = entries.map((_, i) => signalOfIndex(i)).filter((sig) => sig <= 64);
    if (signals.length > 0) {
      const block = Buffer.alloc(signals.length * 32);
      signals.forEach((_, i) => kernelSigaction(entries[i]!, block, i * 32));
      batch.reserve(block.length, signals.length);
      const base = batch.put(block);
      signals.forEach((sig, i) => {
        batch.call(SYS.rt_sigaction, [sig, base + BigInt(i * 32), 0, 8], { what: `set the action of signal ${sig}` });
      });
    }
    if (batch.size === 0) return;
    await runHanded(ctx, handed, hostPidOf(ctx));
    ctx.record({ name: handedName(handed), start: handed.start, end: ctx.now(), syscalls: batch.size });
  },
};
