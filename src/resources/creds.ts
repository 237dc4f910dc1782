// Credentials, per thread (raw setresuid and friends change only the calling thread): groups,
// gids, the bounding set, uids with every capability kept across the uid change, the final
// securebits, capset and ambient caps. The main thread then sets the task-wide personality and
// its parent-death signal (the helper's SIGKILL must not survive; a uid change clears it anyway,
// so it comes after). Runs after every thread exists, because creating threads needs privileges
// the image may not have. A thread whose image creds are what it inherited at clone time (the
// main thread's creds now: its own come last) runs no list at all: 10,000 threads of a root
// workload cost one /proc read and one prctl instead of 10,000 thread lists.
import { readFileSync } from 'node:fs';
import { runThreadLists, type ThreadBatch } from '../restore/remote-thread-lists.js';
import { restoredThreads } from '../restore/remote-threads.js';
import { hostPidOf, type RestoreCtx, type RestoreSession } from '../restore/context.js';
import { RemoteBatch } from '../restore/remote.js';
import {
  PR_CAP_AMBIENT,
  PR_CAP_AMBIENT_RAISE,
  PR_CAPBSET_DROP,
  PR_SET_DUMPABLE,
  PR_SET_PDEATHSIG,
  PR_SET_SECUREBITS,
  SYS,
} from '../restore/remote-sys.js';
import { scratchOf } from './memory.js';
import type { ResourceKind } from './types.js';

const PR_GET_SECUREBITS = 27;
const LINUX_CAPABILITY_VERSION_3 = 0x20080522;
const SECBIT_KEEP_CAPS = 0x10;
const SECBIT_NO_SETUID_FIXUP = 0x4;
/** The *_LOCKED securebits (noroot, no_setuid_fixup, keep_caps, no_cap_ambient_raise). */
const SECBITS_LOCKS = 0x2 | 0x8 | 0x20 | 0x80;
/** Highest capability number tried when dropping from the bounding set (the kernel answers EINVAL past its last). */
const CAP_LAST_TRY = 63;
const EINVAL = 22;

type Creds = Record<string, unknown>;

function capWords(creds: Creds, name: string): [number, number] {
  const words = (creds[name] as number[] | undefined) ?? [];
  return [Number(words[0] ?? 0) >>> 0, Number(words[1] ?? 0) >>> 0];
}

function hasCap(words: [number, number], cap: number): boolean {
  return cap < 32 ? ((words[0] >>> cap) & 1) === 1 : cap < 64 ? ((words[1] >>> (cap - 32)) & 1) === 1 : false;
}

/** capset's header and two data words, as one buffer (header at 0, data at 8). */
export function capsetBytes(creds: Creds): Buffer {
  const buf = Buffer.alloc(8 + 24);
  buf.writeUInt32LE(LINUX_CAPABILITY_VERSION_3, 0);
  buf.writeInt32LE(0, 4);
  const eff = capWords(creds, 'cap_eff');
  const prm = capWords(creds, 'cap_prm');
  const inh = capWords(creds, 'cap_inh');
  for (let i = 0; i < 2; i++) {
    buf.writeUInt32LE(eff[i]!, 8 + i * 12);
    buf.writeUInt32LE(prm[i]!, 12 + i * 12);
    buf.writeUInt32LE(inh[i]!, 16 + i * 12);
  }
  return buf;
}

const TOLERATE_EINVAL = [EINVAL];

/**
 * The parent-death signal a task gets. A detached restore's root has crr's launcher for a parent,
 * which exits once the tree runs: armed, the signal would come then, killing a tree that was
 * to run on (its parent outside the checkpoint is not there to outlive anyway). Not armed there.
 */
function armedDeathSignal(session: RestoreSession, pid: number): number {
  const signal = deathSignalOf(session, pid);
  return session.options.detached && pid === session.checkpoint.root.pid ? 0 : signal;
}

