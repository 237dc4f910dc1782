// The unix socket kind: every UNIXSK fd comes back as the same socket: type, name (path or
// abstract), listening with its backlog of pending connections, connected to the same peer,
// queued data (sk-queues.img) byte for byte with its packet bounds, shutdown state, SOL_SOCKET
// options and O_NONBLOCK. The maker task (unixsk-plan.ts) builds each socket at a spare fd with
// helper ops, fills it, then lands it at its fds; other holders receive it through shared-fds.
// Order inside a maker: create, bind, listen (published so other tasks may connect), connect,
// options (buffer sizes before data), queued data (sent by the peer end), shutdown, flags.
import { lstatSync, unlinkSync } from 'node:fs';
import { NativeError } from '../errors.js';
import type { Entry } from '../images/index.js';
import { perKey } from '../memo.js';
import { helperOf, type RestoreCtx, type RestoreSession, type TaskImageSet } from '../restore/context.js';
import { copyFromTask, FD_CLOEXEC, O_CLOEXEC, offer, receive, receiverCount, sharedRows, spareFds, type Want } from './shared-fds.js';
import { bindName, FD_TYPE_UNIXSK, nameText, planUnixSockets, SOCK_DGRAM, TCP_LISTEN, type UnixPlan, type UnixSocket } from './unixsk-plan.js';
import { optionOps, type Op } from './socket-options.js';
import { queuedPackets, type QueuedPacket } from '../restore/in-flight.js';
import type { PlanSource, ResourceKind, TaskPlan } from './types.js';

export { FD_TYPE_UNIXSK } from './unixsk-plan.js';

const KIND = 'unixsk';
const BOUND = 'unixsk-bound';
const SOCK_CLOEXEC = 0o2000000;
const O_NONBLOCK = 0o4000;
const F_SETFL = 4;

const planOf = perKey((session: RestoreSession, ctx: RestoreCtx) => planUnixSockets(ctx.checkpoint.files(), ctx.plan.tasks, session.images));

/** Sockets whose queue carries fds in flight: their whole queue goes back in task-state (unixsk-scm). */
const withFdsInFlight = (queue: readonly QueuedPacket[] | undefined) => Boolean(queue?.some((p) => p.rights.length));

/** A path a dead socket left behind would make bind fail with EADDRINUSE: only a socket file is removed. */
function clearStalePath(name: Buffer): void {
  if (!name.length || name[0] === 0) return;
  const path = bindName(name).toString();
  try {
    if (lstatSync(path).isSocket()) unlinkSync(path);
  } catch {
    // nothing there
  }
}

/** Datagrams for a named socket whose sender crr does not make: sent from a socket of its own, by name. */
async function sendFromUnnamed(ctx: RestoreCtx, s: UnixSocket, packets: readonly QueuedPacket[]): Promise<void> {
  const helper = helperOf(ctx);
  const [tmp] = spareFds(ctx, 1, 790);
  await helper.request('socket', { type: SOCK_DGRAM | SOCK_CLOEXEC, fd: tmp });
  try {
    for (const p of packets) await helper.request('send', { fd: tmp, data: Buffer.from(p.data), addr: bindName(s.name), ...controlOf(ctx, p) });
  } finally {
    await helper.request('close', { fd: tmp });
  }
}

/** A datagram socket connected again to the named socket outside the tree it was connected to (criu --ext-unix-sk). */
async function connectOutside(helper: ReturnType<typeof helperOf>, fd: number, s: UnixSocket, name: Buffer): Promise<void> {
  try {
    await helper.request('connect', { fd, addr: bindName(name) });
  } catch (e) {
    if (!(e instanceof NativeError)) throw e;
    throw new NativeError({ code: e.code, errno: e.errno, syscall: 'connect', ...(e.pid !== undefined ? { pid: e.pid } : {}), detail: `unix socket ${s.ino} to ${nameText(name)}, outside the tree (dumped with --ext-unix-sk): is it there?` });
  }
}

/**
 * What a send of `packet` carries besides its bytes: its fds in flight (`fds`, at the numbers the
 * load gave them in this task) and its sender's credentials (`creds`; a sender not in the tree,
 * pid 0, is this task).
 */
