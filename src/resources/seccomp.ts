// Seccomp and no_new_privs, per thread (both belong to a thread, not a process), in the finish
// stage after creds. Why this is safe although more syscalls are injected afterwards (the final
// munmap of the scratch area, and whatever kinds still run): the barrier seizes a task whose
// images have seccomp with PTRACE_O_SUSPEND_SECCOMP (threads cloned under ptrace inherit it), so
// neither strict mode nor a filter applies to anything the restorer injects; the kernel drops the
// option at PTRACE_DETACH, and the restored code runs under the restored mode from its first
// instruction. Each thread gets, in one batch of its own: prctl(PR_SET_NO_NEW_PRIVS) when its
// creds say so, then its filter chain oldest first (seccomp(SECCOMP_SET_MODE_FILTER, flags)), or
// seccomp(SECCOMP_SET_MODE_STRICT). A filter needs no_new_privs or CAP_SYS_ADMIN (after creds):
// a chain the task could not have installed with its restored creds fails with EACCES, named.
import { StageError } from '../errors.js';
import { hostPidOf, type RestoreCtx } from '../restore/context.js';
import { RemoteBatch } from '../restore/remote.js';
import { SYS } from '../restore/remote-sys.js';
import { restoredThreads } from '../restore/remote-threads.js';
import { scratchOf } from './memory.js';
import type { ResourceKind, TaskImages } from './types.js';

const MODES: Record<string, number> = { disabled: 0, strict: 1, filter: 2 };
const PR_SET_NO_NEW_PRIVS = 38;
const SECCOMP_SET_MODE_STRICT = 0;
const SECCOMP_SET_MODE_FILTER = 1;
const SOCK_FILTER_SIZE = 8;
/** SECCOMP_FILTER_FLAG_LOG and _SPEC_ALLOW; TSYNC would copy one thread's chain onto the others, which get their own. */
const KEPT_FILTER_FLAGS = 2 | 4;

type Rec = Record<string, unknown>;

/** The seccomp mode of a thread's core (0 disabled, 1 strict, 2 filter). */
export function seccompMode(core: Rec): number {
  const threadCore = core['thread_core'] as Rec | undefined;
  const tc = core['tc'] as Rec | undefined;
  const raw = threadCore?.['seccomp_mode'] ?? tc?.['old_seccomp_mode'] ?? 0;
  return typeof raw === 'string' ? (MODES[raw] ?? -1) : Number(raw);
}

/** Whether any thread of a task runs under seccomp (the barrier then seizes it with PTRACE_O_SUSPEND_SECCOMP). */
export function needsSeccompSuspend(images: { cores: ReadonlyMap<number, unknown> } | TaskImages): boolean {
  const cores = (images as { cores?: ReadonlyMap<number, unknown> }).cores;
  return [...(cores?.values() ?? [])].some((core) => seccompMode(core as Rec) !== 0);
}

export interface SeccompFilterImage {
  filter: Buffer;
  prev?: number;
  flags: number;
}

/** A thread's filters, oldest first, walking `prev` down from the newest one its core names. */
export function filterChain(filters: readonly SeccompFilterImage[], newest: number): SeccompFilterImage[] {
  const chain: SeccompFilterImage[] = [];
  const seen = new Set<number>();
  for (let i: number | undefined = newest; i !== undefined; i = filters[i]!.prev) {
    if (i < 0 || i >= filters.length || seen.has(i)) throw new RangeError(`seccomp.img: filter ${i} is missing or its chain loops`);
    seen.add(i);
    chain.push(filters[i]!);
  }
  return chain.reverse();
}

/** struct sock_fprog: u16 count, padding, pointer to the instructions. */
export function sockFprog(count: number, instructions: bigint): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt16LE(count, 0);
  b.writeBigUInt64LE(instructions, 8);
  return b;
}

function filtersOf(ctx: RestoreCtx): SeccompFilterImage[] {
  if (!ctx.checkpoint.has('seccomp.img')) return [];
  const entry = [...ctx.checkpoint.image('seccomp.img').entries()][0]?.decode() as Rec | undefined;
  return ((entry?.['seccomp_filters'] as Rec[] | undefined) ?? []).map((f) => ({
    filter: Buffer.from(f['filter'] as Uint8Array),
    prev: f['prev'] === undefined || f['prev'] === null ? undefined : Number(f['prev']),
    flags: Number(f['flags'] ?? 0),
  }));
}

export const seccomp: ResourceKind<RestoreCtx> = {
  name: 'seccomp',
  stage: 'finish',
  images: ['core-*', 'seccomp'],
  after: ['creds', 'signals', 'timers', 'file-locks'],
  appliesTo: (task) => !task.zombie,
  describe: () => ['no_new_privs and seccomp (strict, or the filter chain) per thread, under PTRACE_O_SUSPEND_SECCOMP'],
  async restore(ctx) {
    const hostPid = hostPidOf(ctx);
    let filters: SeccompFilterImage[] | undefined;
    for (const thread of restoredThreads(ctx.runtime, hostPid)) {
      const core = ctx.images.cores.get(thread.tid) as Rec | undefined;
      if (!core) continue;
      const threadCore = core['thread_core'] as Rec | undefined;
      const nnp = Boolean((threadCore?.['creds'] as Rec | undefined)?.['no_new_privs']);
      const mode = seccompMode(core);
      if (!nnp && mode === 0) continue;
      const batch = new RemoteBatch(scratchOf(ctx));
      if (nnp) batch.call(SYS.prctl, [PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0], { what: `no_new_privs of thread ${thread.tid}` });
      if (mode === 1) {
        batch.call(SYS.seccomp, [SECCOMP_SET_MODE_STRICT, 0, 0], { what: `strict seccomp for thread ${thread.tid}` });
      } else if (mode === 2) {
        filters ??= filtersOf(ctx);
        const newest = threadCore?.['seccomp_filter'] ?? (core['tc'] as Rec | undefined)?.['old_seccomp_filter'];
        if (newest === undefined) {
          throw new StageError({ stage: ctx.stage, pid: ctx.pid, resource: ctx.resource, message: `thread ${thread.tid} is in seccomp filter mode but its core names no filter` });
        }
        for (const [i, f] of filterChain(filters, Number(newest)).entries()) {
          batch.reserve(f.filter.length + 16, 1);
          const prog = batch.put(f.filter);
          const fprog = batch.put(sockFprog(f.filter.length / SOCK_FILTER_SIZE, prog));
          batch.call(SYS.seccomp, [SECCOMP_SET_MODE_FILTER, f.flags & KEPT_FILTER_FLAGS, fprog], { what: `seccomp filter ${i + 1} (${f.filter.length / SOCK_FILTER_SIZE} instructions) of thread ${thread.tid}` });
        }
      } else if (mode !== 0) {
        throw new StageError({ stage: ctx.stage, pid: ctx.pid, resource: ctx.resource, message: `thread ${thread.tid}: unknown seccomp mode ${mode}` });
      }
      const start = ctx.now();
      await batch.run(ctx.tracer, thread.hostTid, { pid: ctx.pid });
      ctx.record({ name: `seccomp thread ${thread.tid}`, start, end: ctx.now(), syscalls: batch.size });
    }
  },
};