function deathSignalOf(session: RestoreSession, pid: number): number {
  const core = session.images.get(pid)?.core as Record<string, unknown> | undefined;
  return Number(((core?.['thread_core'] as Record<string, unknown> | undefined) ?? {})['pdeath_sig'] ?? 0);
}

/** The plan's warning when a detached restore leaves the root's parent-death signal unarmed. */
export function deathSignalWarnings(session: RestoreSession): string[] {
  const root = session.checkpoint.root.pid;
  const signal = deathSignalOf(session, root);
  if (!session.options.detached || !signal) return [];
  return [`task ${root}: its parent-death signal (${signal}) is not armed: a detached restore leaves it no parent to outlive (crr's launcher exits once the tree runs, which would send it)`];
}

let lastCap: number | undefined;
/**
 * The kernel's highest capability (/proc/sys/kernel/cap_last_cap), at most CAP_LAST_TRY: drops
 * above it are EINVAL no-ops, 23 of a root thread's ~35 commands on Linux 6.18 (last cap 40).
 */
export function kernelLastCap(): number {
  if (lastCap === undefined) {
    let read = Number.NaN;
    try {
      read = Number.parseInt(readFileSync('/proc/sys/kernel/cap_last_cap', 'utf8'), 10);
    } catch {
      // Unreadable: try every capability number, as before.
    }
    lastCap = Number.isInteger(read) && read >= 0 ? Math.min(read, CAP_LAST_TRY) : CAP_LAST_TRY;
  }
  return lastCap;
}

/** The credential commands one thread runs for itself. */
export function addCreds(batch: ThreadBatch, creds: Creds, tid: number): void {
  const n = (name: string) => Number(creds[name] ?? 0) >>> 0;
  // Purposes are made only when a command fails (one thread's list is ~30-80 commands).
  const of = (what: string) => ({ what: () => `${what} of thread ${tid}` });
  const groups = ((creds['groups'] as number[] | undefined) ?? []).map(Number);
  const list = Buffer.alloc(Math.max(4, groups.length * 4));
  groups.forEach((g, i) => list.writeUInt32LE(g >>> 0, i * 4));
  batch.reserve(list.length + 32 + 8, 12 + CAP_LAST_TRY);
  batch.call(SYS.setgroups, [groups.length, batch.put(list)], of('set the groups'));
  batch.call(SYS.setresgid, [n('gid'), n('egid'), n('sgid')], of('set the gids'));
  // setfsuid/setfsgid return the previous value, never an error: nothing to check.
  batch.call(SYS.setfsgid, [n('fsgid')], of('set fsgid'));
  // The bounding set needs CAP_SETPCAP in the effective set, which a uid change away from 0
  // clears (KEEP_CAPS keeps only the permitted set): trimmed before it.
  const bnd = capWords(creds, 'cap_bnd');
  if (creds['cap_bnd'] !== undefined) {
    const drop = { tolerate: TOLERATE_EINVAL, what: (args: readonly (number | bigint)[]) => `drop capability ${args[1]} from the bounding set of thread ${tid}` };
    const last = kernelLastCap();
    for (let cap = 0; cap <= last; cap++) {
      if (!hasCap(bnd, cap)) batch.call(SYS.prctl, [PR_CAPBSET_DROP, cap, 0, 0, 0], drop);
    }
  }
  const secbits = n('secbits');
  const changesUid = [n('uid'), n('euid'), n('suid'), n('fsuid')].some((u) => u !== 0);
  // Through the uid change the thread keeps every capability (NO_SETUID_FIXUP: the effective
  // set too), so that it may still set the securebits; capset then gives the image's.
  // (Without the image's lock bits yet: a locked bit could not be set back afterwards.)
  if (changesUid) batch.call(SYS.prctl, [PR_SET_SECUREBITS, (secbits & ~SECBITS_LOCKS) | SECBIT_KEEP_CAPS | SECBIT_NO_SETUID_FIXUP, 0, 0, 0], of('keep caps across the uid change'));
  batch.call(SYS.setresuid, [n('uid'), n('euid'), n('suid')], of('set the uids'));
  batch.call(SYS.setfsuid, [n('fsuid')], of('set fsuid'));
  if (changesUid || secbits !== 0) batch.call(SYS.prctl, [PR_SET_SECUREBITS, secbits, 0, 0, 0], of('set the securebits'));
  const caps = capsetBytes(creds);
  batch.call(SYS.capset, [batch.put(caps.subarray(0, 8)), batch.put(caps.subarray(8))], of('set the capabilities'));
  const amb = capWords(creds, 'cap_amb');
  const raise = { what: (args: readonly (number | bigint)[]) => `raise ambient capability ${args[2]} of thread ${tid}` };
  for (let cap = 0; cap < 64; cap++) {
    if (hasCap(amb, cap)) batch.call(SYS.prctl, [PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0], raise);
  }
}