function controlOf(ctx: RestoreCtx, packet: QueuedPacket): { fds?: number[]; creds?: number[] } {
  const fds = packet.rights.length ? { fds: packet.rights.map((id) => ctx.images.inFlight!.fds.get(id)!) } : {};
  const u = packet.ucred;
  if (!u) return fds;
  return { ...fds, creds: [ctx.session.images.has(u.pid) ? u.pid : 0, u.uid, u.gid] };
}

/** Makes, fills and lands the sockets this task makes; offers them to the other holders. */
async function makeSockets(ctx: RestoreCtx, plan: UnixPlan, mine: UnixSocket[]): Promise<void> {
  const helper = helperOf(ctx);
  const spares = spareFds(ctx, mine.length, 800);
  const at = new Map(mine.map((s, i) => [s.id, spares[i]!]));
  const fdOf = (s: UnixSocket) => at.get(s.id)!;
  const create: Op[] = [];
  const named: Op[] = [];
  for (const s of mine) {
    const other = s.pairedWith !== undefined ? plan.byIno.get(s.pairedWith)! : undefined;
    if (other && other.id < s.id) continue; // made with its lower-id end
    if (other) create.push({ op: 'socketpair', type: s.type | SOCK_CLOEXEC, fds: [fdOf(s), fdOf(other)] });
    else create.push({ op: 'socket', type: s.type | SOCK_CLOEXEC, fd: fdOf(s) });
  }
  for (const s of mine) {
    // A stream end of a pair shares its listener's name (accept gives it): binding it again would clash.
    const bindable = s.name.length && (s.pairedWith === undefined || s.type === SOCK_DGRAM);
    if (bindable) {
      clearStalePath(s.name);
      named.push({ op: 'bind', fd: fdOf(s), addr: bindName(s.name) });
    }
    if (Number(s.usk['state']) === TCP_LISTEN) named.push({ op: 'listen', fd: fdOf(s), backlog: Number(s.usk['backlog'] ?? 0) });
  }
  await helper.batch([...create, ...named]);
  for (const s of mine) if (s.name.length && s.pairedWith === undefined) ctx.shared.publish(BOUND, String(s.ino), true);

  for (const s of [...mine].sort((a, b) => a.id - b.id)) {
    if (s.connectTo === undefined) continue;
    const outside = plan.external.get(s.connectTo);
    if (outside?.length) {
      await connectOutside(helper, fdOf(s), s, outside);
      continue;
    }
    const target = plan.byIno.get(s.connectTo);
    if (!target?.name.length) throw new Error(`not supported: unix socket ${s.ino} is connected to ${s.connectTo}, which was not dumped or has no name`);
    await ctx.shared.receive(BOUND, String(target.ino));
    await helper.request('connect', { fd: fdOf(s), addr: bindName(target.name) });
  }

  await helper.batch(mine.flatMap((s) => optionOps(fdOf(s), (s.usk['opts'] as Entry | undefined) ?? {})));
  const queued = queuedPackets(ctx.checkpoint);
  for (const s of mine) {
    const packets = queued.get(s.id);
    // The fds in flight are in place only once every fd kind has acted: sent in task-state.
    if (!packets?.length || withFdsInFlight(packets)) continue;
    const sender = s.pairedWith !== undefined ? plan.byIno.get(s.pairedWith)! : undefined;
    if (sender) {
      for (const p of packets) await helper.request('send', { fd: fdOf(sender), data: Buffer.from(p.data), ...controlOf(ctx, p) });
    } else if (s.type === SOCK_DGRAM && s.name.length) {
      await sendFromUnnamed(ctx, s, packets);
    } else {
      throw new Error(`not supported: queued data on unix socket ${s.ino} (${nameText(s.name)}) whose sender is unknown`);
    }
  }

  const last: Op[] = [];
  for (const s of mine) {
    const shutdown = Number(s.usk['shutdown'] ?? 0);
    if (shutdown) last.push({ op: 'shutdown', fd: fdOf(s), how: shutdown - 1 });
    last.push({ op: 'fcntl', fd: fdOf(s), cmd: F_SETFL, arg: Number(s.usk['flags'] ?? 0) & O_NONBLOCK });
  }
  await helper.batch(last);

  const land: Op[] = [];
  for (const s of mine) {
    const receivers = receiverCount(s.holders, ctx.pid);
    if (receivers) offer(ctx, KIND, String(s.id), copyFromTask(ctx, fdOf(s)), receivers);
    for (const h of s.holders) if (h.pid === ctx.pid) land.push({ op: 'dup2', oldfd: fdOf(s), newfd: h.fd, flags: h.cloexec ? O_CLOEXEC : 0 });
    land.push({ op: 'close', fd: fdOf(s) });
  }
  await helper.batch(land);
}

