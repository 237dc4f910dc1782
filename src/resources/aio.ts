// Kernel AIO contexts (io_setup). The memory kind maps each ring's VMA as private anonymous memory
// and fills it with the dumped ring; here, once the address space is in place, the task makes a
// new context of the same size, whose kernel-side head and tail are then brought to the dumped
// ones: writes of one byte to /dev/null complete at once, each moving the tail by one event, and
// io_getevents moves the head (the kernel keeps its own copy of the tail, which only completions
// move). Then crr copies the dumped events into the new ring and mremap puts it over the dumped
// one, at the address the task knows the context by. As CRIU does, but with io_getevents where
// CRIU writes the head.
import { ImageError, StageError } from '../errors.js';
import { AIO_HEADER_BYTES, aioEventsIn, aioRingHeader, aioRingIsSane, type AioRingHeader } from '../images/aio-ring.js';
import { hostPidOf, type RestoreCtx, type TaskImageSet } from '../restore/context.js';
import { RemoteBatch } from '../restore/remote.js';
import { O_CLOEXEC, signed, SYS } from '../restore/remote-sys.js';
import { hex, VMA_AREA_AIORING, vmaOf } from '../restore/remote-vma.js';
import { scratchOf } from './memory.js';
import type { PlanSource, ResourceKind, TaskPlan } from './types.js';

const PAGE = 4096;
const AT_FDCWD = -100;
const O_WRONLY = 1;
const IOCB_CMD_PWRITE = 1;
const IOCB_BYTES = 64;
const MREMAP_MAYMOVE = 1;
const MREMAP_FIXED = 2;
const EAGAIN = 11;
/** Requests submitted or events reaped per call at most: their iocb pointers and events go in the batch's data area. */
const MOST_PER_CALL = 8192;

export interface AioRing {
  /** The ring's address: the context id the task passes to io_submit and friends. */
  readonly addr: bigint;
  readonly length: number;
  /** What io_setup is asked for (mm.img's nr_req). */
  readonly nrReq: number;
}

/** The task's AIO rings (mm.img's aios), each on an AIORING VMA of its length: else an ImageError. */
export function aioRingsOf(file: string, mm: Record<string, unknown> | undefined): AioRing[] {
  const vmas = ((mm?.['vmas'] as Array<Record<string, unknown>> | undefined) ?? []).map(vmaOf).filter((v) => v.status & VMA_AREA_AIORING);
  const unclaimed = new Map(vmas.map((v) => [v.start, v]));
  const rings = ((mm?.['aios'] as Array<Record<string, unknown>> | undefined) ?? []).map((e) => {
    const addr = BigInt(e['id'] as bigint | number);
    const length = Number(e['ring_len'] ?? 0);
    const nrReq = Number(e['nr_req'] ?? 0);
    const vma = unclaimed.get(addr);
    if (!vma) throw new ImageError(file, 0, `an AIORING VMA at AIO ring ${hex(addr)}`, 'none there, or two rings on it');
    if (BigInt(length) !== vma.end - vma.start || length % PAGE !== 0) {
      throw new ImageError(file, 0, `AIO ring ${hex(addr)}'s ring_len to be its VMA's length in whole pages`, `${length}, VMA ${vma.end - vma.start}`);
    }
    if (nrReq < 1 || nrReq >= aioEventsIn(length)) throw new ImageError(file, 0, `AIO ring ${hex(addr)}'s nr_req between 1 and its events`, String(nrReq));
    unclaimed.delete(addr);
    return { addr, length, nrReq };
  });
  const orphan = unclaimed.values().next().value;
  if (orphan) throw new ImageError(file, 0, `an aios entry for the AIORING VMA at ${hex(orphan.start)}`);
  return rings;
}

function fail(ctx: RestoreCtx, message: string): never {
  throw new StageError({ stage: ctx.stage, pid: ctx.pid, resource: ctx.resource, message });
}

/** A ring as the images left it, read from the task where the memory kind put it. */
function dumpedHeader(ctx: RestoreCtx, hostPid: number, ring: AioRing): AioRingHeader {
  const bytes = ctx.tracer.processVmRead(hostPid, ring.addr, AIO_HEADER_BYTES);
  if (!aioRingIsSane(bytes, ring.length)) {
    const h = aioRingHeader(bytes);
    fail(ctx, `AIO ring ${hex(ring.addr)}: its dumped pages do not hold a ring of ${ring.length} bytes (magic ${h.magic.toString(16)}, ${h.nr} events, head ${h.head}, tail ${h.tail})`);
  }
  return aioRingHeader(bytes);
}

/**
 * Completes and reaps requests on the new context `id` until its tail is the dumped tail and its
 * head the dumped head: `count` completions in all (a full turn first when the tail is behind the
 * head, so the kernel's count of completed events is right), `head` of them reaped, never more
 * than nr - 1 waiting. The kernel hands out request slots in per-CPU batches, so a submit may take
 * fewer than asked: each round trip goes on from what the last one did.
 */
