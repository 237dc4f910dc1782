// The shared-fds mechanism: an open file description that several fds hold (in one task after a
// dup, or in several tasks after a fork) is created once, by its creator, and every other fd gets
// that same description, so offsets, flags and queued data stay shared after the restore.
// How: the orchestrator takes a copy of the creator's fd with pidfd_getfd, then passes it into
// each receiving task with the `recv_fds` request itself, over the helper's channel (SCM_RIGHTS;
// the helper lands each fd at its number); when the channel cannot take that packet at once, or
// for more than 253 fds, over a socketpair whose one end it has taken from that task's helper. Creators only publish and
// receivers only wait for publications, so tasks that create for each other (cycles) never wait
// on one another. Used by the pipe, fifo and shared-files kinds (and any kind whose objects are fds).
import { openSync, closeSync, writeSync, constants as C } from 'node:fs';
import type { HelperChannel } from '../actors/helper.js';
import { native } from '../actors/native.js';
import type { FdinfoEntry } from '../images/index.js';
import { helperOf, type RestoreCtx } from '../restore/context.js';
import { O_CLOEXEC } from '../restore/remote-sys.js';
import type { PlanSource, SharedObject, TaskPlan } from './types.js';

/** The fdinfo flags bit of a close-on-exec fd. */
export const FD_CLOEXEC = 1;
/** fdinfo type of regular files and devices (FD_TYPES__REG). */
export const FD_TYPE_REG = 1;
export { O_CLOEXEC };
const SOCK_SEQPACKET = 5;
const SOCK_CLOEXEC = 0o2000000;
/** SCM_RIGHTS carries at most 253 fds per message. */
const FDS_PER_MESSAGE = 253;

/** One fd of one task that refers to a description (a files.img id). */
export interface FdHolder {
  readonly pid: number;
  readonly fd: number;
  readonly cloexec: boolean;
}

/** What the plan side knows: each task's fdinfo entries (TaskImageSet has them). */
export type FdTables = ReadonlyMap<number, { readonly fds: readonly FdinfoEntry[] }>;

/**
 * Holders of every files.img id of the given fd types, in tree order: holders[0] is the creator.
 * Zombies hold nothing (they have no fds left to restore).
 */
export function holdersByFile(tasks: readonly TaskPlan[], tables: FdTables, types: ReadonlySet<number>): Map<number, FdHolder[]> {
  const out = new Map<number, FdHolder[]>();
  for (const task of tasks) {
    if (task.zombie) continue;
    for (const fd of tables.get(task.pid)?.fds ?? []) {
      if (!types.has(fd.type)) continue;
      const list = out.get(fd.id) ?? [];
      list.push({ pid: task.pid, fd: fd.fd, cloexec: Boolean(fd.flags & FD_CLOEXEC) });
      out.set(fd.id, list);
    }
  }
  return out;
}

/**
 * appliesTo of a kind that acts only on fds of `type`: a live task holding one (restore() would
 * find nothing to do for the others), or every live task when the planner has no decoded images.
 */
export function holdsFdOfType(type: number): (task: TaskPlan, source?: PlanSource) => boolean {
  return (task, source) => {
    if (task.zombie) return false;
    const fds = (source?.images.get(task.pid) as { fds?: readonly FdinfoEntry[] } | undefined)?.fds;
    return fds === undefined || fds.some((fd) => fd.type === type);
  };
}

/** SharedObject rows for `crr plan`: the creator and the other tasks of each holder list. */
export function sharedRows(kind: string, groups: Iterable<[string, readonly FdHolder[]]>): SharedObject[] {
  const rows: SharedObject[] = [];
  for (const [id, holders] of groups) {
    const creator = holders[0]!.pid;
    const receivers = [...new Set(holders.map((h) => h.pid))].filter((pid) => pid !== creator);
    if (receivers.length) rows.push({ kind, id, creator, receivers });
  }
  return rows;
}

