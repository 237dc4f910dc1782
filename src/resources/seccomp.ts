// Seccomp, meant to be the last thing a task gets before its registers. Tasks without seccomp
// (every fixture and test program so far) pass; a task in strict or filter mode is refused with a
// clear error for now: a filter may forbid the very syscalls the restorer still injects (the
// final munmap of the scratch area), so it has to be installed by the final syscall itself.
import { StageError } from '../errors.js';
import type { RestoreCtx } from '../restore/context.js';
import type { ResourceKind } from './types.js';

const MODES: Record<string, number> = { disabled: 0, strict: 1, filter: 2 };

/** The seccomp mode of a thread's core (0 disabled, 1 strict, 2 filter). */
export function seccompMode(core: Record<string, unknown>): number {
  const threadCore = core['thread_core'] as Record<string, unknown> | undefined;
  const tc = core['tc'] as Record<string, unknown> | undefined;
  const raw = threadCore?.['seccomp_mode'] ?? tc?.['old_seccomp_mode'] ?? 0;
  return typeof raw === 'string' ? (MODES[raw] ?? -1) : Number(raw);
}

export const seccomp: ResourceKind<RestoreCtx> = {
  name: 'seccomp',
  stage: 'finish',
  images: ['core-*', 'seccomp'],
  after: ['creds', 'signals'],
  appliesTo: (task) => !task.zombie,
  describe: () => ['seccomp mode (only "disabled" is restored so far)'],
  async restore(ctx) {
    for (const [tid, core] of ctx.images.cores) {
      const mode = seccompMode(core as Record<string, unknown>);
      if (mode !== 0) {
        throw new StageError({
          stage: ctx.stage,
          pid: ctx.pid,
          resource: ctx.resource,
          message: `thread ${tid} runs in seccomp mode ${mode}: restoring seccomp is not supported yet`,
        });
      }
    }
  },
};