/** Creds as the thread lists compare them: numbers, sorted groups, caps as [low, high] words. */
export interface PlainCreds {
  readonly ids: readonly number[]; // uid gid euid egid suid sgid fsuid fsgid
  readonly groups: readonly number[];
  readonly caps: readonly number[]; // inh prm eff bnd amb, two words each
  readonly secbits: number;
}

const ID_FIELDS = ['uid', 'gid', 'euid', 'egid', 'suid', 'sgid', 'fsuid', 'fsgid'] as const;
const CAP_FIELDS = ['cap_inh', 'cap_prm', 'cap_eff', 'cap_bnd', 'cap_amb'] as const;

/** An image's creds with addCreds's defaults (absent = 0). */
export function plainCreds(creds: Creds): PlainCreds {
  return {
    ids: ID_FIELDS.map((f) => Number(creds[f] ?? 0) >>> 0),
    groups: ((creds['groups'] as number[] | undefined) ?? []).map((g) => Number(g) >>> 0).sort((a, b) => a - b),
    caps: CAP_FIELDS.flatMap((f) => capWords(creds, f)),
    secbits: Number(creds['secbits'] ?? 0) >>> 0,
  };
}

/**
 * A task's creds from /proc/PID/status (Uid/Gid: real, effective, saved, fs; Groups; Cap*),
 * with `secbits` read separately (status does not show them).
 */
export function statusCreds(status: string, secbits: number): PlainCreds {
  const fields = new Map(status.split('\n').map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 1).trim()]));
  const line = (name: string) => fields.get(name) ?? '';
  const list = (name: string) => line(name).split(/\s+/).filter(Boolean).map((v) => Number(v) >>> 0);
  const [uid, euid, suid, fsuid] = list('Uid');
  const [gid, egid, sgid, fsgid] = list('Gid');
  const hexWords = (name: string) => {
    const v = BigInt(`0x${line(name) || '0'}`);
    return [Number(v & 0xffffffffn), Number(v >> 32n)];
  };
  return {
    ids: [uid, gid, euid, egid, suid, sgid, fsuid, fsgid].map((v) => v ?? -1),
    groups: list('Groups').sort((a, b) => a - b),
    caps: ['CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb'].flatMap(hexWords),
    secbits,
  };
}

const sameList = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((v, i) => v === b[i]);

/** Whether addCreds with `image` would leave a thread holding `have` where it is. */
export function sameCreds(image: Creds, have: PlainCreds): boolean {
  const want = plainCreds(image);
  // An image without a bounding set drops nothing: any bounding set will do.
  const caps = image['cap_bnd'] === undefined ? (c: readonly number[]) => [...c.slice(0, 6), ...c.slice(8)] : (c: readonly number[]) => c;
  return want.secbits === have.secbits && sameList(want.ids, have.ids) && sameList(want.groups, have.groups) && sameList(caps(want.caps), caps(have.caps));
}

