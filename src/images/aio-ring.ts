// The kernel AIO ring's layout (struct aio_ring, fs/aio.c) as the dumper and the restorer read it:
// a 32-byte header (id, nr, head, tail, magic, compat and incompat features, header length)
// followed by `nr` 32-byte io_events, in whole pages mapped into the task at its context id.

export const AIO_HEADER_BYTES = 32;
export const AIO_EVENT_BYTES = 32;
export const AIO_RING_MAGIC = 0xa10a10a1;
const AIO_RING_COMPAT_FEATURES = 1;
const AIO_RING_INCOMPAT_FEATURES = 0;

export interface AioRingHeader {
  readonly nr: number;
  readonly head: number;
  readonly tail: number;
  readonly magic: number;
}

export function aioRingHeader(bytes: Buffer): AioRingHeader {
  return { nr: bytes.readUInt32LE(4), head: bytes.readUInt32LE(8), tail: bytes.readUInt32LE(12), magic: bytes.readUInt32LE(16) };
}

/** The events a ring of `length` bytes holds. */
export function aioEventsIn(length: number): number {
  return Math.floor((length - AIO_HEADER_BYTES) / AIO_EVENT_BYTES);
}

/**
 * Whether a header is one the kernel made for a ring of `length` bytes (CRIU's checks, plus head
 * and tail inside the ring): a task may write its ring, and a ring it wrote has no known state.
 */
export function aioRingIsSane(bytes: Buffer, length: number): boolean {
  const h = aioRingHeader(bytes);
  return (
    h.magic === AIO_RING_MAGIC &&
    bytes.readUInt32LE(20) === AIO_RING_COMPAT_FEATURES &&
    bytes.readUInt32LE(24) === AIO_RING_INCOMPAT_FEATURES &&
    bytes.readUInt32LE(28) === AIO_HEADER_BYTES &&
    h.nr === aioEventsIn(length) &&
    h.head < h.nr &&
    h.tail < h.nr
  );
}

/**
 * The io_setup size that gives a ring of `nr` events again (mm.img's nr_req): the kernel doubles
 * the size asked for (at least 4 per possible CPU), adds 2 and rounds the ring up to whole pages.
 */
export function aioRequestsFor(nr: number): number {
  return Math.floor((nr - 2) / 2);
}
