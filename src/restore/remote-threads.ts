// Threads of a restored process, made in bulk so 10,000 threads cost a few tracer round trips:
// one stub batch of clone3 calls (set_tid = each dumped TID; kernel notes step 6) in the main
// thread, untraced (a PTRACE_EVENT_CLONE stop per thread cost a tracer wake-up each); every new
// thread runs its own short list (rseq, robust list, name, sigaltstack: state a thread can only
// set for itself) from its block of the scratch area and parks in pause(), then all are seized
// at once. Also lists run by many stopped threads at once (creds), and the list of a task's
// threads with their TIDs as the tracer sees them, kept for the later stages.
import { readdirSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { NativeError } from '../errors.js';
import {
  packCommandsInto, STUB_CLONE_CHILD_LIST, STUB_CMD_SIZE, STUB_DATA_OFFSET, STUB_HEADER_OFFSET, STUB_HEADER_SIZE, STUB_MAX_COMMANDS, STUB_SCRATCH_SIZE, STUB_STOP_ON_ERROR,
} from '../actors/stub.js';
import type { Regs, Tracer } from '../actors/tracer.js';
import type { TaskRuntime } from './context.js';
import { checkResults, type RemoteCall } from './remote.js';
import { commBytes } from './remote-mm.js';
import { GPREG_FIELDS } from './remote-regs.js';
import { CLONE_THREAD_FLAGS, errnoName, isSyscallError, PR_SET_NAME, signed, SS_DISABLE, SYS } from './remote-sys.js';

export interface RestoredThread {
  /** TID in the restored task's PID namespace (as dumped). */
  readonly tid: number;
  /** TID as crr's tracer sees it. */
  readonly hostTid: number;
}

const threadsOf = new WeakMap<TaskRuntime, RestoredThread[]>();

/** Every thread of a task once the threads stage ran; the main thread first. */
export function restoredThreads(runtime: TaskRuntime, mainHostPid: number): RestoredThread[] {
  return threadsOf.get(runtime) ?? [{ tid: runtime.pid, hostTid: mainHostPid }];
}

export function setRestoredThreads(runtime: TaskRuntime, threads: RestoredThread[]): void {
  threadsOf.set(runtime, threads);
}

const CLONE_CHILD_CLEARTID = 0x200000;
const CLONE_ARGS_SIZE = 88;
/** clone_args then the one pid_t set_tid points at, 8-aligned. */
const CLONE_SLOT = CLONE_ARGS_SIZE + 8;

/**
 * struct clone_args (88 bytes) for a thread with an exact TID; set_tid points at one pid_t.
 * A non-zero clearTid is the thread's clear_child_tid (CLONE_CHILD_CLEARTID sets it as
 * set_tid_address would, saving that call in the thread).
 */
export function cloneArgs(setTidAddr: bigint, clearTid = 0n, into?: { buf: Buffer; at: number }): Buffer {
  const buf = into?.buf ?? Buffer.alloc(CLONE_ARGS_SIZE);
  const at = into?.at ?? 0;
  if (into) buf.fill(0, at, at + CLONE_ARGS_SIZE); // pidfd, parent_tid, exit_signal (0: a thread), stack, stack_size, tls stay 0
  buf.writeUInt32LE(CLONE_THREAD_FLAGS | (clearTid !== 0n ? CLONE_CHILD_CLEARTID : 0), at); // flags (all in the low half)
  writeU64(buf, clearTid, at + 16); // child_tid
  writeU64(buf, setTidAddr, at + 64); // set_tid
  buf.writeUInt32LE(1, at + 72); // set_tid_size: the innermost namespace only
  return buf;
}

/** writeBigUInt64LE without its bigint temporaries (three per call, two calls per thread) for user addresses. */
const MAX_SAFE_BIGINT = BigInt(Number.MAX_SAFE_INTEGER);
function writeU64(buf: Buffer, value: bigint, at: number): void {
  if (value < 0n || value > MAX_SAFE_BIGINT) {
    buf.writeBigUInt64LE(value, at);
    return;
  }
  const n = Number(value);
  buf.writeUInt32LE(n >>> 0, at);
  buf.writeUInt32LE(Math.floor(n / 0x1_0000_0000), at + 4);
}

/** The clear_child_tid address of a thread's core image (0 when none). */
export function clearTidOf(core: Record<string, unknown>): bigint {
  const info = (core['thread_info'] as Record<string, unknown> | undefined) ?? {};
  return BigInt((info['clear_tid_addr'] as bigint | number | undefined) ?? 0);
}

/** The ptrace options of a restored task (barrier.ts) but TRACECLONE: see createThreads. */
const PTRACE_O_TRACESYSGOOD = 0x1;
const PTRACE_O_EXITKILL = 0x100000;
const PTRACE_O_SUSPEND_SECCOMP = 0x200000;

/** The ptrace options createThreads leaves on a task's threads, main thread included. */
export function threadPtraceOptions(suspendSeccomp: boolean): number {
  return PTRACE_O_TRACESYSGOOD | PTRACE_O_EXITKILL | (suspendSeccomp ? PTRACE_O_SUSPEND_SECCOMP : 0);
}

export interface WantedThread {
  readonly tid: number;
  readonly clearTid: bigint;
  /** The thread's own commands (rseq, robust list...), run by the thread itself as it starts. */
  build(list: ThreadBatch): void;
}

/**
 * Creates the threads `wanted` in the task `hostPid` (stopped, the stub at `scratch`) without a
 * tracer stop per thread: TRACECLONE goes off, the main thread runs a batch of clone3s
 * (CRR_STUB_CLONE_CHILD_LIST), each new thread runs its own list from the scratch area and
 * blocks in pause(tid); once every round's have, all are seized and interrupted together and
 * named by the TID their pause holds (rdi). Rounds as large as the data area holds (~2,000
 * threads). `onCreated` hears of every thread seized, failure or not. Resolves with the
 * threads, stopped in pause() with their lists done. A failure before the seizing leaves the
 * threads made so far parked untraced: they die with the task the rollback kills.
 */
export async function createThreads(
  tracer: Tracer,
  hostPid: number,
  scratch: bigint,
  pid: number,
  wanted: readonly WantedThread[],
  options: {
    suspendSeccomp: boolean;
    /** A promise while wanted[index]'s image is not there yet (it is decoded meanwhile). */
    imageReady?: (index: number) => Promise<void> | undefined;
  },
  onCreated: (created: RestoredThread[]) => void,
): Promise<RestoredThread[]> {
  const ptraceOptions = threadPtraceOptions(options.suspendSeccomp);
  await tracer.setOptions(hostPid, ptraceOptions);
  const created: RestoredThread[] = [];
  /** Dumped TIDs of the threads clone3 made so far. */
  const madeTids = new Set<number>();
  const areaStart = STUB_DATA_OFFSET;
  let next = 0;
  /** The next round's lists and clone3 commands, built in JS only (nothing is sent yet). */
  const prepare = async (): Promise<PreparedRound | undefined> => {
    if (next >= wanted.length) return undefined;
    const round: Array<{ w: WantedThread; at: number; list: ThreadList }> = [];
    let end = areaStart;
    while (next < wanted.length && round.length < STUB_MAX_COMMANDS) {
      const ready = options.imageReady?.(next);
      if (ready) await ready; // most are decoded already: no await (a microtask turn) each
      const w = wanted[next]!;
      const listAt = end + CLONE_SLOT;
      const list = new ThreadList(scratch + BigInt(listAt));
      w.build(list);
      list.call(SYS.pause, [w.tid], { what: `park thread ${w.tid}` }); // rdi names it in a register dump
      if (align8(listAt + list.length) > STUB_SCRATCH_SIZE) {
        if (round.length === 0) throw new RangeError(`thread ${w.tid}: its list outgrows the scratch area`);
        break;
      }
      round.push({ w, at: end, list });
      end = align8(listAt + list.length);
      next++;
    }
    const data = Buffer.alloc(end - areaStart);
    const commands = round.map(({ w, at, list }) => {
      const slot = scratch + BigInt(at);
      cloneArgs(slot + BigInt(CLONE_ARGS_SIZE), w.clearTid, { buf: data, at: at - areaStart });
      data.writeInt32LE(w.tid, at - areaStart + CLONE_ARGS_SIZE);
      list.packInto(data, at + CLONE_SLOT - areaStart, 0); // a child's failure must not reach the int3: checked below
      return { nr: SYS.clone3, args: [slot, CLONE_ARGS_SIZE, scratch + BigInt(at + CLONE_SLOT + list.headerOffset)], flags: STUB_STOP_ON_ERROR | STUB_CLONE_CHILD_LIST };
    });
    return { round, data, commands };
  };
  try {
    let prepared = await prepare();
    while (prepared) {
      const { round, data, commands } = prepared;
      tracer.processVmWrite(hostPid, scratch + BigInt(areaStart), data);
      const batch = tracer.runBatch(hostPid, { scratch, commands, timeoutMs: 5000 + round.length });
      batch.catch(() => {}); // awaited below, after the next round is built
      // The next round is built in JS while the tracer runs this one's clone3s (10,000 threads:
      // ~5 rounds of 15-100 ms of JS each, and as long in the kernel); it is sent only once this
      // round's threads have run their lists, the data area being theirs until then.
      let following: PreparedRound | undefined;
      let unprepared: unknown; // thrown once this round's results are checked
      try {
        following = await prepare();
      } catch (err) {
        unprepared = err;
      }
      const got = await batch;
      let made = 0;
      while (made < got.executed && !isSyscallError(signed(got.results[made]!))) made++;
      for (let i = 0; i < made; i++) {
        const { w } = round[i]!;
        if (Number(got.results[i]!) !== w.tid) throw new NativeError({ code: 'EPROTO', errno: 71, syscall: 'clone3', pid, detail: `thread got TID ${got.results[i]}, wanted ${w.tid}` });
        madeTids.add(w.tid);
      }
      const back = await waitForLists(tracer, hostPid, scratch, round.slice(0, made), areaStart, 5000 + made);
      for (let i = 0; i < made; i++) checkThreadList(back, round[i]!.at + CLONE_SLOT - areaStart, round[i]!.list, pid);
      if (made < round.length) {
        const result = made < got.executed ? signed(got.results[made]!) : -71n;
        const errno = Number(-result);
        throw new NativeError({ code: errnoName(errno), errno, syscall: 'clone3', pid, detail: `thread ${round[made]!.w.tid}` });
      }
      if (unprepared !== undefined) throw unprepared;
      prepared = following;
    }
    // All are seized once, at the end: one listing of /proc/PID/task (a listing per round also
    // listed every earlier round's threads again: ~150 ms for 10,000). Each parked thread names
    // itself: pause(tid) holds its dumped TID in rdi.
    const tids = readdirSync(`/proc/${hostPid}/task`).map(Number).filter((t) => t !== hostPid);
    const rdis = await tracer.seizeThreads(hostPid, tids, ptraceOptions, 5000 + tids.length);
    const hostOf = new Map<number, number>();
    tids.forEach((t, k) => {
      const tid = Number(rdis[k]!);
      if (!madeTids.has(tid) || hostOf.has(tid)) throw new NativeError({ code: 'EPROTO', errno: 71, syscall: 'clone3', pid, detail: `thread ${t} (host) is parked as no thread made here (rdi ${rdis[k]})` });
      hostOf.set(tid, t);
      created.push({ tid, hostTid: t });
    });
    for (const tid of madeTids) {
      if (!hostOf.has(tid)) throw new NativeError({ code: 'EPROTO', errno: 71, syscall: 'clone3', pid, detail: `thread ${tid} not found in /proc/${hostPid}/task` });
    }
  } finally {
    onCreated(created);
  }
  return created;
}

/**
 * Checks the results of a new thread's own list (all but its final pause), packed at `at` in
 * `back`. Results are scanned as two u32 halves first: the bigints checkResults reads were
 * ~30,000 allocations per 10,000 threads, and a list almost never fails.
 */
function checkThreadList(back: Buffer, at: number, list: ThreadList, pid: number): void {
  const first = at + list.headerOffset + STUB_HEADER_SIZE + 64;
  const own = list.calls.length - 1;
  let plain = true;
  for (let k = 0; k < own && plain; k++) {
    const result = first + k * STUB_CMD_SIZE;
    // -4095..-1 (an errno) is a high half of all ones and a low half from 0xfffff001
    if (list.calls[k]!.expect !== undefined || (back.readUInt32LE(result + 4) === 0xffffffff && back.readUInt32LE(result) >= 0xfffff001)) plain = false;
  }
  if (plain) return;
  const results = list.calls.slice(0, own).map((_, k) => back.readBigInt64LE(first + k * STUB_CMD_SIZE));
  checkResults(list.calls.slice(0, own), results, own, pid);
}

interface PreparedRound {
  readonly round: Array<{ w: WantedThread; at: number; list: ThreadList }>;
  readonly data: Buffer;
  readonly commands: Array<{ nr: number; args: bigint[] | Array<number | bigint>; flags: number }>;
}

/**
 * Waits until every new thread of a round has run its list up to its final pause (the data
 * area is reused next round); resolves with the area as read last. The threads run untraced,
 * so this polls: they need only be scheduled once each.
 */
async function waitForLists(tracer: Tracer, hostPid: number, scratch: bigint, round: ReadonlyArray<{ at: number; list: ThreadList }>, areaStart: number, timeoutMs: number): Promise<Buffer> {
  const deadline = performance.now() + timeoutMs;
  if (round.length === 0) return Buffer.alloc(0);
  const length = round[round.length - 1]!.at + CLONE_SLOT + round[round.length - 1]!.list.length - areaStart;
  for (let from = 0; ; ) {
    const back = tracer.processVmRead(hostPid, scratch + BigInt(areaStart), length);
    while (from < round.length) {
      const { at, list } = round[from]!;
      const executed = Number(back.readBigUInt64LE(at + CLONE_SLOT + list.headerOffset - areaStart + 8));
      if (executed < list.calls.length - 1) break;
      from++;
    }
    if (from === round.length) return back;
    if (performance.now() > deadline) throw new NativeError({ code: 'ETIMEDOUT', errno: 110, syscall: 'clone3', pid: hostPid, detail: `${round.length - from} new threads did not run their lists` });
    await sleep(from === 0 ? 1 : 0);
  }
}

/** The slice of RemoteBatch a per-thread list builder needs (both kinds of list have it). */
export interface ThreadBatch {
  call(nr: number, args: readonly (number | bigint)[], options?: Omit<RemoteCall, 'nr' | 'args'>): number;
  put(bytes: Buffer): bigint;
  reserve(dataBytes: number, calls?: number): unknown;
}

const align8 = (n: number) => (n + 7) & ~7;

/** One thread's own command list in a block of the scratch area: [data][header][commands]. */
class ThreadList implements ThreadBatch {
  readonly calls: RemoteCall[] = [];
  private readonly chunks: Array<{ offset: number; bytes: Buffer }> = [];
  private dataEnd = 0;

  constructor(readonly base: bigint) {}

  reserve(): this {
    return this;
  }

  put(bytes: Buffer): bigint {
    const offset = align8(this.dataEnd);
    this.chunks.push({ offset, bytes });
    this.dataEnd = offset + bytes.length;
    return this.base + BigInt(offset);
  }

  call(nr: number, args: readonly (number | bigint)[], options: Omit<RemoteCall, 'nr' | 'args'> = {}): number {
    this.calls.push({ nr, args, ...options });
    return this.calls.length - 1;
  }

  get headerOffset(): number {
    return align8(this.dataEnd);
  }

  get length(): number {
    return this.headerOffset + STUB_HEADER_SIZE + this.calls.length * STUB_CMD_SIZE;
  }

  /** `flags`: every command's stub flags (default: stop on an unexpected error). */
  packInto(buf: Buffer, at: number, flags?: number): void {
    for (const c of this.chunks) c.bytes.copy(buf, at + c.offset);
    buf.writeUInt32LE(this.calls.length, at + this.headerOffset); // the header's u64 count (its high half is 0 in a zeroed buffer)
    const stops = (c: RemoteCall) => c.expect === undefined && !(c.tolerate && c.tolerate.length > 0);
    packCommandsInto(buf, at + this.headerOffset + STUB_HEADER_SIZE, this.calls, (c) => flags ?? (stops(c) ? STUB_STOP_ON_ERROR : 0));
  }
}

export interface ThreadWork {
  readonly tid: number;
  readonly hostTid: number;
  /** Adds the thread's commands (may be called twice: lists that do not fit are rebuilt elsewhere). */
  build(list: ThreadBatch): void;
  /**
   * Threads whose lists are the same but for where they sit (same creds, say) may share a key:
   * the list is then built once and copied, its data addresses moved to each thread's block.
   */
  readonly key?: string;
}

/** Data addresses of a list built for copying start here: no real argument is this large. */
const RELOCATABLE_BASE = 0x7ff0_0000_0000_0000n;

interface Template {
  list: ThreadList;
  packed: Buffer;
  /** Byte offsets in `packed` of the u64 arguments that are data addresses. */
  relocs: number[];
}

function template(w: ThreadWork): Template {
  const list = new ThreadList(RELOCATABLE_BASE);
  w.build(list);
  const packed = Buffer.alloc(list.length);
  list.packInto(packed, 0);
  const relocs: number[] = [];
  const first = list.headerOffset + STUB_HEADER_SIZE;
  list.calls.forEach((c, i) =>
    c.args.forEach((a, k) => {
      if (typeof a === 'bigint' && a >= RELOCATABLE_BASE) relocs.push(first + i * STUB_CMD_SIZE + 8 + k * 8);
    }),
  );
  return { list, packed, relocs };
}

/**
 * Runs a command list in each of many threads of one task, all at once: the lists share the
 * scratch area (from its list header on: the main thread runs nothing meanwhile), written and
 * read back in one transfer per round, one tracer operation per round. A failed command rejects
 * with a NativeError naming it and `pid`.
 */
export async function runThreadLists(tracer: Tracer, hostPid: number, scratch: bigint, pid: number, work: readonly ThreadWork[]): Promise<void> {
  const areaStart = STUB_HEADER_OFFSET;
  let round: Array<{ work: ThreadWork; list: ThreadList; at: number; copyOf?: Template }> = [];
  const templates = new Map<string, Template>();
  let end = areaStart;
  const flush = async () => {
    if (round.length === 0) return;
    const buf = Buffer.alloc(end - areaStart);
    for (const r of round) {
      if (!r.copyOf) {
        r.list.packInto(buf, r.at - areaStart);
        continue;
      }
      const at = r.at - areaStart;
      r.copyOf.packed.copy(buf, at);
      const delta = scratch + BigInt(r.at) - RELOCATABLE_BASE;
      for (const off of r.copyOf.relocs) buf.writeBigUInt64LE(buf.readBigUInt64LE(at + off) + delta, at + off);
    }
    tracer.processVmWrite(hostPid, scratch + BigInt(areaStart), buf);
    const items = round.map((r) => ({ tid: r.work.hostTid, header: scratch + BigInt(r.at + r.list.headerOffset) }));
    await tracer.runThreadLists(hostPid, scratch, items, 5000 + round.length);
    const back = tracer.processVmRead(hostPid, scratch + BigInt(areaStart), end - areaStart);
    for (const r of round) {
      const header = r.at - areaStart + r.list.headerOffset;
      const executed = Number(back.readBigUInt64LE(header + 8));
      const results = r.list.calls.map((_, i) => back.readBigInt64LE(header + STUB_HEADER_SIZE + i * STUB_CMD_SIZE + 64));
      try {
        checkResults(r.list.calls, results, Math.min(executed, results.length), pid);
      } catch (e) {
        if (!r.copyOf) throw e;
        const own = new ThreadList(scratch + BigInt(r.at)); // a copy's commands name the template's thread
        r.work.build(own);
        checkResults(own.calls, results, Math.min(executed, results.length), pid);
        throw e;
      }
    }
    round = [];
    end = areaStart;
  };
  for (const w of work) {
    let copyOf: Template | undefined;
    if (w.key !== undefined) {
      copyOf = templates.get(w.key);
      if (!copyOf) templates.set(w.key, (copyOf = template(w)));
    }
    const place = () => {
      if (!copyOf) {
        const list = new ThreadList(scratch + BigInt(end));
        w.build(list);
        return list;
      }
      return copyOf.list; // copied to this block by flush()
    };
    let list = place();
    if (end + list.length > STUB_SCRATCH_SIZE) {
      await flush();
      list = place();
      if (end + list.length > STUB_SCRATCH_SIZE) throw new RangeError(`thread ${w.tid}: its list outgrows the scratch area`);
    }
    round.push({ work: w, list, at: end, ...(copyOf ? { copyOf } : {}) });
    end = align8(end + list.length);
  }
  await flush();
}

/** Registers of a thread as user_regs_struct bytes (GPREG_FIELDS is the struct order). */
export function packRegs(regs: Regs): Buffer {
  const words = new BigUint64Array(GPREG_FIELDS.length);
  GPREG_FIELDS.forEach((f, i) => {
    words[i] = BigInt.asUintN(64, regs[f]);
  });
  return Buffer.from(words.buffer);
}

/** The per-thread kernel state a thread sets for itself, from its core image's thread_core/thread_info. */
export function addThreadState(
  batch: ThreadBatch,
  core: Record<string, unknown>,
  tid: number,
  options: { clearTidSet?: boolean; inheritedComm?: string } = {},
): void {
  const tc = (core['thread_core'] as Record<string, unknown> | undefined) ?? {};
  const info = (core['thread_info'] as Record<string, unknown> | undefined) ?? {};
  const rseq = tc['rseq_entry'] as Record<string, unknown> | undefined;
  if (rseq && BigInt((rseq['rseq_abi_pointer'] as bigint | number | undefined) ?? 0) !== 0n) {
    batch.call(SYS.rseq, [BigInt(rseq['rseq_abi_pointer'] as bigint), Number(rseq['rseq_abi_size']), 0, Number(rseq['signature'])], {
      what: `register rseq of thread ${tid}`,
    });
  }
  const clearTid = BigInt((info['clear_tid_addr'] as bigint | number | undefined) ?? 0);
  if (!options.clearTidSet) batch.call(SYS.set_tid_address, [clearTid], { what: `set clear_child_tid of thread ${tid}` });
  const rla = BigInt((tc['futex_rla'] as bigint | number | undefined) ?? 0);
  const rlaLen = Number(tc['futex_rla_len'] ?? 0);
  if (rlaLen > 0) batch.call(SYS.set_robust_list, [rla, rlaLen], { what: `set the robust list of thread ${tid}` });
  if (typeof tc['comm'] === 'string' && tc['comm'] && tc['comm'] !== options.inheritedComm) {
    batch.reserve(16, 1);
    batch.call(SYS.prctl, [PR_SET_NAME, batch.put(commBytes(tc['comm'])), 0, 0, 0], { what: `set the name of thread ${tid}` });
  }
  const sas = tc['sas'] as Record<string, unknown> | undefined;
  if (sas && Number(sas['ss_flags'] ?? SS_DISABLE) !== SS_DISABLE) {
    const ss = Buffer.alloc(24);
    ss.writeBigUInt64LE(BigInt((sas['ss_sp'] as bigint | number | undefined) ?? 0), 0);
    ss.writeInt32LE(Number(sas['ss_flags'] ?? 0), 8);
    ss.writeBigUInt64LE(BigInt((sas['ss_size'] as bigint | number | undefined) ?? 0), 16);
    batch.reserve(24, 1);
    batch.call(SYS.sigaltstack, [batch.put(ss), 0], { what: `set the alternate signal stack of thread ${tid}` });
  }
}
