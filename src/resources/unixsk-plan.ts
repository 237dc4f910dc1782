// Who makes each unix socket at restore, and how: the two ends of a connected pair (each the
// other's peer) come from one socketpair in one task; any other socket is made on its own
// (socket, bind, listen) and then connected to its peer's name, which also recreates a pending
// connection in a listener's backlog. A socket is made by the first task holding it (tree order),
// a pair by the first holder of its lower id; every other holder receives it (shared-fds).
import { USK_EXTERN, type Entry } from '../images/index.js';
import type { FdTables } from './shared-fds.js';
import { holdersByFile, type FdHolder } from './shared-fds.js';
import type { TaskPlan } from './types.js';

export const FD_TYPE_UNIXSK = 5;
export const TCP_LISTEN = 10;
export const SOCK_DGRAM = 2;

export interface UnixSocket {
  readonly id: number;
  readonly ino: number;
  readonly usk: Entry;
  readonly type: number;
  readonly name: Buffer;
  /** The other end when both name each other as peer (made together by socketpair). */
  readonly pairedWith?: number;
  /** The inode this socket connects to by name (a listener or a bound dgram socket). */
  readonly connectTo?: number;
  readonly holders: readonly FdHolder[];
  /** The task that makes it (for a pair: the maker of both ends). */
  readonly maker: number;
}

export interface UnixPlan {
  readonly byId: ReadonlyMap<number, UnixSocket>;
  readonly byIno: ReadonlyMap<number, UnixSocket>;
  /** Names of sockets outside the tree a datagram socket was connected to (USK_EXTERN entries), by inode. */
  readonly external: ReadonlyMap<number, Buffer>;
  /** The sockets each task makes, in byId order (a task must not search every socket). */
  readonly byMaker: ReadonlyMap<number, readonly UnixSocket[]>;
}

/** Builds the plan from files.img's UNIXSK entries and every task's fds. */
export function planUnixSockets(files: ReadonlyMap<number, Entry>, tasks: readonly TaskPlan[], tables: FdTables): UnixPlan {
  const holders = holdersByFile(tasks, tables, new Set([FD_TYPE_UNIXSK]));
  const entries = new Map<number, Entry>(); // ino -> usk
  for (const [, file] of files) {
    const usk = file['usk'] as Entry | undefined;
    if (Number(file['type']) === FD_TYPE_UNIXSK && usk && !isOutside(usk) && holders.has(Number(usk['id']))) entries.set(Number(usk['ino']), usk);
  }
  const byId = new Map<number, UnixSocket>();
  const byIno = new Map<number, UnixSocket>();
  const byMaker = new Map<number, UnixSocket[]>();
  const makerOf = (id: number) => holders.get(id)![0]!.pid;
  for (const [ino, usk] of entries) {
    const id = Number(usk['id']);
    const peer = Number(usk['peer'] ?? 0);
    const other = peer ? entries.get(peer) : undefined;
    const mutual = other !== undefined && Number(other['peer']) === ino;
    const lower = mutual ? Math.min(id, Number(other!['id'])) : id;
    const sock: UnixSocket = {
      id,
      ino,
      usk,
      type: Number(usk['type']),
      name: Buffer.from((usk['name'] as Uint8Array | undefined) ?? []),
      pairedWith: mutual ? peer : undefined,
      connectTo: !mutual && peer ? peer : undefined,
      holders: holders.get(id)!,
      maker: makerOf(lower),
    };
    byId.set(id, sock);
    byIno.set(ino, sock);
    const made = byMaker.get(sock.maker);
    if (made) made.push(sock);
    else byMaker.set(sock.maker, [sock]);
  }
  return { byId, byIno, external: outsideUnixSockets(files), byMaker };
}

const isOutside = (usk: Entry) => (Number(usk['uflags'] ?? 0) & USK_EXTERN) !== 0;

/** The names of files.img's sockets outside the tree (USK_EXTERN entries, criu --ext-unix-sk), by inode. */
export function outsideUnixSockets(files: ReadonlyMap<number, Entry>): Map<number, Buffer> {
  const out = new Map<number, Buffer>();
  for (const file of files.values()) {
    const usk = file['usk'] as Entry | undefined;
    if (Number(file['type']) === FD_TYPE_UNIXSK && usk && isOutside(usk)) out.set(Number(usk['ino']), Buffer.from((usk['name'] as Uint8Array | undefined) ?? []));
  }
  return out;
}

/** sun_path bytes to bind or connect to: a path name loses its trailing NULs, an abstract one stays exact. */
export function bindName(name: Buffer): Buffer {
  if (!name.length || name[0] === 0) return name;
  let end = name.length;
  while (end > 0 && name[end - 1] === 0) end--;
  return name.subarray(0, end);
}

export function nameText(name: Buffer): string {
  if (!name.length) return 'unnamed';
  return name[0] === 0 ? `@${name.subarray(1).toString('latin1')}` : bindName(name).toString();
}
