// Fds in flight: files sent over a unix socket (SCM_RIGHTS) that nobody had received at the dump,
// named by the scm entries of sk-queues.img packets. The task that puts such a packet back (the
// maker of the receiving socket, which also makes its sending end) must hold each file when it
// sends: the load gives it each one as an fd of its own at a spare number, so the fd kinds make or
// pass it there like any other fd; the unixsk-scm kind sends the packets and closes those fds.
import { StageError } from '../errors.js';
import { perKey } from '../memo.js';
import type { Checkpoint, FdinfoEntry } from '../images/index.js';
import { FD_CLOEXEC } from '../resources/shared-fds.js';
import type { TaskPlan } from '../resources/types.js';
import { planUnixSockets, SOCK_DGRAM } from '../resources/unixsk-plan.js';
import type { TaskImageSet } from './context.js';

const SCM_RIGHTS = 1;
/** Where the numbers of the fds in flight start, going down (the fd kinds' spare numbers skip them). */
const FIRST_IN_FLIGHT_FD = 700;

/** The files.img ids of the fds in flight an sk-queues.img entry carries; a control message other than SCM_RIGHTS is refused. */
function rightsOf(entry: Record<string, unknown>): number[] {
  const scm = (entry['scm'] as Array<{ type: number; rights?: number[] }> | undefined) ?? [];
  const other = scm.find((s) => Number(s.type) !== SCM_RIGHTS);
  if (other) throw new StageError({ stage: 'plan', resource: 'unixsk', message: `a packet queued for unix socket file ${Number(entry['id_for'])} carries a control message of type ${other.type}: only SCM_RIGHTS is supported` });
  return scm.flatMap((s) => (s.rights ?? []).map(Number));
}

/** One packet of sk-queues.img. */
export interface QueuedPacket {
  readonly data: Uint8Array;
  /** files.img ids of the fds in flight that came with it (SCM_RIGHTS), empty when none. */
  readonly rights: readonly number[];
  /** The sender a receiver with SO_PASSCRED sees (sk_ucred_entry). */
  readonly ucred?: { readonly pid: number; readonly uid: number; readonly gid: number };
}

/** sk-queues.img's packets by the id of the socket that was to receive them, in queue order (decoded once per checkpoint). */
export const queuedPackets = perKey((checkpoint: Checkpoint): Map<number, QueuedPacket[]> => {
  const out = new Map<number, QueuedPacket[]>();
  if (!checkpoint.has('sk-queues.img')) return out;
  for (const lazy of checkpoint.image('sk-queues.img').entries()) {
    const entry = lazy.decode();
    const id = Number(entry['id_for']);
    const ucred = entry['ucred'] as Record<string, unknown> | undefined;
    const list = out.get(id) ?? [];
    list.push({ data: lazy.payload ?? new Uint8Array(), rights: rightsOf(entry), ...(ucred ? { ucred: { pid: Number(ucred['pid'] ?? 0), uid: Number(ucred['uid'] ?? 0), gid: Number(ucred['gid'] ?? 0) } } : {}) });
    out.set(id, list);
  }
  return out;
});

/** The fds in flight of each socket's queued packets, by the socket's id: only sockets with some. */
export const packetsWithFds = perKey((checkpoint: Checkpoint): Map<number, number[][]> => {
  const out = new Map<number, number[][]>();
  for (const [id, packets] of queuedPackets(checkpoint)) {
    const rights = packets.filter((p) => p.rights.length).map((p) => [...p.rights]);
    if (rights.length) out.set(id, rights);
  }
  return out;
});

/**
 * `images` with each sending task's fds in flight and sending ends added (`inFlight`).
 * Refused here, before anything is touched: a packet whose sender crr does not make, or a sender
 * sharing its fd table with another task.
 */
export function withFdsInFlight(checkpoint: Checkpoint, tasks: readonly TaskPlan[], images: Map<number, TaskImageSet>): void {
  const packets = packetsWithFds(checkpoint);
  if (!packets.size) return;
  const files = checkpoint.files();
  const plan = planUnixSockets(files, tasks, images);
  const added = new Map<number, { sockets: number[]; fds: Map<number, number> }>(); // pid -> sockets, file id -> fd
  for (const [socketId, list] of packets) {
    const socket = plan.byId.get(socketId);
    const refuse = (pid: number | undefined, why: string) => new StageError({ stage: 'plan', ...(pid !== undefined ? { pid } : {}), resource: 'unixsk', message: `unix socket file ${socketId} has fds in flight in its queue: ${why}` });
    if (!socket) throw refuse(undefined, 'no task holds the socket');
    if (socket.pairedWith === undefined && !(socket.type === SOCK_DGRAM && socket.name.length)) throw refuse(socket.maker, 'its sender is unknown (not supported)');
    if (images.get(socket.maker)?.fdTable) throw refuse(socket.maker, 'the task that puts the packets back shares its fd table with another task (not supported)');
    const mine = added.get(socket.maker) ?? { sockets: [], fds: new Map<number, number>() };
    added.set(socket.maker, mine);
    mine.sockets.push(socketId);
    const sender = socket.pairedWith !== undefined ? plan.byIno.get(socket.pairedWith)!.id : undefined;
    for (const id of [...list.flat(), ...(sender !== undefined ? [sender] : [])]) {
      checkpoint.file(id, 'sk-queues.img'); // an ImageError when it is not there
      mine.fds.set(id, -1);
    }
  }
  for (const [pid, mine] of added) {
    const set = images.get(pid)!;
    const used = new Set(set.fds.map((fd) => fd.fd));
    const extra: FdinfoEntry[] = [];
    let next = FIRST_IN_FLIGHT_FD;
    for (const id of mine.fds.keys()) {
      while (used.has(next)) next--;
      if (next < 3) throw new StageError({ stage: 'plan', pid, resource: 'unixsk', message: 'no spare fd numbers for the fds in flight' });
      mine.fds.set(id, next);
      extra.push({ id, fd: next, type: Number(files.get(id)!['type']), flags: FD_CLOEXEC });
      next--;
    }
    images.set(pid, { ...set, fds: [...set.fds, ...extra], inFlight: mine });
  }
}
