// Cgroup membership at restore (cgroup.img; CRIU's "soft" mode). Each task goes into the cgroups
// of its set (its core's cg_set) right after it is forked, before anything else is restored, so
// its memory and the threads it makes are charged there. A task of the dumper's own set (the
// inventory's root_cg_set) stays in crr's cgroups, as does a path that is crr's own already; a
// missing directory is made, and the limits the dump recorded for it (cpuset cpus and mems
// first, then memory, cpu, pids) are set on the directories crr made; directories that
// exist keep their own. The moves are writes of the task's host PID to cgroup.procs.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cgroupMounts, parseCgroupFile, type CgroupMember as Member } from '../cgroup-fs.js';
import type { CgroupRoot } from '../restore/context.js';
import { StageError } from '../errors.js';
import type { Checkpoint, Entry } from '../images/index.js';
import { perKey } from '../memo.js';
import { hostPidOf, type RestoreCtx, type RestoreSession } from '../restore/context.js';
import type { ResourceKind } from './types.js';

interface CgroupImage {
  readonly sets: ReadonlyMap<number, readonly Member[]>;
  /** The recorded properties of each directory, by "controllers:path". */
  readonly properties: ReadonlyMap<string, ReadonlyArray<{ name: string; value: string }>>;
  /** Where each hierarchy is mounted here, by controllers ("" for v2). */
  readonly mounts: ReadonlyMap<string, string>;
  /** crr's own membership: paths already right. */
  readonly own: readonly Member[];
}

const cgroupImage = perKey((session: RestoreSession): CgroupImage | undefined => {
  if (!session.checkpoint.has('cgroup.img')) return undefined;
  const e = session.checkpoint.image('cgroup.img').only();
  const sets = new Map<number, Member[]>();
  for (const set of (e['sets'] ?? []) as Entry[]) {
    sets.set(Number(set['id']), ((set['ctls'] ?? []) as Entry[]).map((m) => ({ name: String(m['name'] ?? ''), path: String(m['path'] ?? '/') })));
  }
  const properties = new Map<string, Array<{ name: string; value: string }>>();
  for (const controller of (e['controllers'] ?? []) as Entry[]) {
    const name = ((controller['cnames'] ?? []) as string[]).join(',');
    for (const dir of (controller['dirs'] ?? []) as Entry[]) {
      const props = ((dir['properties'] ?? []) as Entry[]).map((p) => ({ name: String(p['name']), value: String(p['value']) }));
      properties.set(`${name}:/${String(dir['dir_name'] ?? '')}`, props);
    }
  }
  return { sets, properties, mounts: cgroupMounts(), own: parseCgroupFile(readFileSync('/proc/self/cgroup', 'latin1')) };
});

/** The properties a made directory gets first: a v1 cpuset takes no task without cpus and mems. */
const FIRST = ['cpuset.cpus', 'cpuset.mems'];

/**
 * Makes `path` of a hierarchy mounted at `mount` where it is missing, component by component: a
 * made cpuset directory copies its parent's cpus and mems first (a v1 cpuset takes no task
 * without them); `made` hears of each directory made.
 */
export function makeCgroupPath(mount: string, path: string, made?: (dir: string, leaf: boolean) => void): void {
  const parts = path.split('/').filter(Boolean);
  for (let i = 1; i <= parts.length; i++) {
    const dir = `${mount}/${parts.slice(0, i).join('/')}`;
    if (existsSync(dir)) continue;
    mkdirSync(dir);
    for (const name of FIRST) {
      const parent = `${mount}/${parts.slice(0, i - 1).join('/')}/${name}`;
      if (existsSync(`${dir}/${name}`) && existsSync(parent)) writeFileSync(`${dir}/${name}`, readFileSync(parent, 'latin1').trim() || '\n');
    }
    made?.(dir, i === parts.length);
  }
}

/** A member's path made where missing; a leaf crr made gets the limits the dump recorded for it. */
function ensureDirectory(image: CgroupImage, member: Member, mount: string): void {
  makeCgroupPath(mount, member.path, (dir, leaf) => {
    if (!leaf) return;
    const props = [...(image.properties.get(`${member.name}:${member.path}`) ?? [])].sort((a, b) => Number(FIRST.includes(b.name)) - Number(FIRST.includes(a.name)));
    for (const p of props) if (p.value !== '') writeFileSync(`${dir}/${p.name}`, p.value);
  });
}

