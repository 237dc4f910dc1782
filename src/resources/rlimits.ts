// Resource limits from the task core (tc.rlimits), set by the task's helper on itself. Lowering
// always works; raising a hard limit needs CAP_SYS_RESOURCE, which root on this machine kind
// lacks, so a hard limit above crr's own is clamped to crr's (the restore warns, see
// src/restore/checks.ts rlimitWarnings), and an EPERM that still happens says why.
import { readFileSync } from 'node:fs';
import { StageError } from '../errors.js';
import type { Entry } from '../images/index.js';
import { perKey } from '../memo.js';
import { helperOf, type RestoreCtx, type RestoreSession } from '../restore/context.js';
import type { ResourceKind } from './types.js';

export const RLIMIT_NAMES = [
  'CPU', 'FSIZE', 'DATA', 'STACK', 'CORE', 'RSS', 'NPROC', 'NOFILE',
  'MEMLOCK', 'AS', 'LOCKS', 'SIGPENDING', 'MSGQUEUE', 'NICE', 'RTPRIO', 'RTTIME',
] as const;

const INFINITY = (1n << 64n) - 1n;

const LIMIT_NAMES: Record<string, string> = {
  'Max cpu time': 'CPU', 'Max file size': 'FSIZE', 'Max data size': 'DATA', 'Max stack size': 'STACK',
  'Max core file size': 'CORE', 'Max resident set': 'RSS', 'Max processes': 'NPROC', 'Max open files': 'NOFILE',
  'Max locked memory': 'MEMLOCK', 'Max address space': 'AS', 'Max file locks': 'LOCKS', 'Max pending signals': 'SIGPENDING',
  'Max msgqueue size': 'MSGQUEUE', 'Max nice priority': 'NICE', 'Max realtime priority': 'RTPRIO', 'Max realtime timeout': 'RTTIME',
};

// The last text parsed: crr's own limits and the launcher's (inherited from crr) are the same
// text restore after restore, and parsing it (regexps, BigInts) cost ~0.2 ms each time, three
// times per restore. The file is still read every time: a limit changed since is seen.
let lastParsed: { text: string; limits: ReadonlyMap<string, Rlimit> } | undefined;

/** Soft and hard limits by name ('NOFILE') from a /proc/PID/limits file. Do not modify it. */
export function procLimits(path: string): ReadonlyMap<string, Rlimit> {
  const text = readFileSync(path, 'utf8');
  if (lastParsed?.text === text) return lastParsed.limits;
  const limits = new Map<string, Rlimit>();
  const value = (text: string) => (text === 'unlimited' ? INFINITY : BigInt(text));
  for (const line of text.split('\n').slice(1)) {
    const match = /^(.+?)\s{2,}(\S+)\s+(\S+)/.exec(line);
    const name = match && LIMIT_NAMES[match[1]!.trim()];
    if (!name) continue;
    limits.set(name, { cur: value(match[2]!), max: value(match[3]!) });
  }
  lastParsed = { text, limits };
  return limits;
}

/** crr's own hard limits by name ('NOFILE'), which its tasks inherit and cannot raise. */
export function ownHardLimits(): Map<string, bigint> {
  return new Map([...procLimits('/proc/self/limits')].map(([name, limit]) => [name, limit.max]));
}

/**
 * Per restore: crr's hard limits (the clamp) and the launcher's limits, which every helper has
 * inherited when task-state runs (all forks are done, nothing set a limit yet): a limit equal to
 * those needs no setrlimit. Read once per restore, not per task.
 */
interface SessionLimits {
  readonly own: Map<string, bigint>;
  readonly inherited: ReadonlyMap<string, Rlimit> | undefined;
}
const limitsFor = perKey((session: RestoreSession): SessionLimits => {
  const launcher = session.launcher?.hostPid;
  let inherited: ReadonlyMap<string, Rlimit> | undefined;
  try {
    inherited = launcher === undefined ? undefined : procLimits(`/proc/${launcher}/limits`);
  } catch {
    inherited = undefined; // unknown: set every limit
  }
  return { own: ownHardLimits(), inherited };
});

/** The limit to set: the image's, with the hard limit (and cur) clamped to what crr may set. */
export function clampLimit(limit: Rlimit, ownMax: bigint | undefined): Rlimit {
  if (ownMax === undefined || limit.max <= ownMax) return limit;
  return { cur: limit.cur > ownMax ? ownMax : limit.cur, max: ownMax };
}

export interface Rlimit {
  readonly cur: bigint;
  readonly max: bigint;
}

export function rlimitsOf(core: Entry): Rlimit[] {
  const list = ((core['tc'] as Entry | undefined)?.['rlimits'] as Entry | undefined)?.['rlimits'];
  if (!Array.isArray(list)) return [];
  return (list as Entry[]).map((r) => ({ cur: BigInt(r['cur'] as bigint), max: BigInt(r['max'] as bigint) }));
}

/** RLIM_INFINITY travels as -1 to the helper; other values as numbers when they fit. */
function wire(v: bigint): number | bigint {
  if (v >= INFINITY) return -1;
  return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

function show(v: bigint | number): string {
  return BigInt(v) >= INFINITY || v === -1 ? 'unlimited' : String(v);
}

export const rlimits: ResourceKind<RestoreCtx> = {
  name: 'rlimits',
  stage: 'task-state',
  images: ['core-*'],
  appliesTo: (task) => !task.zombie,
  async restore(ctx) {
    const { own, inherited } = limitsFor(ctx.session);
    const limits = rlimitsOf(ctx.images.core)
      .slice(0, RLIMIT_NAMES.length)
      .map((limit, resource) => clampLimit(limit, own.get(RLIMIT_NAMES[resource]!)));
    const resources = limits.map((_, resource) => resource).filter((resource) => {
      const now = inherited?.get(RLIMIT_NAMES[resource]!);
      return !now || now.cur !== limits[resource]!.cur || now.max !== limits[resource]!.max;
    });
    const ops = resources.map((resource) => ({ op: 'setrlimit', resource, cur: wire(limits[resource]!.cur), max: wire(limits[resource]!.max) }));
    if (!ops.length) return;
    const helper = helperOf(ctx);
    try {
      await helper.batch(ops);
    } catch (err) {
      const index = resources[(err as { index?: number }).index ?? -1] ?? -1;
      const wanted = limits[index];
      if (!wanted || (err as { code?: string }).code !== 'EPERM') throw err;
      const now = await helper.request<{ cur: number; max: number }>('prlimit', { resource: index });
      throw new StageError({
        stage: ctx.stage,
        pid: ctx.pid,
        resource: 'rlimits',
        syscall: 'prlimit64',
        errno: 1,
        code: 'EPERM',
        message:
          `RLIMIT_${RLIMIT_NAMES[index]} needs hard limit ${show(wanted.max)} but this machine allows at most ${show(now.max)}; ` +
          'raising a hard limit needs CAP_SYS_RESOURCE, which crr does not have here',
        cause: err,
      });
    }
  },
};
