// Reading a pages file ahead of the fill (src/restore/prefetch.ts and the addon's readAhead): the
// per-call step follows the device's read-ahead window, the chunks cover the file in order and
// stop when asked, a failure ends it without throwing, the fd is closed whatever happens, and
// the native call runs (its effect on a cold restore is measured by the bench, not here).
import t from 'tap';
import { closeSync, fstatSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { native } from '../src/actors/native.js';
import { PREFETCH_CHUNK, readAheadStep, startPrefetch, type ReadAhead } from '../src/restore/prefetch.js';

const dir = mkdtempSync(join(tmpdir(), 'crr-prefetch-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const file = join(dir, 'pages-1.img');
writeFileSync(file, Buffer.alloc(1 << 20, 7));

t.test('the step is the backing device read-ahead window, within 128 KiB..16 MiB', async (t) => {
  const asked: string[] = [];
  const sysfs = (kib: string) => (path: string) => {
    asked.push(path);
    return `${kib}\n`;
  };
  t.equal(readAheadStep(65024, sysfs('8192')), 8 << 20, 'st_dev 65024 is 254:0, 8 MiB window');
  t.equal(asked[0], '/sys/class/bdi/254:0/read_ahead_kb');
  // glibc makedev(259, 300): minor above 255 and major above 255 use the high bits
  const dev = Number((300n & 0xffn) | ((259n & 0xfffn) << 8n) | ((300n & ~0xffn) << 12n));
  readAheadStep(dev, sysfs('128'));
  t.equal(asked[1], '/sys/class/bdi/259:300/read_ahead_kb');
  t.equal(readAheadStep(65024, sysfs('0')), 128 << 10, 'read-ahead off: the smallest window still goes');
  t.equal(readAheadStep(65024, sysfs('1048576')), 16 << 20, 'a huge window is capped');
  t.equal(readAheadStep(65024, sysfs('4194304')), 16 << 20, 'a 4 GiB window (past 32-bit shifts) is capped too');
  t.equal(readAheadStep(65024, () => {
    throw Object.assign(new Error('no such file'), { code: 'ENOENT' });
  }), 128 << 10, 'no bdi (tmpfs): the smallest window');
});

t.test('chunks cover the file in order with the step, and the fd is closed', async (t) => {
  const calls: Array<[number, number, number, number]> = [];
  const readAhead: ReadAhead = async (fd, offset, length, step) => {
    calls.push([fd, offset, length, step]);
  };
  const length = 2 * PREFETCH_CHUNK + 4096;
  const p = startPrefetch(file, length, { readAhead, now: () => 42 });
  await new Promise((r) => setTimeout(r, 20));
  t.same(await p.stop(), { bytes: length, end: 42 }, 'all of it, ending at the last call');
  t.same(calls.map((c) => [c[1], c[2]]), [[0, PREFETCH_CHUNK], [PREFETCH_CHUNK, PREFETCH_CHUNK], [2 * PREFETCH_CHUNK, 4096]]);
  t.ok(calls.every((c) => c[3] >= 128 << 10 && c[3] <= 16 << 20), 'every call has a step in range');
  t.throws(() => fstatSync(calls[0]![0]), { code: 'EBADF' }, 'the prefetch fd is closed after stop()');
});

t.test('stop() ends a prefetch at its next chunk; a failing call ends it with its error', async (t) => {
  const calls: number[] = [];
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const p = startPrefetch(file, 10 * PREFETCH_CHUNK, {
    readAhead: async (_fd, offset) => {
      calls.push(offset);
      await gate;
    },
  });
  const stopped = p.stop();
  release();
  const r = await stopped;
  t.same(calls, [0], 'no chunk after the one in flight');
  t.equal(r.bytes, PREFETCH_CHUNK);

  const failing = startPrefetch(file, 3 * PREFETCH_CHUNK, {
    readAhead: async (_fd, offset) => {
      if (offset > 0) throw Object.assign(new Error('posix_fadvise failed: EIO'), { code: 'EIO', errno: 5, syscall: 'posix_fadvise' });
    },
  });
  await new Promise((r) => setTimeout(r, 20));
  const f = await failing.stop();
  t.equal(f.bytes, PREFETCH_CHUNK, 'bytes up to the failing call');
  t.match(f.error, { code: 'EIO', syscall: 'posix_fadvise' });

  const missing = await startPrefetch(join(dir, 'none.img'), 4096).stop();
  t.match(missing, { bytes: 0, error: { code: 'ENOENT' } }, 'a file that cannot be opened: nothing read ahead, no throw');
});

t.test('native readAhead: resolves on a real file, rejects with errno, syscall and code', async (t) => {
  const fd = openSync(file, 'r');
  t.teardown(() => closeSync(fd));
  await t.resolves(native.readAhead(fd, 0, 1 << 20, 128 << 10));
  await t.rejects(native.readAhead(1 << 20, 0, 4096, 4096), { code: 'EBADF', errno: 9, syscall: 'posix_fadvise' });
  t.throws(() => native.readAhead(fd, -1, 4096, 4096), TypeError);
  t.throws(() => native.readAhead(fd, 0, 4096, 0), TypeError);
});