/**
 * A member's path under the cgroup roots given for the restore (criu's --cgroup-root
 * [CONTROLLER:]PATH; a root without a controller is every hierarchy's): the part of the path
 * below the root task's own cgroup of that hierarchy is kept below the new root, so a container
 * restored under another name goes into its runtime's new cgroups, not the old name's. A path
 * not below the root task's stays as it is.
 */
export function underNewRoot(member: Member, rootTask: readonly Member[], roots: readonly CgroupRoot[]): Member {
  const root = roots.find((r) => r.controller === member.name) ?? roots.find((r) => r.controller === undefined);
  const old = rootTask.find((m) => m.name === member.name)?.path;
  if (!root || old === undefined) return member;
  const rest = old === '/' ? member.path : member.path === old ? '' : member.path.startsWith(`${old}/`) ? member.path.slice(old.length) : undefined;
  if (rest === undefined) return member;
  return { name: member.name, path: `${root.path.replace(/\/+$/, '')}${rest === '/' ? '' : rest}` || '/' };
}

/** The root task's cgroups as dumped (none when they were the dumper's own). */
export const rootTaskCgroups = perKey((session: RestoreSession): readonly Member[] => {
  const core = session.images.get(session.checkpoint.root.pid)?.core ?? session.checkpoint.core(session.checkpoint.root.pid);
  const id = setToRestore(session.checkpoint, core);
  return (id !== undefined && cgroupImage(session)?.sets.get(id)) || [];
});

/** The task's cgroup set, when it is not the dumper's own (undefined: nothing to do). */
function setToRestore(checkpoint: Checkpoint, core: Entry): number | undefined {
  const id = Number((core['tc'] as Entry | undefined)?.['cg_set'] ?? 0);
  return id && id !== Number(checkpoint.inventory['root_cg_set'] ?? 0) ? id : undefined;
}

export const cgroups: ResourceKind<RestoreCtx> = {
  name: 'cgroups',
  stage: 'namespaces',
  images: ['cgroup', 'core-*'],
  appliesTo: (task, source) => {
    if (task.zombie) return false;
    const core = (source?.images.get(task.pid) as { core?: Entry } | undefined)?.core;
    return !source || !core || setToRestore(source.checkpoint as Checkpoint, core) !== undefined;
  },
  describe: () => ['into the cgroups of its set (cgroup.img), making missing directories with their recorded limits'],
  async restore(ctx) {
    const image = cgroupImage(ctx.session);
    const setId = setToRestore(ctx.checkpoint, ctx.images.core);
    const set = setId === undefined ? undefined : image?.sets.get(setId);
    if (!image || !set) return;
    const hostPid = hostPidOf(ctx);
    const roots = ctx.session.options.cgroupRoots ?? [];
    const rootSet = roots.length ? rootTaskCgroups(ctx.session) : [];
    for (const dumped of set) {
      const member = roots.length ? underNewRoot(dumped, rootSet, roots) : dumped;
      if (image.own.some((o) => o.name === member.name && o.path === member.path)) continue;
      const mount = image.mounts.get(member.name);
      const fail = (message: string, err?: NodeJS.ErrnoException): never => {
        throw new StageError({ stage: ctx.stage, pid: ctx.pid, resource: ctx.resource, message, ...(err?.code ? { code: err.code, errno: Math.abs(err.errno ?? 0), syscall: err.syscall ?? 'write' } : {}) });
      };
      if (mount === undefined) fail(`cgroup ${member.name || '(v2)'}:${member.path}: that hierarchy is not mounted here`);
      try {
        ensureDirectory(image, member, mount!);
        writeFileSync(`${mount}${member.path}/cgroup.procs`, String(hostPid));
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        fail(`moving into cgroup ${member.name || '(v2)'}:${member.path} (${mount}${member.path}): ${e.message}`, e);
      }
    }
  },
};