/** What every other thread inherited at clone time: the main thread's creds now. */
async function inheritedCreds(ctx: RestoreCtx, hostPid: number, scratch: bigint): Promise<PlainCreds> {
  const probe = new RemoteBatch(scratch);
  probe.call(SYS.prctl, [PR_GET_SECUREBITS, 0, 0, 0, 0], { what: 'read the securebits new threads inherited' });
  const [secbits] = await probe.run(ctx.tracer, hostPid, { pid: ctx.pid });
  return statusCreds(readFileSync(`/proc/${hostPid}/status`, 'utf8'), Number(secbits));
}

export const creds: ResourceKind<RestoreCtx> = {
  name: 'creds',
  stage: 'finish',
  images: ['core-*'],
  appliesTo: (task) => !task.zombie,
  describe: () => ['groups, gids, uids, capabilities, securebits per thread; personality; parent-death signal'],
  async restore(ctx) {
    const hostPid = hostPidOf(ctx);
    const scratch = scratchOf(ctx);
    const start = ctx.now();
    let syscalls = 0;
    // Other threads first, all at once (one list each, runThreadLists); the main thread's own
    // batch also carries the task-wide settings.
    const all = restoredThreads(ctx.runtime, hostPid);
    const inherited = all.length > 1 ? await inheritedCreds(ctx, hostPid, scratch) : undefined;
    // Threads of one process mostly share one creds Entry (the image decoder gives equal bytes
    // the same object): compared with the inherited creds once per Entry, not per thread.
    const inheritedAlready = new Map<Creds, boolean>();
    const isInherited = (image: Creds) => {
      let same = inheritedAlready.get(image);
      if (same === undefined) inheritedAlready.set(image, (same = sameCreds(image, inherited!)));
      return same;
    };
    const keys = new Map<Creds, string>();
    const others = all.slice(1).flatMap((thread) => {
      const core = (ctx.images.cores.get(thread.tid) ?? ctx.images.core) as Record<string, unknown>;
      const image = ((core['thread_core'] as Record<string, unknown> | undefined) ?? {})['creds'] as Creds | undefined;
      if (!image || isInherited(image)) return [];
      // Threads with equal creds share one list, built once (key: the image's fields).
      let key = keys.get(image);
      if (key === undefined) keys.set(image, (key = JSON.stringify(image, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))));
      return [{ ...thread, key, build: (list: ThreadBatch) => addCreds(list, image, thread.tid) }];
    });
    await runThreadLists(ctx.tracer, hostPid, scratch, ctx.pid, others);
    syscalls += others.length;
    for (const thread of [all[0]!]) {
      const core = (ctx.images.cores.get(thread.tid) ?? ctx.images.core) as Record<string, unknown>;
      const threadCore = (core['thread_core'] as Record<string, unknown> | undefined) ?? {};
      const batch = new RemoteBatch(scratch);
      const image = threadCore['creds'] as Creds | undefined;
      if (image) addCreds(batch, image, thread.tid);
      if (thread.tid === ctx.pid) {
        const tc = (ctx.images.core['tc'] as Record<string, unknown> | undefined) ?? {};
        batch.call(SYS.personality, [Number(tc['personality'] ?? 0) >>> 0], { what: 'set the personality' });
        batch.call(SYS.prctl, [PR_SET_PDEATHSIG, armedDeathSignal(ctx.session, ctx.pid), 0, 0, 0], { what: 'set the parent-death signal' });
        // A uid change makes the process undumpable (the kernel's suid_dumpable): the mm kind's
        // setting goes again, after the ids.
        const dumpable = ctx.images.mm?.['dumpable'];
        if (image && dumpable !== undefined) batch.call(SYS.prctl, [PR_SET_DUMPABLE, Number(dumpable), 0, 0, 0], { what: 'set dumpable again after the ids' });
      }
      if (batch.size === 0) continue;
      syscalls += batch.size;
      await batch.run(ctx.tracer, thread.hostTid, { pid: ctx.pid });
    }
    ctx.record({ name: 'creds', start, end: ctx.now(), syscalls });
  },
};