export const unixsk: ResourceKind<RestoreCtx> = {
  name: 'unixsk',
  stage: 'shared-fds',
  images: ['files', 'fdinfo-*', 'sk-queues'],
  appliesTo: (task: TaskPlan) => !task.zombie,
  async restore(ctx) {
    const holds = ctx.images.fds.some((fd) => fd.type === FD_TYPE_UNIXSK);
    // A task with no unix fds may still make a pair end another task holds.
    if (!holds && !planOf(ctx.session, ctx).byMaker.has(ctx.pid)) return;
    const plan = planOf(ctx.session, ctx);
    const mine = [...(plan.byMaker.get(ctx.pid) ?? [])];
    if (mine.length) await makeSockets(ctx, plan, mine);
    // From this task's own fds: walking every socket's holders per task was quadratic.
    const wants: Want[] = [];
    for (const fd of ctx.images.fds) {
      if (fd.type !== FD_TYPE_UNIXSK) continue;
      const s = plan.byId.get(fd.id);
      if (s && s.maker !== ctx.pid) wants.push({ kind: KIND, id: String(s.id), fd: fd.fd, cloexec: Boolean(fd.flags & FD_CLOEXEC) });
    }
    await receive(ctx, wants);
  },
  describe(task) {
    return task.zombie ? [] : ['unix sockets: made by their first holder, pairs by socketpair, others bound/listening/connected by name'];
  },
  sharedObjects(tasks, source?: PlanSource) {
    if (!source) return [];
    const checkpoint = source.checkpoint as { files(): ReadonlyMap<number, Entry> };
    const plan = planUnixSockets(checkpoint.files(), tasks, source.images as ReadonlyMap<number, TaskImageSet>);
    return sharedRows(KIND, [...plan.byId.values()].map((s) => [String(s.id), [{ pid: s.maker, fd: -1, cloexec: false }, ...s.holders]]));
  },
};

/**
 * Queues carrying fds in flight (SCM_RIGHTS not yet received at the dump), put back by the task
 * that made the receiving socket once its fds are all in place: each packet sent again with the
 * files it carried, from the sending end, both of which the load gave this task at spare fds
 * (src/restore/in-flight.ts); those fds are closed after.
 */
export const unixskScm: ResourceKind<RestoreCtx> = {
  name: 'unixsk-scm',
  stage: 'task-state',
  images: ['files', 'sk-queues'],
  appliesTo: (task: TaskPlan, source?: PlanSource) => !task.zombie && (source === undefined || (source.images.get(task.pid) as TaskImageSet | undefined)?.inFlight !== undefined),
  describe: () => ['packets with fds in flight put back in unix sockets, the fds passed with them'],
  async restore(ctx) {
    const inFlight = ctx.images.inFlight;
    if (!inFlight) return;
    const plan = planOf(ctx.session, ctx);
    const queued = queuedPackets(ctx.checkpoint);
    const helper = helperOf(ctx);
    for (const id of inFlight.sockets) {
      const s = plan.byId.get(id);
      // Only when the socket or its other end is itself in flight can its maker move elsewhere.
      if (s?.maker !== ctx.pid) throw new Error(`not supported: unix socket file ${id}, which has fds in flight in its queue, is itself in flight`);
      const packets = queued.get(id)!;
      const sender = s.pairedWith !== undefined ? plan.byIno.get(s.pairedWith)! : undefined;
      if (!sender) {
        await sendFromUnnamed(ctx, s, packets);
        continue;
      }
      for (const p of packets) await helper.request('send', { fd: inFlight.fds.get(sender.id)!, data: Buffer.from(p.data), ...controlOf(ctx, p) });
    }
    await helper.batch([...inFlight.fds.values()].map((fd) => ({ op: 'close', fd })));
  },
};
