// The builder of remote-syscall batches: commands for the stub plus the data they point to
// (iovec arrays, structs like prctl_mm_map, strings) laid out in the scratch area's data part.
// A batch larger than one stub list (4096 commands, ~732 KiB of data) is split into segments
// that run one after another. Every command carries the name of its syscall and what it is
// for, so a failed one becomes a NativeError naming syscall, errno name, task and purpose.
// Commands are packed into the stub's bytes as they are added (a failed one's args are read
// back from there), and `what` may be a function of the args formatted only on failure: a
// tree-1000 restore adds ~150,000 commands, and per-command objects and strings kept until the
// batch ran were a large share of its main thread's garbage and scavenge work.
import { NativeError, StageError } from '../errors.js';
import { packCommand, STUB_CMD_SIZE, STUB_DATA_OFFSET, STUB_MAX_COMMANDS, STUB_SCRATCH_SIZE, STUB_STOP_ON_ERROR } from '../actors/stub.js';
import { errnoName, isSyscallError, signed, SYSCALL_NAMES } from './remote-sys.js';
import type { RestoreCtx } from './context.js';

type Int = number | bigint;

/**
 * What a command is for, for errors ("map VMA 0x7f..000-0x7f..000"): a string, or a function
 * of the command's args that makes it only when the command fails (a constant function per
 * call site costs nothing per command).
 */
export type What = string | ((args: readonly Int[]) => string);

/** A command's options. RemoteBatch keeps the object given (options may be shared constants). */
export interface CallOptions {
  readonly what?: What;
  /** Errnos that are not failures here (the command then does not stop the list). */
  readonly tolerate?: readonly number[];
  /** The exact result the command must return (a preadv's byte count); anything else fails. */
  readonly expect?: bigint;
  /** The resource kind that added the command, in a batch several kinds filled (see handOn). */
  readonly owner?: string;
}

export interface RemoteCall extends CallOptions {
  readonly nr: number;
  readonly args: readonly Int[];
}

interface Segment {
  /** The commands as crr_stub_cmd structs; grows by doubling. */
  list: Buffer;
  view: DataView;
  count: number;
  /** Each command's options, by index (often one shared constant object). */
  readonly options: Array<CallOptions | undefined>;
  /** The owner of the commands from index `from` on, for each change of owner. */
  readonly owners: Array<{ readonly from: number; readonly owner: string | undefined }>;
  /** The data area's bytes as far as used (`dataEnd`), copied in by put; grows by doubling. */
  data: Buffer;
  dataEnd: number;
}

/** The slice of a tracer a batch needs (the real one is src/actors/tracer.ts). */
export interface BatchTracer {
  runBatch(
    pid: number,
    batch: {
      scratch: bigint;
      /** The commands packed as crr_stub_cmd structs (see packCommand). */
      list: Buffer;
      timeoutMs?: number;
      /** Written by the tracer thread before the commands run. */
      data?: { addr: bigint; bytes: Buffer };
    },
  ): Promise<{ results: bigint[]; executed: number }>;
}

export const DATA_CAPACITY = STUB_SCRATCH_SIZE - STUB_DATA_OFFSET;

export class RemoteBatch {
  readonly scratch: bigint;
  /** Set on the commands added from now on: the kind filling a batch handed on to it. */
  owner: string | undefined;
  /** The owner of the command that failed the last run, if it had one. */
  failedOwner: string | undefined;
  private readonly segments: Segment[] = [];
  private count = 0;

  /** Where the data area starts in the task. */
  private readonly dataAddr: bigint;

  constructor(scratch: bigint) {
    this.scratch = scratch;
    this.dataAddr = scratch + BigInt(STUB_DATA_OFFSET);
    this.segments.push(emptySegment());
  }

  private get current(): Segment {
    return this.segments[this.segments.length - 1]!;
  }

