// Cgroup membership at dump (cgroup.img, CRIU's layout). Each task's and thread's membership is
// the set of (controllers, path) pairs /proc/PID/task/TID/cgroup lists; sets are numbered as
// first seen, crr's own first (id 1, the inventory's root_cg_set). For every path of a set that
// is not crr's, the directory goes into its hierarchy's controller entry with the limits a
// restore needs to make it again where it is missing: cpuset's cpus and mems (a v1 cpuset takes
// no task without them), memory, cpu and pids limits.
import { existsSync, readFileSync } from 'node:fs';
import { cgroupMounts, parseCgroupFile, type CgroupMember as Member } from '../cgroup-fs.js';
import type { Entry } from './ids.js';

/** Per controller name (as /proc/PID/cgroup gives it; "" is the v2 hierarchy): the properties kept. */
const PROPERTIES: Readonly<Record<string, readonly string[]>> = {
  cpuset: ['cpuset.cpus', 'cpuset.mems'],
  memory: ['memory.limit_in_bytes'],
  cpu: ['cpu.shares', 'cpu.cfs_period_us', 'cpu.cfs_quota_us'],
  pids: ['pids.max'],
  '': ['cpuset.cpus', 'cpuset.mems', 'memory.max', 'cpu.max', 'pids.max'],
};

export class CgroupSets {
  private readonly ids = new Map<string, number>();
  private readonly sets: Array<{ id: number; members: Member[] }> = [];
  private readonly own: Member[];
  private readonly mounts = cgroupMounts();

  constructor() {
    this.own = parseCgroupFile(readFileSync('/proc/self/cgroup', 'latin1'));
    this.idOfText(readFileSync('/proc/self/cgroup', 'latin1'));
  }

  /** The set id of a thread (`/proc/PID/task/TID`), numbering a set not seen before. */
  idOf(taskDir: string): number {
    return this.idOfText(readFileSync(`${taskDir}/cgroup`, 'latin1'));
  }

  private idOfText(text: string): number {
    let id = this.ids.get(text);
    if (id === undefined) {
      id = this.sets.length + 1;
      this.ids.set(text, id);
      this.sets.push({ id, members: parseCgroupFile(text) });
    }
    return id;
  }

  /**
   * cgroup.img's entry: every set, and per hierarchy the directories of paths that are not crr's.
   * `nsRoots`: the tree's cgroup namespace's root per hierarchy, when it has one of its own: each
   * member under it gets cgns_prefix, the root's length in its path (CRIU's field).
   */
  image(nsRoots?: ReadonlyMap<string, string>): Entry {
    const dirs = new Map<string, Map<string, Entry>>();
    for (const { members } of this.sets.slice(1)) {
      for (const m of members) {
        if (this.own.some((o) => o.name === m.name && o.path === m.path)) continue;
        const byPath = dirs.get(m.name) ?? new Map<string, Entry>();
        dirs.set(m.name, byPath);
        if (!byPath.has(m.path)) byPath.set(m.path, { dir_name: m.path.replace(/^\/+/, ''), children: [], properties: this.properties(m) });
      }
    }
    return {
      sets: this.sets.map((s) => ({
        id: s.id,
        ctls: s.members.map((m) => {
          const root = nsRoots?.get(m.name);
          return { name: m.name, path: m.path, ...(root !== undefined ? { cgns_prefix: root === '/' ? 0 : root.length } : {}) };
        }),
      })),
      controllers: [...dirs].map(([name, byPath]) => ({ cnames: name.split(','), dirs: [...byPath.values()] })),
    };
  }

  private properties(m: Member): Entry[] {
    const mount = this.mounts.get(m.name);
    if (!mount) return [];
    const names = m.name.split(',').flatMap((c) => PROPERTIES[c] ?? []);
    const out: Entry[] = [];
    for (const name of names) {
      const file = `${mount}${m.path}/${name}`;
      if (existsSync(file)) out.push({ name, value: readFileSync(file, 'latin1').trim() });
    }
    return out;
  }
}
