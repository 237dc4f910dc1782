// Two settings of the task core no other kind makes: the child subreaper flag (a supervisor's:
// orphans below it are reparented to it, not to the PID namespace's init), set by the task's
// helper with prctl(PR_SET_CHILD_SUBREAPER); and oom_score_adj, written by crr to
// /proc/PID/oom_score_adj. A value below the task's minimum (its parent's, crr's) needs
// CAP_SYS_RESOURCE, which root on this machine kind lacks: it is kept at crr's own, and the plan
// warns (oomWarnings). Only tasks whose core asks for either are planned.
import { readFileSync, writeFileSync } from 'node:fs';
import type { Entry } from '../images/index.js';
import { helperOf, type RestoreCtx, type RestoreSession } from '../restore/context.js';
import type { ResourceKind } from './types.js';

const PR_SET_CHILD_SUBREAPER = 36;

type Rec = Record<string, unknown>;

/** What the core asks for: the subreaper flag, and an oom_score_adj other than the default 0. */
function attrsOf(core: Rec | undefined): { subreaper: boolean; oomScoreAdj: number | undefined } {
  const tc = core?.['tc'] as Rec | undefined;
  const adj = Number(tc?.['oom_score_adj'] ?? 0);
  return { subreaper: Boolean(tc?.['child_subreaper']), oomScoreAdj: adj !== 0 ? adj : undefined };
}

/** crr's own oom_score_adj: the lowest a restored task gets without CAP_SYS_RESOURCE. */
function ownOomScoreAdj(): number {
  return Number(readFileSync('/proc/self/oom_score_adj', 'latin1').trim());
}

/** A warning per task whose oom_score_adj is below crr's own (kept at crr's). */
export function oomWarnings(session: RestoreSession): string[] {
  const own = ownOomScoreAdj();
  const out: string[] = [];
  for (const [pid, set] of session.images) {
    const { oomScoreAdj } = attrsOf(set.core as Entry);
    if (oomScoreAdj !== undefined && oomScoreAdj < own) out.push(`task ${pid}: oom_score_adj ${oomScoreAdj} is below crr's own (${own}); lowering it needs CAP_SYS_RESOURCE, so it stays ${own}`);
  }
  return out;
}

export const procAttrs: ResourceKind<RestoreCtx> = {
  name: 'proc-attrs',
  stage: 'task-state',
  images: ['core-*'],
  appliesTo: (task, source) => {
    if (task.zombie) return false;
    const core = (source?.images.get(task.pid) as { core?: Rec } | undefined)?.core;
    if (!core) return true;
    const { subreaper, oomScoreAdj } = attrsOf(core);
    return subreaper || oomScoreAdj !== undefined;
  },
  describe: () => ['the child subreaper flag and oom_score_adj'],
  async restore(ctx) {
    const { subreaper, oomScoreAdj } = attrsOf(ctx.images.core as Rec);
    if (subreaper) await helperOf(ctx).request('prctl', { option: PR_SET_CHILD_SUBREAPER, a2: 1 });
    if (oomScoreAdj !== undefined) writeFileSync(`/proc/${helperOf(ctx).hostPid}/oom_score_adj`, String(Math.max(oomScoreAdj, ownOomScoreAdj())));
  },
};
