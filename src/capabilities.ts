// The capabilities crr needs to dump and restore (`crr check`, and the RPC's CHECK request).
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { nativePaths } from './actors/native-paths.js';

export interface CheckResult {
  name: string;
  ok: boolean;
  /** A failed required check means crr cannot work here; an optional one costs a feature. */
  required: boolean;
  detail: string;
}

const CAP = { NET_ADMIN: 12, SYS_PTRACE: 19, SYS_ADMIN: 21, CHECKPOINT_RESTORE: 40 } as const;

function effectiveCaps(): bigint {
  const hex = /^CapEff:\s+([0-9a-f]+)/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1];
  return hex ? BigInt(`0x${hex}`) : 0n;
}

export function capabilityChecks(): CheckResult[] {
  const caps = effectiveCaps();
  const has = (cap: number) => ((caps >> BigInt(cap)) & 1n) === 1n;
  const restoreCap = has(CAP.SYS_ADMIN) || has(CAP.CHECKPOINT_RESTORE);
  return [
    { name: 'CAP_SYS_PTRACE', ok: has(CAP.SYS_PTRACE), required: true, detail: 'to seize, freeze and read the tasks' },
    { name: 'CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE', ok: restoreCap, required: true, detail: 'for clone3 with set_tid (exact PIDs) and PR_SET_MM_MAP' },
    { name: 'CAP_NET_ADMIN', ok: has(CAP.NET_ADMIN), required: false, detail: 'for TCP repair (established connections, --tcp-established)' },
    lazyPagesCheck(),
  ];
}

/** Whether the kernel gives crr-lazy-pages what it needs (its --check: a userfaultfd with its events). */
export function lazyPagesCheck(): CheckResult {
  const r = spawnSync(nativePaths.lazyPages, ['--check'], { encoding: 'utf8', timeout: 10_000 });
  const said = `${r.stdout ?? ''}`.trim() || r.error?.message || `exit ${r.status}`;
  return { name: 'lazy pages', ok: r.status === 0, required: false, detail: `for restore --lazy-pages: ${said}` };
}
