// The cgroup filesystem as this machine shows it, for the dump (which cgroups a task is in) and
// the restore (where to put it back): /proc/PID/cgroup lines and the hierarchies' mount points.
import { readFileSync } from 'node:fs';
import { parseMountinfo } from './mountinfo.js';

/** One line of /proc/PID/cgroup: the hierarchy's controllers (comma-separated; "" for v2) and the path in it. */
export interface CgroupMember {
  readonly name: string;
  readonly path: string;
}

/** "ID:controllers:path" lines. */
export function parseCgroupFile(text: string): CgroupMember[] {
  return text
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const first = line.indexOf(':');
      const second = line.indexOf(':', first + 1);
      return { name: line.slice(first + 1, second), path: line.slice(second + 1) };
    });
}

/** Super options of a v1 cgroup mount that are not its controllers or name=. */
const GENERIC_OPTIONS = new Set(['rw', 'ro', 'noprefix', 'xattr', 'nsdelegate', 'cpuset_v2_mode', 'clone_children']);

/**
 * Where each hierarchy is mounted in crr's mount namespace, by its controllers text as
 * /proc/PID/cgroup writes it ("" for v2): the first mount of each.
 */
export function cgroupMounts(mountinfo = readFileSync('/proc/self/mountinfo', 'latin1')): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of parseMountinfo(mountinfo)) {
    const key = m.fstype === 'cgroup2' ? '' : m.fstype === 'cgroup' ? m.superOptions.split(',').filter((o) => !GENERIC_OPTIONS.has(o) && !o.startsWith('release_agent')).join(',') : undefined;
    if (key !== undefined && !out.has(key)) out.set(key, m.mountPoint);
  }
  return out;
}
