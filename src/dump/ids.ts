// Dump-wide object ids: file ids shared by files.img, fdinfo, mm and fs images; the per-task
// ids image (vm, files, fs, sighand and namespace ids). Numbered like CRIU numbers them: the
// dumper itself takes id 1 of each kind (its ids are the inventory's root_ids), so the first
// dumped task gets 2; namespaces are numbered in CRIU's order pid, net, ipc, uts, time, mnt,
// user, cgroup as first seen, starting with the dumper's own.
import { statSync } from 'node:fs';

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

export class DumpIds {
  private nextFile = 1;
  private nextTaskObject = 1;
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

  /** Ids of one task's vm, files, fs and sighand (never shared between processes here). */
  newTaskObjects(): { vm_id: number; files_id: number; fs_id: number; sighand_id: number } {
    const id = this.nextTaskObject++;
    return { vm_id: id, files_id: id, fs_id: id, sighand_id: id };
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

  /** The dumper's own ids: taken first so they are 1, like CRIU's. */
  rootIds(): Entry {
    return { ...this.newTaskObjects(), ...this.namespaceIds('self') };
  }
}
