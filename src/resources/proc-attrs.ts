// Settings of the task core no other kind makes: the child subreaper flag (a supervisor's:
// orphans below it are reparented to it, not to the PID namespace's init), set by the task's
// helper with prctl(PR_SET_CHILD_SUBREAPER); oom_score_adj, written by crr to
// /proc/PID/oom_score_adj; and the audit loginuid (the login session's user, which audit records
// carry), written by the helper itself to /proc/self/loginuid: only the task may write its own,
// with CAP_AUDIT_CONTROL once one is set. An oom_score_adj below the task's minimum (its parent's,
// crr's) needs CAP_SYS_RESOURCE, which root on this machine kind lacks: it is kept at crr's own,
// and the plan warns (oomWarnings). Only tasks whose core asks for any of them are planned.
import { readFileSync, writeFileSync } from 'node:fs';
import type { Entry } from '../images/index.js';
import { helperOf, type RestoreCtx, type RestoreSession } from '../restore/context.js';
import type { ResourceKind } from './types.js';

const PR_SET_CHILD_SUBREAPER = 36;

type Rec = Record<string, unknown>;

/** Audit's "no loginuid" ((uid_t)-1): what a task started outside any login session has. */
const LOGINUID_UNSET = 4294967295;

/** What the core asks for: the subreaper flag, an oom_score_adj other than the default 0, a loginuid other than unset. */
function attrsOf(core: Rec | undefined): { subreaper: boolean; oomScoreAdj: number | undefined; loginuid: number | undefined } {
  const tc = core?.['tc'] as Rec | undefined;
  const adj = Number(tc?.['oom_score_adj'] ?? 0);
  const loginuid = tc?.['loginuid'] === undefined ? LOGINUID_UNSET : Number(tc['loginuid']) >>> 0;
  return { subreaper: Boolean(tc?.['child_subreaper']), oomScoreAdj: adj !== 0 ? adj : undefined, loginuid: loginuid !== LOGINUID_UNSET ? loginuid : undefined };
}

/** A task's loginuid (`self`: crr's, which every helper starts with); unset on a kernel without audit. */
function loginuidOf(pid: number | 'self'): number {
  try {
    return Number(readFileSync(`/proc/${pid}/loginuid`, 'latin1').trim()) >>> 0;
  } catch {
    return LOGINUID_UNSET;
  }
}
let crrLoginuid: number | undefined;
const ownLoginuid = () => (crrLoginuid ??= loginuidOf('self'));

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
    const { subreaper, oomScoreAdj, loginuid } = attrsOf(core);
    return subreaper || oomScoreAdj !== undefined || loginuid !== undefined || ownLoginuid() !== LOGINUID_UNSET;
  },
  describe: () => ['the child subreaper flag, oom_score_adj and the audit loginuid'],
  async restore(ctx) {
    const { subreaper, oomScoreAdj, loginuid = LOGINUID_UNSET } = attrsOf(ctx.images.core as Rec);
    const helper = helperOf(ctx);
    if (subreaper) await helper.request('prctl', { option: PR_SET_CHILD_SUBREAPER, a2: 1 });
    if (oomScoreAdj !== undefined) writeFileSync(`/proc/${helper.hostPid}/oom_score_adj`, String(Math.max(oomScoreAdj, ownOomScoreAdj())));
    // The helper has crr's loginuid, as its fork from crr's launcher made it.
    if (loginuidOf(helper.hostPid) !== loginuid) {
      await helper.request('write_file', { path: '/proc/self/loginuid', data: String(loginuid === LOGINUID_UNSET ? -1 : loginuid) });
    }
  },
};
