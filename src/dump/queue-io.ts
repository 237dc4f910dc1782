// Reading a pipe's or FIFO's queued bytes out and writing them straight back: the dumper copies
// queued data without the dumped task losing any (both are done on /proc/PID/fd/N reopenings).
import { readSync, writeSync } from 'node:fs';

/** Everything queued on a non-blocking read end, until it would block or reports end of file. */
export function drainNonblocking(fd: number): Buffer {
  const chunks: Buffer[] = [];
  for (;;) {
    const buf = Buffer.alloc(65536);
    let n = 0;
    try {
      n = readSync(fd, buf, 0, buf.length, null);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EAGAIN') break;
      throw e;
    }
    if (n <= 0) break;
    chunks.push(buf.subarray(0, n));
  }
  return Buffer.concat(chunks);
}

/** Writes all of `data` (the bytes just drained go back into the same pipe). */
export function writeAll(fd: number, data: Buffer): void {
  let done = 0;
  while (done < data.length) done += writeSync(fd, data, done, data.length - done);
}
