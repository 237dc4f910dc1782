// Namespace files at fds (CRIU's NS entries: ns_id, ns_cflag). The namespace is the tree root's
// when ns_id is the root's id of that kind (ids-ROOT.img), as restored: crr opens
// /proc/<root>/ns/KIND; else crr's own when ns_id is the inventory's (the dumper's), crr's
// /proc/self/ns/KIND. Any other is refused at plan time. Made with the shared fds, once every
// task exists: crr opens it, the first holder receives it, other holders take a copy.
import { constants as C, openSync } from 'node:fs';
import { StageError } from '../errors.js';
import type { Entry } from '../images/index.js';
import type { RestoreCtx, RestoreSession } from '../restore/context.js';
import { restoreAnonFds } from './eventfd.js';
import { holdsFdOfType, offer, receive } from './shared-fds.js';
import type { ResourceKind } from './types.js';

export const FD_TYPE_NS = 14;

const KIND_OF_FLAG: Readonly<Record<number, string>> = {
  0x00020000: 'mnt',
  0x02000000: 'cgroup',
  0x04000000: 'uts',
  0x08000000: 'ipc',
  0x10000000: 'user',
  0x20000000: 'pid',
  0x40000000: 'net',
  0x00000080: 'time',
};

/** Whose namespace an NS entry names, and its kind; a message when crr cannot give it back. */
function namespaceOf(session: RestoreSession, file: Entry): { kind: string; whose: 'root' | 'crr' } | string {
  const nsf = (file['nsf'] ?? {}) as Entry;
  const kind = KIND_OF_FLAG[Number(nsf['ns_cflag'] ?? 0)];
  if (!kind) return `ns_cflag 0x${Number(nsf['ns_cflag'] ?? 0).toString(16)} is no namespace kind`;
  const nsId = Number(nsf['ns_id'] ?? 0);
  const field = `${kind}_ns_id`;
  if (Number((session.checkpoint.ids(session.checkpoint.root.pid) as unknown as Record<string, unknown>)[field]) === nsId) return { kind, whose: 'root' };
  if (Number(((session.checkpoint.inventory['root_ids'] ?? {}) as Entry)[field]) === nsId) return { kind, whose: 'crr' };
  return `its ${kind} namespace (id ${nsId}) is neither the tree's nor the dumper's; crr restores namespace fds of those only`;
}

/** Plan-time check: every namespace fd names a namespace crr gives back. */
export function checkNamespaceFds(session: RestoreSession): void {
  for (const [pid, set] of session.images) {
    for (const fd of set.fds.filter((f) => f.type === FD_TYPE_NS)) {
      const ns = namespaceOf(session, session.checkpoint.file(fd.id, `task ${pid} fd ${fd.fd}`));
      if (typeof ns === 'string') throw new StageError({ stage: 'plan', pid, resource: 'nsfile', message: `fd ${fd.fd} is a namespace file: ${ns}` });
    }
  }
}

export const nsfile: ResourceKind<RestoreCtx> = {
  name: 'nsfile',
  stage: 'shared-fds',
  images: ['files', 'fdinfo-*', 'ids-*', 'inventory'],
  appliesTo: holdsFdOfType(FD_TYPE_NS),
  describe: () => ["namespace fds: the tree's namespaces as restored, or crr's own, opened by crr and received at their fd numbers"],
  async restore(ctx) {
    await restoreAnonFds(ctx, FD_TYPE_NS, async (first) => {
      const ns = namespaceOf(ctx.session, first.file) as { kind: string; whose: 'root' | 'crr' };
      const owner = ns.whose === 'crr' ? 'self' : ctx.session.runtimes.get(ctx.checkpoint.root.pid)?.hostPid;
      if (owner === undefined) throw new StageError({ stage: ctx.stage, pid: ctx.pid, resource: ctx.resource, message: `fd ${first.fd}: the root task was not restored` });
      offer(ctx, 'nsfile', String(first.id), openSync(`/proc/${owner}/ns/${ns.kind}`, C.O_RDONLY), 1);
      await receive(ctx, [{ kind: 'nsfile', id: String(first.id), fd: first.fd, cloexec: first.cloexec }]);
    });
  },
};