async function moveHeadAndTail(ctx: RestoreCtx, hostPid: number, id: bigint, devNull: number, dumped: AioRingHeader): Promise<number> {
  const { nr, head, tail } = dumped;
  const count = tail >= head ? tail : nr + tail;
  let submitted = 0;
  let waiting = 0;
  let toReap = head;
  let roundTrips = 0;
  while (submitted < count || toReap > 0) {
    const batch = new RemoteBatch(scratchOf(ctx));
    const submit = Math.min(count - submitted, nr - 1 - waiting, MOST_PER_CALL);
    let submitAt = -1;
    if (submit > 0) {
      batch.reserve(IOCB_BYTES + 8 + 8 * submit, 1);
      const byte = batch.put(Buffer.alloc(8));
      const iocb = Buffer.alloc(IOCB_BYTES);
      iocb.writeUInt16LE(IOCB_CMD_PWRITE, 16);
      iocb.writeUInt32LE(devNull, 20);
      iocb.writeBigUInt64LE(byte, 24);
      iocb.writeBigUInt64LE(1n, 32);
      const iocbAt = batch.put(iocb);
      const pointers = Buffer.alloc(8 * submit);
      for (let i = 0; i < submit; i++) pointers.writeBigUInt64LE(iocbAt, 8 * i);
      submitAt = batch.call(SYS.io_submit, [id, submit, batch.put(pointers)], { what: `complete ${submit} writes to /dev/null on AIO ring ${hex(id)}`, tolerate: [EAGAIN] });
    }
    const reap = Math.min(toReap, waiting + submit, MOST_PER_CALL);
    let reapAt = -1;
    if (reap > 0) {
      batch.reserve(32 * reap + 16, 1);
      const events = batch.put(Buffer.alloc(32 * reap));
      const noWait = batch.put(Buffer.alloc(16));
      reapAt = batch.call(SYS.io_getevents, [id, 0, reap, events, noWait], { what: `reap ${reap} events of AIO ring ${hex(id)}` });
    }
    const results = (await batch.run(ctx.tracer, hostPid, { pid: ctx.pid })).map(signed);
    roundTrips++;
    const took = submitAt >= 0 && results[submitAt]! > 0n ? Number(results[submitAt]) : 0;
    const reaped = reapAt >= 0 ? Number(results[reapAt]) : 0;
    if (took === 0 && reaped === 0) {
      fail(ctx, `AIO ring ${hex(id)}: the kernel takes no more requests at ${submitted} of ${count} completions and ${head - toReap} of ${head} reaped`);
    }
    submitted += took;
    waiting += took - reaped;
    toReap -= reaped;
  }
  return roundTrips;
}

export const aio: ResourceKind<RestoreCtx> = {
  name: 'aio',
  stage: 'memory',
  images: ['mm-*'],
  after: ['main-thread'],
  appliesTo: (task: TaskPlan, source?: PlanSource) => {
    if (task.zombie) return false;
    const mm = (source?.images.get(task.pid) as TaskImageSet | undefined)?.mm;
    return mm === undefined || ((mm['aios'] as unknown[] | undefined)?.length ?? 0) > 0;
  },
  describe: () => ['AIO contexts: io_setup, head and tail brought to the dumped ones, the events copied, the ring moved to its address'],
  async restore(ctx) {
    const rings = aioRingsOf(ctx.checkpoint.path(`mm-${ctx.pid}.img`), ctx.images.mm);
    if (rings.length === 0) return;
    const hostPid = hostPidOf(ctx);
    const start = ctx.now();
    const dumped = rings.map((ring) => dumpedHeader(ctx, hostPid, ring));

    const setup = new RemoteBatch(scratchOf(ctx));
    const idSlots = rings.map((ring) => {
      const slot = setup.put(Buffer.alloc(8));
      setup.call(SYS.io_setup, [ring.nrReq, slot], { what: `io_setup(${ring.nrReq}) for AIO ring ${hex(ring.addr)}` });
      return slot;
    });
    const openAt = setup.call(SYS.openat, [AT_FDCWD, setup.putString('/dev/null'), O_WRONLY | O_CLOEXEC], { what: 'open /dev/null to complete AIO requests' });
    const devNull = Number((await setup.run(ctx.tracer, hostPid, { pid: ctx.pid }))[openAt]);
    // Read before the next batch, whose data takes the same place in the scratch area.
    const ids = idSlots.map((slot) => ctx.tracer.processVmRead(hostPid, slot, 8).readBigUInt64LE(0));
    let syscalls = setup.size;

    const place = new RemoteBatch(scratchOf(ctx));
    for (const [i, ring] of rings.entries()) {
      const id = ids[i]!;
      const made = aioRingHeader(ctx.tracer.processVmRead(hostPid, id, AIO_HEADER_BYTES));
      if (made.nr !== dumped[i]!.nr) {
        fail(ctx, `AIO ring ${hex(ring.addr)}: io_setup(${ring.nrReq}) made a ring of ${made.nr} events, the image's has ${dumped[i]!.nr} (the kernel sizes rings by the number of possible CPUs)`);
      }
      syscalls += 2 * (await moveHeadAndTail(ctx, hostPid, id, devNull, dumped[i]!));
      const events = ctx.tracer.processVmRead(hostPid, ring.addr + BigInt(AIO_HEADER_BYTES), ring.length - AIO_HEADER_BYTES);
      ctx.tracer.processVmWrite(hostPid, id + BigInt(AIO_HEADER_BYTES), events);
      place.call(SYS.mremap, [id, ring.length, ring.length, MREMAP_MAYMOVE | MREMAP_FIXED, ring.addr], { what: `move AIO ring ${hex(id)} to ${hex(ring.addr)}`, expect: ring.addr });
    }
    place.call(SYS.close, [devNull], { what: 'close /dev/null' });
    await place.run(ctx.tracer, hostPid, { pid: ctx.pid });
    syscalls += place.size;
    ctx.record({ name: 'aio rings', start, end: ctx.now(), syscalls });
  },
};
