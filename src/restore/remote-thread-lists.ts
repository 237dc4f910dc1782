// Command lists run by threads of a task, each from its own block of the scratch area: the
// ThreadList a thread's list is built in (used by createThreads for new threads' start-up lists,
// remote-threads.ts), and runThreadLists, which has many stopped threads run theirs at once
// (creds), copying one list to every thread whose list differs only in where it sits.
import { packCommandsInto, STUB_CMD_SIZE, STUB_HEADER_OFFSET, STUB_HEADER_SIZE, STUB_SCRATCH_SIZE } from '../actors/stub.js';
import type { Tracer } from '../actors/tracer.js';
import { checkResults, flagsOf, type RemoteCall } from './remote.js';

/** The slice of RemoteBatch a per-thread list builder needs (both kinds of list have it). */
export interface ThreadBatch {
  call(nr: number, args: readonly (number | bigint)[], options?: Omit<RemoteCall, 'nr' | 'args'>): number;
  put(bytes: Buffer): bigint;
  reserve(dataBytes: number, calls?: number): unknown;
}

export const align8 = (n: number) => (n + 7) & ~7;

/** One thread's own command list in a block of the scratch area: [data][header][commands]. */
export class ThreadList implements ThreadBatch {
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
    packCommandsInto(buf, at + this.headerOffset + STUB_HEADER_SIZE, this.calls, (c) => flags ?? flagsOf(c));
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
