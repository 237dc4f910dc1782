// Namespace files at fds (opened from /proc/PID/ns/KIND, or a bind mount of one such as
// /run/netns/NAME): an NS files.img entry (CRIU's nsf: ns_id, ns_cflag, flags) naming the
// namespace by the id ids-*.img and the inventory give it. Only namespaces the dump numbered can
// be named: the tree's and the dumper's own; any other is refused.
import type { DumpIds, Entry } from './ids.js';
import { UnsupportedFdError, type FileOrder, type OpenFiles } from './files.js';

export const FD_TYPE_NS = 14;

/** The CLONE_NEW* flag of each namespace kind (ns_cflag). */
const NS_CLONE_FLAGS: Readonly<Record<string, number>> = {
  mnt: 0x00020000,
  cgroup: 0x02000000,
  uts: 0x04000000,
  ipc: 0x08000000,
  user: 0x10000000,
  pid: 0x20000000,
  net: 0x40000000,
  time: 0x00000080,
};

export async function dumpNsFd(
  at: { pid: number; fd: number; link: string; ino: number; fileFlags: number; fdflags: number },
  ids: DumpIds,
  open: OpenFiles,
  order: FileOrder | undefined,
): Promise<Entry> {
  const { pid, fd, link, ino, fileFlags } = at;
  const ns = ids.namespaceOfInode(ino);
  if (!ns) throw new UnsupportedFdError(pid, fd, `a namespace file (${link}) of a namespace neither the tree nor crr is in`);
  const id = await open.idFor(`ns:${ino}:${fileFlags}`, pid, fd, order, (id) => {
    ids.addFile({ type: FD_TYPE_NS, id, nsf: { id, ns_id: ns.id, ns_cflag: NS_CLONE_FLAGS[ns.kind]!, flags: fileFlags } });
  }, ids);
  return { id, flags: at.fdflags, type: FD_TYPE_NS, fd };
}
