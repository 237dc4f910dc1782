// Kernel AIO contexts (io_setup): each is a ring the kernel maps into the task ("/[aio] (deleted)",
// shared), whose header and completed events the task reads itself. The VMA is dumped with
// CRIU's AIORING status and all of its pages; mm.img's aios entry gives its address, length and
// an io_setup size that makes a ring of the same length again. Requests submitted and not yet
// completed are not seen (the kernel shows them nowhere), as with CRIU; a frozen task's
// requests on files complete on their own, and their events are then in the ring.
import { CrrError } from '../errors.js';
import { AIO_HEADER_BYTES, aioRequestsFor, aioRingHeader, aioRingIsSane } from '../images/aio-ring.js';
import type { Entry } from './ids.js';
import type { DumpVma } from './mm.js';

export const AIO_RING_PATH = '/[aio] (deleted)';

/** mm.img's aios entries for the task's AIO rings; a ring not as the kernel made it is refused, naming it. */
export function aioRingEntries(pid: number, vmas: readonly DumpVma[], readMemory: (addr: bigint, len: number) => Buffer): Entry[] {
  return vmas
    .filter((v) => v.path === AIO_RING_PATH)
    .map((v) => {
      const length = Number(v.end - v.start);
      const bytes = readMemory(v.start, AIO_HEADER_BYTES);
      const header = aioRingHeader(bytes);
      if (!aioRingIsSane(bytes, length)) {
        const fields = `magic ${header.magic.toString(16)}, ${header.nr} events, head ${header.head}, tail ${header.tail}`;
        throw new CrrError(`pid ${pid}: AIO ring at ${v.start.toString(16)}-${v.end.toString(16)} is not as the kernel made it (${fields}): its state cannot be told`, 1);
      }
      return { id: v.start, nr_req: aioRequestsFor(header.nr), ring_len: length };
    });
}
