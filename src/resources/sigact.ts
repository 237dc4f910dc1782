// Signal dispositions: one rt_sigaction per signal of the image whose action is not the default
// (handler, flags, restorer and mask are plain numbers: the handler code is back in memory by
// now). The image lists signals 1..64 without SIGKILL and SIGSTOP, whose actions cannot change.
// Runs in the task through the stub so dispositions are set after the memory they point into.
// A default action (all four fields 0) is what the helper has already: the first one is spawned
// with every signal at SIG_DFL (native/addon/spawn.cc), never installs a handler, and every other
// helper is forked from one before any task's sigactions are set; most of a task's 62 entries
// are default.
import { hostPidOf, type RestoreCtx } from '../restore/context.js';
import { handedName, runOrHandOn, takeHanded } from '../restore/remote.js';
import { SIGKILL, SIGSTOP, SYS } from '../restore/remote-sys.js';
import { scratchOf } from './memory.js';
import { setU64 } from '../actors/stub.js';
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

/** The signals rt_sigaction can set (1..64), by sa_entry index. */
const SIGNALS = Array.from({ length: 64 }, (_, i) => signalOfIndex(i)).filter((sig) => sig <= 64);

const STRUCT_SIZE = 32;

/** struct kernel_sigaction for rt_sigaction: handler, flags, restorer, mask (64 bits). */
export function kernelSigaction(entry: Record<string, unknown>, into = Buffer.alloc(STRUCT_SIZE), at = 0): Buffer {
  writeSigaction(new DataView(into.buffer, into.byteOffset, into.byteLength), at, entry);
  return into;
}

function writeSigaction(view: DataView, at: number, entry: Record<string, unknown>): void {
  setU64(view, at, (entry['sigaction'] as bigint | number | undefined) ?? 0);
  setU64(view, at + 8, (entry['flags'] as bigint | number | undefined) ?? 0);
  setU64(view, at + 16, (entry['restorer'] as bigint | number | undefined) ?? 0);
  setU64(view, at + 24, (entry['mask'] as bigint | number | undefined) ?? 0);
}

const ACTION_FIELDS = ['sigaction', 'flags', 'restorer', 'mask'] as const;

/** SIG_DFL with no flags, restorer or mask: the action every helper has for every signal. */
export function isDefaultAction(entry: Record<string, unknown>): boolean {
  // Compared as decoded (number or bigint), not through BigInt(): 62 entries a task.
  return ACTION_FIELDS.every((field) => entry[field] === undefined || entry[field] === 0 || entry[field] === 0n);
}

// Shared by every rt_sigaction command: its purpose is made from the signal only on failure.
const SET_ACTION = { what: (args: readonly (number | bigint)[]) => `set the action of signal ${args[0]}` };

export const sigact: ResourceKind<RestoreCtx> = {
  name: 'sigact',
  stage: 'memory',
  images: ['core-*'],
  after: ['mm'],
  appliesTo: (task) => !task.zombie,
  describe: () => ['rt_sigaction for every signal whose action in the image is not the default'],
  async restore(ctx) {
    const tc = ctx.images.core['tc'] as Record<string, unknown> | undefined;
    const entries = (tc?.['sigactions'] as Array<Record<string, unknown>> | undefined) ?? [];
    const start = ctx.now();
    // After what memory and mm handed on (their commands run first, in this one round trip).
    const handed = takeHanded(ctx, scratchOf(ctx), 'sigactions', start);
    const { batch } = handed;
    const changed: number[] = [];
    for (let i = 0; i < Math.min(entries.length, SIGNALS.length); i++) if (!isDefaultAction(entries[i]!)) changed.push(i);
    const count = changed.length;
    if (count > 0) {
      // Every struct in one data block: one put per task, not one per signal.
      const block = Buffer.alloc(count * STRUCT_SIZE);
      const view = new DataView(block.buffer, block.byteOffset, block.byteLength);
      changed.forEach((index, k) => writeSigaction(view, k * STRUCT_SIZE, entries[index]!));
      batch.reserve(block.length, count);
      // A number: scratch addresses are far below 2^53, and numbers pack without a BigInt.
      const base = Number(batch.put(block));
      // One args array for all: RemoteBatch packs a command's args when it is added.
      const args = [0, 0, 0, 8];
      changed.forEach((index, k) => {
        args[0] = SIGNALS[index]!;
        args[1] = base + k * STRUCT_SIZE;
        batch.call(SYS.rt_sigaction, args, SET_ACTION);
      });
    }
    if (batch.size === 0) return;
    // The main thread's state goes in the same round trip.
    const ran = await runOrHandOn(ctx, handed, 'main-thread', hostPidOf(ctx));
    if (ran) ctx.record({ name: handedName(handed), start: handed.start, end: ctx.now(), syscalls: batch.size });
    else ctx.record({ name: 'sigactions', start, end: ctx.now(), syscalls: count });
  },
};
