// The builder of remote-syscall batches: commands for the stub plus the data they point to
// (iovec arrays, structs like prctl_mm_map, strings) laid out in the scratch area's data part.
// A batch larger than one stub list (4096 commands, ~732 KiB of data) is split into segments
// that run one after another. Every command carries the name of its syscall and what it is
// for, so a failed one becomes a NativeError naming syscall, errno name, task and purpose.
import { NativeError, StageError } from '../errors.js';
import { STUB_DATA_OFFSET, STUB_MAX_COMMANDS, STUB_SCRATCH_SIZE, STUB_STOP_ON_ERROR } from '../actors/stub.js';
import { errnoName, isSyscallError, signed, SYSCALL_NAMES } from './remote-sys.js';
import type { RestoreCtx } from './context.js';

type Int = number | bigint;

export interface RemoteCall {
  readonly nr: number;
  readonly args: readonly Int[];
  /** What the command is for, for errors ("map VMA 0x7f..000-0x7f..000"). */
  readonly what?: string;
  /** Errnos that are not failures here (the command then does not stop the list). */
  readonly tolerate?: readonly number[];
  /** The exact result the command must return (a preadv's byte count); anything else fails. */
  readonly expect?: bigint;
  /** The resource kind that added the command, in a batch several kinds filled (see handOn). */
  readonly owner?: string;
}

interface Segment {
  readonly calls: RemoteCall[];
  /** Data chunks with their offsets inside the data area. */
  readonly data: Array<{ offset: number; bytes: Buffer }>;
  dataEnd: number;
}

/** The slice of a tracer a batch needs (the real one is src/actors/tracer.ts). */
export interface BatchTracer {
  runBatch(
    pid: number,
    batch: {
      scratch: bigint;
      commands: ReadonlyArray<{ nr: number; args?: Int[]; flags?: number }>;
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

  constructor(scratch: bigint) {
    this.scratch = scratch;
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
    if (align8(seg.dataEnd) + dataBytes > DATA_CAPACITY || seg.calls.length + calls > STUB_MAX_COMMANDS) {
      this.segments.push(emptySegment());
    }
    return this;
  }

  /** Copies bytes into the data area (8-byte aligned) and returns their address in the task. */
  put(bytes: Buffer): bigint {
    this.reserve(bytes.length, 0);
    const seg = this.current;
    const offset = align8(seg.dataEnd);
    seg.data.push({ offset, bytes });
    seg.dataEnd = offset + bytes.length;
    return this.scratch + BigInt(STUB_DATA_OFFSET + offset);
  }

  /** A NUL-terminated string in the data area. */
  putString(text: string): bigint {
    return this.put(Buffer.from(`${text}\0`, 'utf8'));
  }

  /** Adds a command; returns its index among all commands of the batch. */
  call(nr: number, args: readonly Int[], options: Omit<RemoteCall, 'nr' | 'args'> = {}): number {
    this.reserve(0, 1);
    this.current.calls.push(this.owner === undefined ? { nr, args, ...options } : { nr, args, ...options, owner: this.owner });
    return this.size - 1;
  }

  get size(): number {
    return this.segments.reduce((n, s) => n + s.calls.length, 0);
  }

  /** The segments as the stub will see them: packed commands and one data buffer each (for tests). */
  layout(): Array<{ commands: Array<{ nr: number; args: Int[]; flags: number }>; data: Buffer }> {
    return this.segments.filter((s) => s.calls.length > 0).map((s) => ({ commands: s.calls.map(toStub), data: dataBuffer(s) }));
  }

  /**
   * Runs every segment in the task `hostPid` (stopped, with the stub at `scratch`). Resolves with
   * every command's result; a failed command rejects with a NativeError naming it and `pid`.
   */
  async run(tracer: BatchTracer, hostPid: number, options: { pid?: number; timeoutMs?: number } = {}): Promise<bigint[]> {
    const pid = options.pid ?? hostPid;
    const out: bigint[] = [];
    for (const seg of this.segments) {
      if (seg.calls.length === 0) continue;
      const data = dataBuffer(seg);
      const got = await tracer.runBatch(hostPid, {
        scratch: this.scratch,
        commands: seg.calls.map(toStub),
        ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}),
        ...(data.length > 0 ? { data: { addr: this.scratch + BigInt(STUB_DATA_OFFSET), bytes: data } } : {}),
      });
      const failed = firstFailure(seg.calls, got.results, got.executed, pid);
      if (failed) {
        this.failedOwner = seg.calls[failed.index]?.owner;
        throw failed.error;
      }
      out.push(...got.results);
    }
    return out;
  }
}

function emptySegment(): Segment {
  return { calls: [], data: [], dataEnd: 0 };
}

function align8(n: number): number {
  return (n + 7) & ~7;
}

function toStub(c: RemoteCall): { nr: number; args: Int[]; flags: number } {
  const stops = c.expect === undefined && !(c.tolerate && c.tolerate.length > 0);
  return { nr: c.nr, args: [...c.args], flags: stops ? STUB_STOP_ON_ERROR : 0 };
}

function dataBuffer(seg: Segment): Buffer {
  const buf = Buffer.alloc(seg.dataEnd);
  for (const chunk of seg.data) chunk.bytes.copy(buf, chunk.offset);
  return buf;
}

/** The failure of one command as a NativeError (exported for tests). */
export function commandError(c: RemoteCall, result: bigint, pid: number): NativeError {
  const syscall = SYSCALL_NAMES.get(c.nr) ?? `syscall ${c.nr}`;
  const r = signed(result);
  if (isSyscallError(r)) {
    const errno = Number(-r);
    return new NativeError({ code: errnoName(errno), errno, syscall, pid, ...(c.what ? { detail: c.what } : {}) });
  }
  const detail = `returned ${r}, expected ${c.expect}${c.what ? `: ${c.what}` : ''}`;
  return new NativeError({ code: 'EIO', errno: 5, syscall, pid, detail });
}

/** Throws for the first command whose result is a failure it does not tolerate. */
export function checkResults(calls: readonly RemoteCall[], results: readonly bigint[], executed: number, pid: number): void {
  const failed = firstFailure(calls, results, executed, pid);
  if (failed) throw failed.error;
}

/** The first command whose result is a failure it does not tolerate, with its index. */
function firstFailure(calls: readonly RemoteCall[], results: readonly bigint[], executed: number, pid: number): { index: number; error: NativeError } | undefined {
  for (let i = 0; i < executed; i++) {
    const c = calls[i]!;
    const r = signed(results[i]!);
    if (c.expect !== undefined) {
      if (r !== c.expect) return { index: i, error: commandError(c, r, pid) };
      continue;
    }
    if (isSyscallError(r) && !(c.tolerate ?? []).includes(Number(-r))) return { index: i, error: commandError(c, r, pid) };
  }
  if (executed < calls.length) {
    // The stub stopped early without a failed command to show: it should never happen.
    const error = new NativeError({ code: 'EPROTO', errno: 71, syscall: 'runBatch', pid, detail: `${executed} of ${calls.length} commands ran` });
    return { index: executed, error };
  }
  return undefined;
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