/**
 * `count` fd numbers the task does not use, below the helper's channel (>= 1000). Tasks of one
 * shared fd table (CLONE_FILES) each take every size-th number from below - slot, so two of
 * them never pick the same number, and all of them avoid every fd of the table.
 */
export function spareFds(ctx: Pick<RestoreCtx, 'images'>, count: number, below = 990): number[] {
  const table = ctx.images.fdTable;
  const used = new Set([...ctx.images.fds, ...(table?.fds ?? [])].map((fd) => fd.fd));
  const stride = table?.size ?? 1;
  const out: number[] = [];
  for (let n = below - (table?.slot ?? 0); out.length < count && n > 2; n -= stride) if (!used.has(n)) out.push(n);
  if (out.length < count) throw new Error(`no ${count} spare fd numbers below ${below}`);
  return out;
}

/** A copy, in crr's own process, of fd `fd` of the task (same description), close-on-exec. */
export function copyFromTask(ctx: RestoreCtx, fd: number): number {
  return native.pidfdGetfd(helperOf(ctx).pidfd, fd);
}

/** A published description: crr's copy, closed when the last receiving task has it. */
interface Offer {
  fd: number;
  pending: number;
}

const offerKind = (kind: string) => `fd:${kind}`;

/**
 * Publishes crr's copy `copy` of a description under kind/id for `receivers` tasks. The copy is
 * closed once each of them has installed it (at once when there are none), or when the restore
 * is aborted.
 */
export function offer(ctx: RestoreCtx, kind: string, id: string, copy: number, receivers: number): void {
  if (receivers === 0) {
    native.close(copy);
    return;
  }
  const entry: Offer = { fd: copy, pending: receivers };
  openOffersOf(ctx.signal).add(entry);
  ctx.shared.publish(offerKind(kind), id, entry);
}

const openOffers = new WeakMap<AbortSignal, Set<Offer>>();

/**
 * The offers still open under this restore's signal, all closed by one abort listener: an
 * EventTarget walks its listeners on every addEventListener, so one per offer (a tree whose
 * tasks each create a pipe) was quadratic.
 */
function openOffersOf(signal: AbortSignal): Set<Offer> {
  let open = openOffers.get(signal);
  if (!open) {
    const offers = (open = new Set());
    openOffers.set(signal, offers);
    signal.addEventListener('abort', () => {
      for (const entry of offers) release(entry, entry.pending, offers);
    }, { once: true });
  }
  return open;
}

function release(entry: Offer, count: number, open?: Set<Offer>): void {
  if (entry.pending <= 0) return;
  entry.pending -= count;
  if (entry.pending > 0) return;
  native.close(entry.fd);
  open?.delete(entry);
}

/** One fd a receiving task wants: the description published under kind/id, at `fd`. */
export interface Want {
  readonly kind: string;
  readonly id: string;
  readonly fd: number;
  readonly cloexec: boolean;
}

/**
 * Waits for every wanted description and installs each at its fd number in this task (an fd
 * already there is replaced). One socketpair per call; at most 253 fds per message.
 */
