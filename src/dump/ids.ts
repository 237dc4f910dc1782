// Dump-wide object ids: file ids shared by files.img, fdinfo, mm and fs images; the per-task
// ids image (vm, files, fs, sighand and namespace ids). Numbered like CRIU numbers them: the
// dumper itself takes id 1 of each kind (its ids are the inventory's root_ids), so the first
// dumped task gets 2; namespaces are numbered in CRIU's order pid, net, ipc, uts, time, mnt,
// user, cgroup as first seen, starting with the dumper's own.
import { statSync } from 'node:fs';
import { GhostFiles } from './ghost-files.js';
import { KcmpSearch, KcmpSorted, runSearches } from './kcmp-order.js';

export type Entry = Record<string, unknown>;

export const NS_KINDS = [
  ['pid', 'pid_ns_id'],
  ['net', 'net_ns_id'],
  ['ipc', 'ipc_ns_id'],
  ['uts', 'uts_ns_id'],
  ['time', 'time_ns_id'],
  ['mnt', 'mnt_ns_id'],
  ['user', 'user_ns_id'],
  ['cgroup', 'cgroup_ns_id'],
] as const;

/** kcmp(2) types of the per-task objects, and the ids-PID.img field each one numbers. */
export const KCMP = { FILE: 0, VM: 1, FILES: 2, FS: 3, SIGHAND: 4 } as const;
export const TASK_OBJECTS = [
  ['vm_id', KCMP.VM],
  ['files_id', KCMP.FILES],
  ['fs_id', KCMP.FS],
  ['sighand_id', KCMP.SIGHAND],
] as const;
export type TaskObjectIds = { vm_id: number; files_id: number; fs_id: number; sighand_id: number };

/**
 * Answers kcmp(q.pid, task, q.type) for each query, in order, for the task being dumped (one
 * round of a search): 0 the same object, 1 q's is lower, 2 q's is higher.
 */
export type ObjectOrder = (queries: Array<{ pid: number; type: number }>) => Promise<number[]>;

type KnownObject = { pid: number; id: number };

export class DumpIds {
  private nextFile = 1;
  /** Deleted files kept in the checkpoint (ghost-file and remap-fpath images). */
  readonly ghosts: GhostFiles;

  constructor(ghostLimit?: number) {
    this.ghosts = new GhostFiles(ghostLimit);
  }

  /** Per kind: the next id and the tasks that hold a known object (one each), in kcmp order. */
  private objects = new Map<string, { next: number; known: KcmpSorted<KnownObject> }>();
  private nsIds = new Map<string, number>(); // "kind:inode" -> id
  private nextNs = 1;
  /** Mapped files by "dev:ino": one files.img entry per file, whoever maps it. */
  readonly mappedFiles = new Map<string, number>();
  /** files.img entries in the order they were created. */
  readonly files: Entry[] = [];

  newFileId(): number {
    return this.nextFile++;
  }

  addFile(entry: Entry): void {
    this.files.push(entry);
  }

  /**
   * Ids of one task's vm, files, fs and sighand. Each kind is numbered on its own, like criu's
   * kcmp trees: a task sharing an object (CLONE_FILES, CLONE_FS, CLONE_VM, CLONE_SIGHAND
   * without CLONE_THREAD) with an earlier task gets that task's id. `order` is absent for the
   * dumper's own ids, which are always new (and never compared with).
   */
  async taskObjects(pid: number, order?: ObjectOrder): Promise<TaskObjectIds & { shared: Set<keyof TaskObjectIds> }> {
    const out = { shared: new Set<keyof TaskObjectIds>() } as TaskObjectIds & { shared: Set<keyof TaskObjectIds> };
    const kinds = TASK_OBJECTS.map(([field, type]) => {
      let kind = this.objects.get(field);
      if (!kind) this.objects.set(field, (kind = { next: 1, known: new KcmpSorted<KnownObject>() }));
      return { field, type, kind, search: new KcmpSearch(kind.known) };
    });
    if (order) {
      await runSearches(
        kinds.map((k) => k.search),
        (pairs) => order(pairs.map((p) => ({ pid: p.member.pid, type: kinds[p.search]!.type }))),
        (i) => `pid ${pid}: ${kinds[i]!.field}`,
      );
    }
    for (const { field, kind, search } of kinds) {
      const found = order ? search.found : undefined;
      if (found) {
        out.shared.add(field);
        out[field] = found.id;
        continue;
      }
      out[field] = kind.next++;
      if (order) search.insert({ pid, id: out[field] });
    }
    return out;
  }

  /** The namespace ids of a task, numbering inodes not seen before. */
  namespaceIds(pid: number | 'self'): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [kind, field] of NS_KINDS) {
      let ino: number;
      try {
        ino = statSync(`/proc/${pid}/ns/${kind}`).ino;
      } catch {
        continue; // namespace kind not built into this kernel
      }
      const key = `${kind}:${ino}`;
      let id = this.nsIds.get(key);
      if (id === undefined) {
        id = this.nextNs++;
        this.nsIds.set(key, id);
      }
      out[field] = id;
    }
    return out;
  }

  /** The kind and id of a namespace numbered so far (the dumper's, the tree's tasks'), by its nsfs inode. */
  namespaceOfInode(ino: number): { kind: string; id: number } | undefined {
    for (const [key, id] of this.nsIds) {
      const [kind, at] = key.split(':');
      if (Number(at) === ino) return { kind: kind!, id };
    }
    return undefined;
  }

  /** The dumper's own ids: taken first so they are 1, like CRIU's. */
  async rootIds(): Promise<Entry> {
    const { shared: _shared, ...own } = await this.taskObjects(process.pid);
    return { ...own, ...this.namespaceIds('self') };
  }
}