  /**
   * Makes room for `dataBytes` of data and `calls` commands in the current segment, starting a
   * new one when they do not fit. Call it before `put`s whose addresses one command will use.
   */
  reserve(dataBytes: number, calls = 1): this {
    if (dataBytes > DATA_CAPACITY) throw new RangeError(`${dataBytes} bytes of batch data exceed the scratch data area (${DATA_CAPACITY})`);
    const seg = this.current;
    if (align8(seg.dataEnd) + dataBytes > DATA_CAPACITY || seg.count + calls > STUB_MAX_COMMANDS) {
      this.segments.push(emptySegment());
    }
    return this;
  }

  /**
   * Copies bytes into the data area (8-byte aligned) now, and returns their address in the task
   * (later changes to `bytes` do not reach the batch).
   */
  put(bytes: Buffer): bigint {
    this.reserve(bytes.length, 0);
    const seg = this.current;
    const offset = align8(seg.dataEnd);
    const end = offset + bytes.length;
    if (end > seg.data.length) growData(seg, end);
    bytes.copy(seg.data, offset);
    seg.dataEnd = end;
    return this.dataAddr + BigInt(offset);
  }

  /** A NUL-terminated string in the data area. */
  putString(text: string): bigint {
    return this.put(Buffer.from(`${text}\0`, 'utf8'));
  }

  /**
   * Adds a command; returns its index among all commands of the batch. `args` are packed at
   * once (the array may be reused for the next command); `options` are kept, not copied: do not
   * change them afterwards (constant ones may be shared by commands).
   */
  call(nr: number, args: readonly Int[], options?: CallOptions): number {
    if (this.current.count >= STUB_MAX_COMMANDS) this.segments.push(emptySegment());
    const seg = this.current;
    if ((seg.count + 1) * STUB_CMD_SIZE > seg.list.length) grow(seg);
    packCommand(seg.view, seg.count * STUB_CMD_SIZE, nr, args, flagsOf(options), this.count);
    seg.options.push(options);
    const owner = this.owner ?? options?.owner;
    if (seg.owners[seg.owners.length - 1]?.owner !== owner) seg.owners.push({ from: seg.count, owner });
    seg.count += 1;
    return this.count++;
  }

  get size(): number {
    return this.count;
  }

  /** The segments as the stub will see them: their commands and one data buffer each (for tests). */
  layout(): Array<{ commands: Array<{ nr: number; args: Int[]; flags: number }>; data: Buffer }> {
    return this.segments
      .filter((s) => s.count > 0)
      .map((s) => ({
        commands: Array.from({ length: s.count }, (_, i) => ({ nr: nrAt(s, i), args: argsAt(s, i), flags: s.view.getUint32(i * STUB_CMD_SIZE + 56, true) })),
        data: dataBuffer(s),
      }));
  }

  /**
   * Runs every segment in the task `hostPid` (stopped, with the stub at `scratch`). Resolves with
   * every command's result; a failed command rejects with a NativeError naming it and `pid`.
   */
  async run(tracer: BatchTracer, hostPid: number, options?: { pid?: number; timeoutMs?: number }): Promise<bigint[]> {
    const pid = options?.pid ?? hostPid;
    let out: bigint[] | undefined;
    for (const seg of this.segments) {
      if (seg.count === 0) continue;
      const data = dataBuffer(seg);
      // The whole buffer when full (a copy is made by the addon either way).
      const list = seg.count * STUB_CMD_SIZE === seg.list.length ? seg.list : seg.list.subarray(0, seg.count * STUB_CMD_SIZE);
      const batch: Parameters<BatchTracer['runBatch']>[1] = { scratch: this.scratch, list };
      if (options?.timeoutMs !== undefined) batch.timeoutMs = options.timeoutMs;
      if (data.length > 0) batch.data = { addr: this.dataAddr, bytes: data };
      const got = await tracer.runBatch(hostPid, batch);
      const failed = firstFailureIn(seg.count, seg.options, got.results, got.executed);
      if (failed !== undefined) {
        this.failedOwner = ownerAt(seg, failed);
        const call = { ...seg.options[failed], nr: nrAt(seg, failed), args: argsAt(seg, failed) };
        throw failureError(call, failed < got.executed ? got.results[failed]! : undefined, seg.count, got.executed, pid);
      }
      // One segment (the usual case): its results are the batch's, without a copy.
      if (out === undefined) out = got.results;
      else for (const r of got.results) out.push(r);
    }
    return out ?? [];
  }
}