export async function receive(ctx: RestoreCtx, wants: readonly Want[]): Promise<void> {
  if (!wants.length) return;
  const offers = await Promise.all(wants.map((w) => ctx.shared.receive(offerKind(w.kind), w.id) as Promise<Offer>));
  const helper = helperOf(ctx);
  if (wants.length <= FDS_PER_MESSAGE && (await receiveOnChannel(helper, wants, offers))) {
    releaseAll(ctx, offers);
    return;
  }
  const avoid = new Set(wants.map((w) => w.fd));
  const [theirs, ours] = spareFds({ images: { ...ctx.images, fds: [...ctx.images.fds, ...[...avoid].map((fd) => ({ fd }) as FdinfoEntry)] } }, 2);
  await helper.request('socketpair', { type: SOCK_SEQPACKET | SOCK_CLOEXEC, fds: [theirs!, ours!] });
  // The helper's copy of crr's end goes with the first message and its own end with the last, in
  // the same batch as the recv_fds: one helper round trip per message after the socketpair.
  const open = new Set([theirs!, ours!]);
  let sender = -1;
  try {
    sender = native.pidfdGetfd(helper.pidfd, ours!);
    for (let at = 0; at < wants.length; at += FDS_PER_MESSAGE) {
      const part = wants.slice(at, at + FDS_PER_MESSAGE);
      const last = at + FDS_PER_MESSAGE >= wants.length;
      native.sendFds(sender, offers.slice(at, at + FDS_PER_MESSAGE).map((o) => o.fd));
      const recv = { op: 'recv_fds', sock: theirs!, fds: part.map((w) => w.fd), cloexec: part.map((w) => (w.cloexec ? 1 : 0)) };
      const closeOurs = open.has(ours!) ? [{ op: 'close', fd: ours! }] : [];
      const closeTheirs = last ? [{ op: 'close', fd: theirs! }] : [];
      try {
        await helper.batch([...closeOurs, recv, ...closeTheirs]);
      } catch (err) {
        // Ops before the failed one ran: the copy of crr's end is closed if it came first.
        if (closeOurs.length && ((err as { index?: number }).index ?? 0) > 0) open.delete(ours!);
        throw err;
      }
      open.delete(ours!);
      if (last) open.delete(theirs!);
    }
  } finally {
    if (sender >= 0) native.close(sender);
    if (open.size) await helper.batch([...open].map((fd) => ({ op: 'close', fd }))).catch(() => undefined);
  }
  releaseAll(ctx, offers);
}

/** Each distinct offer was installed in this task once more. */
function releaseAll(ctx: RestoreCtx, offers: readonly Offer[]): void {
  const open = openOffers.get(ctx.signal);
  for (const o of new Set(offers)) release(o, 1, open);
}

/**
 * The fds go with the `recv_fds` request itself, over the helper's channel: one round trip, no
 * socketpair. False (nothing sent) when the channel cannot take the packet at once.
 */
async function receiveOnChannel(helper: HelperChannel, wants: readonly Want[], offers: readonly Offer[]): Promise<boolean> {
  const recv = { fds: wants.map((w) => w.fd), cloexec: wants.map((w) => (w.cloexec ? 1 : 0)) };
  let answer: Promise<unknown>;
  try {
    answer = helper.requestWithFds('recv_fds', recv, offers.map((o) => o.fd));
  } catch (err) {
    if ((err as { code?: string }).code === 'EAGAIN') return false;
    throw err;
  }
  await answer;
  return true;
}

/** Number of distinct tasks other than the creator among the holders (what `offer` waits for). */
export function receiverCount(holders: readonly FdHolder[], creator: number): number {
  return new Set(holders.filter((h) => h.pid !== creator).map((h) => h.pid)).size;
}

/** Copies the creator's extra fds of one description (dups inside the creator) with the helper. */
export function dupOps(from: number, holders: readonly FdHolder[], pid: number): Array<{ op: string } & Record<string, unknown>> {
  return holders
    .filter((h) => h.pid === pid && h.fd !== from)
    .map((h) => ({ op: 'dup2', oldfd: from, newfd: h.fd, flags: h.cloexec ? O_CLOEXEC : 0 }));
}

/**
 * Puts queued bytes into a pipe or FIFO through crr's copy of one of its descriptions: a fresh
 * non-blocking write description of the same pipe, so a full pipe is an EAGAIN error, never a hang.
 */
export function fillPipe(copy: number, data: Uint8Array): void {
  if (!data.length) return;
  const wfd = openSync(`/proc/self/fd/${copy}`, C.O_WRONLY | C.O_NONBLOCK);
  try {
    let done = 0;
    while (done < data.length) done += writeSync(wfd, data, done, data.length - done);
  } finally {
    closeSync(wfd);
  }
}