function emptySegment(): Segment {
  const list = Buffer.allocUnsafe(FIRST_COMMANDS * STUB_CMD_SIZE);
  return { list, view: new DataView(list.buffer, list.byteOffset, list.byteLength), count: 0, options: [], owners: [], data: NO_DATA, dataEnd: 0 };
}

/** Commands a segment has room for at first (most batches are a task's few dozen commands). */
const FIRST_COMMANDS = 32;

const NO_DATA = Buffer.alloc(0);

/** Zero-filled, so the alignment gaps between chunks are zeros. */
function growData(seg: Segment, atLeast: number): void {
  const data = Buffer.alloc(Math.min(Math.max(atLeast, seg.data.length * 2, 4096), DATA_CAPACITY));
  seg.data.copy(data, 0, 0, seg.dataEnd);
  seg.data = data;
}

function grow(seg: Segment): void {
  const list = Buffer.allocUnsafe(Math.min(seg.list.length * 2, STUB_MAX_COMMANDS * STUB_CMD_SIZE));
  seg.list.copy(list, 0, 0, seg.count * STUB_CMD_SIZE);
  seg.list = list;
  seg.view = new DataView(list.buffer, list.byteOffset, list.byteLength);
}

function ownerAt(seg: Segment, i: number): string | undefined {
  let owner: string | undefined;
  for (const run of seg.owners) if (run.from <= i) owner = run.owner;
  return owner;
}

function nrAt(seg: Segment, i: number): number {
  return seg.view.getUint32(i * STUB_CMD_SIZE, true);
}

/** A packed command's six args, read back as signed 64-bit values (for errors and tests). */
function argsAt(seg: Segment, i: number): bigint[] {
  return Array.from({ length: 6 }, (_, a) => seg.view.getBigInt64(i * STUB_CMD_SIZE + 8 + a * 8, true));
}

/** A command's stub flags: it stops the list on an error unless it tolerates some or expects an exact result. */
export function flagsOf(options: CallOptions | undefined): number {
  if (options === undefined) return STUB_STOP_ON_ERROR;
  const stops = options.expect === undefined && !(options.tolerate && options.tolerate.length > 0);
  return stops ? STUB_STOP_ON_ERROR : 0;
}

function align8(n: number): number {
  return (n + 7) & ~7;
}

/** The segment's data as the stub will see it. */
function dataBuffer(seg: Segment): Buffer {
  return seg.dataEnd === seg.data.length ? seg.data : seg.data.subarray(0, seg.dataEnd);
}

/** The failure of one command as a NativeError (exported for tests). */
export function commandError(c: RemoteCall, result: bigint, pid: number): NativeError {
  const syscall = SYSCALL_NAMES.get(c.nr) ?? `syscall ${c.nr}`;
  const what = typeof c.what === 'function' ? c.what(c.args) : c.what;
  const r = signed(result);
  if (isSyscallError(r)) {
    const errno = Number(-r);
    return new NativeError({ code: errnoName(errno), errno, syscall, pid, ...(what ? { detail: what } : {}) });
  }
  const detail = `returned ${r}, expected ${c.expect}${what ? `: ${what}` : ''}`;
  return new NativeError({ code: 'EIO', errno: 5, syscall, pid, detail });
}

/** Throws for the first command whose result is a failure it does not tolerate. */
export function checkResults(calls: readonly RemoteCall[], results: readonly bigint[], executed: number, pid: number): void {
  const failed = firstFailureIn(calls.length, calls, results, executed);
  if (failed !== undefined) throw failureError(calls[failed]!, failed < executed ? results[failed]! : undefined, calls.length, executed, pid);
}

/**
 * The index of the first command whose result is a failure it does not tolerate, or of the
 * first that did not run (`executed` short of `count`); undefined when all is well.
 */
function firstFailureIn(count: number, options: ReadonlyArray<CallOptions | undefined>, results: readonly bigint[], executed: number): number | undefined {
  for (let i = 0; i < executed; i++) {
    const c = options[i];
    const r = signed(results[i]!);
    if (c?.expect !== undefined) {
      if (r !== c.expect) return i;
      continue;
    }
    if (isSyscallError(r) && !(c?.tolerate ?? []).includes(Number(-r))) return i;
  }
  return executed < count ? executed : undefined;
}

/** The error for firstFailureIn's index: the command's own, or the stub's early stop. */
function failureError(c: RemoteCall, result: bigint | undefined, count: number, executed: number, pid: number): NativeError {
  if (result !== undefined) return commandError(c, result, pid);
  // The stub stopped early without a failed command to show: it should never happen.
  return new NativeError({ code: 'EPROTO', errno: 71, syscall: 'runBatch', pid, detail: `${executed} of ${count} commands ran` });
}

/** A batch one kind filled and handed on to the kind after it, which adds to it and runs it. */
export interface HandedBatch {
  readonly batch: RemoteBatch;
  /** The longest timeout any of its kinds asked for. */
  readonly timeoutMs: number | undefined;
  /** When the first kind started filling it (for the span of the run). */
  readonly start: number;
  /** The span names of the kinds' parts, in order ("address space", "mm fields"). */
  readonly parts: readonly string[];
}

/**
 * Ends one kind's part of a remote batch: when `next` is the kind that acts right after this one
 * for this task in this stage, the batch waits for it (it adds its own commands and runs both
 * in one tracer round trip: each round trip is two thread wake-ups, ~0.3-0.6 ms on this loaded
 * 2-core VM); otherwise (a kinds list without `next`, a task it skips) the batch runs now.
 * `next` must start with takeHanded() so a handed batch always runs.
 */
export async function runOrHandOn(ctx: RestoreCtx, handed: HandedBatch, next: string, hostPid: number): Promise<boolean> {
  const names = ctx.plan.perTask?.get(ctx.pid)?.get(ctx.stage) ?? [];
  const here = names.indexOf(ctx.resource);
  if (here >= 0 && names[here + 1] === next) {
    ctx.runtime.handed = handed;
    return false;
  }
  await runHanded(ctx, handed, hostPid);
  return true;
}

/**
 * The batch the kind before this one handed on (its commands first), or a new one, with this
 * kind's part (`part`, its span name) and timeout added.
 */
export function takeHanded(ctx: RestoreCtx, scratch: bigint, part: string, start: number, timeoutMs?: number): HandedBatch {
  const handed = ctx.runtime.handed;
  ctx.runtime.handed = undefined;
  const batch = handed?.batch ?? new RemoteBatch(scratch);
  batch.owner = ctx.resource;
  const longest = handed?.timeoutMs === undefined ? timeoutMs : timeoutMs === undefined ? handed.timeoutMs : Math.max(timeoutMs, handed.timeoutMs);
  return { batch, timeoutMs: longest, start: handed?.start ?? start, parts: [...(handed?.parts ?? []), part] };
}

/** A batch's span name: its kinds' parts ("address space + mm fields + sigactions"). */
export function handedName(handed: HandedBatch): string {
  return handed.parts.join(' + ');
}

/**
 * Runs a batch that may hold other kinds' commands: a failed one fails the restore under the
 * kind that added it, not the one that happened to run the batch.
 */
export async function runHanded(ctx: RestoreCtx, handed: HandedBatch, hostPid: number): Promise<void> {
  const { batch } = handed;
  try {
    await batch.run(ctx.tracer, hostPid, { pid: ctx.pid, ...(handed.timeoutMs !== undefined ? { timeoutMs: handed.timeoutMs } : {}) });
  } catch (err) {
    const owner = batch.failedOwner;
    if (owner === undefined || owner === ctx.resource || !(err instanceof NativeError)) throw err;
    throw new StageError({ stage: ctx.stage, pid: ctx.pid, resource: owner, syscall: err.syscall, errno: err.errno, code: err.code, message: err.message, cause: err });
  }
}
