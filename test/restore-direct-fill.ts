// The cold fill with O_DIRECT (src/restore/page-cache.ts, src/resources/memory.ts): the cold/warm
// decision from an injected cachestat answer, the native cachestat on a real file, and mem-pattern
// (64 MiB with holes, guards and read-only pieces) restored after its pages file was dropped from
// the page cache: its pages come by one direct preadv (the 'direct fill' span), every byte
// checks; restored again with its pages file in the cache, it goes the UFFDIO_COPY way. Only
// that file is evicted (written back, then dd's POSIX_FADV_DONTNEED): a global drop_caches would
// send the other memory tests running beside this one down the direct path between their dump
// and their restore. The images live under tmpdir(), which must be on a disk (a tmpfs file is
// always cached: it would never go direct). Last, CRR_DIRECT_FILL=force on ramfs, which refuses
// O_DIRECT: the refusal (EINVAL) sends the fill the cached way.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { closeSync, cpSync, mkdirSync, openSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { native } from '../src/actors/native.js';
import { decideDirect, directFill, logicalBlockSize, MAX_CACHED_SHARE, runsAligned } from '../src/restore/page-cache.js';
import { dumpProgram, restoreProgram } from './lib/program-roundtrip.js';
import { startProgram } from './lib/programs.js';
import type { Span } from '../src/resources/types.js';

// The path under test is the default one: an override in the caller's environment is set aside.
const override = process.env['CRR_DIRECT_FILL'];
delete process.env['CRR_DIRECT_FILL'];
t.teardown(() => {
  if (override !== undefined) process.env['CRR_DIRECT_FILL'] = override;
});

const stat = (cache: number, dirty = 0, writeback = 0) => ({ cache, dirty, writeback, evicted: 0, recentlyEvicted: 0 });
const PAGES = 1000;

t.test('cold only when almost nothing is cached and nothing is dirty', async (t) => {
  t.match(decideDirect(undefined, PAGES), { direct: false, why: 'cachestat refused' });
  t.equal(decideDirect(stat(0), PAGES).direct, true, 'nothing cached: direct');
  t.equal(decideDirect(stat(Math.ceil(PAGES * MAX_CACHED_SHARE) - 1), PAGES).direct, true, 'just under the share: direct');
  t.equal(decideDirect(stat(Math.ceil(PAGES * MAX_CACHED_SHARE)), PAGES).direct, false, 'at the share: warm');
  t.equal(decideDirect(stat(PAGES), PAGES).direct, false, 'all cached: warm');
  t.equal(decideDirect(stat(1, 1), PAGES).direct, false, 'a dirty page (a fresh dump): warm');
  t.equal(decideDirect(stat(1, 0, 1), PAGES).direct, false, 'under writeback: warm');
  t.equal(decideDirect(stat(0), 0).direct, false, 'an empty range: nothing to read direct');
});

t.test('directFill: injected cachestat and block size, refusals mean warm', async (t) => {
  const file = join(t.testdir(), 'pages-1.img');
  writeFileSync(file, Buffer.alloc(1 << 20, 3));
  const runs = [{ start: 0x10000000n, end: 0x10100000n, fileOffset: 0 }];
  const asked: Array<[number, number]> = [];
  const cold = (_fd: number, offset: number, length: number) => {
    asked.push([offset, length]);
    return stat(0);
  };
  t.equal(directFill(file, runs, 1 << 20, { cachestat: cold, blockSize: () => 512 }).direct, true);
  t.same(asked, [[0, 1 << 20]], 'asked about the needed range');
  t.equal(directFill(file, runs, 1 << 20, { cachestat: () => stat(256), blockSize: () => 512 }).direct, false, 'a quarter cached: warm');
  const enosys = () => {
    throw Object.assign(new Error('cachestat failed: ENOSYS'), { code: 'ENOSYS', errno: 38, syscall: 'cachestat' });
  };
  t.match(directFill(file, runs, 1 << 20, { cachestat: enosys, blockSize: () => 512 }), { direct: false, why: 'cachestat refused' });
  t.equal(directFill(file, runs, 1 << 20, { cachestat: cold, blockSize: () => undefined }).direct, false, 'no block device: warm');
  t.equal(directFill(file, runs, 1 << 20, { cachestat: cold, blockSize: () => 8192 }).direct, false, 'blocks larger than a page: warm');
  const odd = [{ start: 0x10000000n, end: 0x10001000n, fileOffset: 512 }];
  t.equal(directFill(file, odd, 1 << 20, { cachestat: cold, blockSize: () => 4096 }).direct, false, 'a run off the block size: warm');
  t.equal(directFill(join(t.testdir(), 'none.img'), runs, 1 << 20, { cachestat: cold, blockSize: () => 512 }).direct, false, 'no file: warm');
  process.env['CRR_DIRECT_FILL'] = 'off';
  t.equal(directFill(file, runs, 1 << 20, { cachestat: cold, blockSize: () => 512 }).direct, false, 'CRR_DIRECT_FILL=off');
  process.env['CRR_DIRECT_FILL'] = 'force';
  t.same(directFill(file, runs, 1 << 20, { cachestat: () => stat(256), blockSize: () => undefined }), { direct: true, why: 'CRR_DIRECT_FILL=force' }, 'CRR_DIRECT_FILL=force');
  delete process.env['CRR_DIRECT_FILL'];
  t.ok(runsAligned(runs, 4096) && !runsAligned(odd, 4096) && runsAligned(odd, 512));
});

t.test('logicalBlockSize reads the disk or, for a partition, the disk above it', async (t) => {
  const asked: string[] = [];
  t.equal(logicalBlockSize(64768, (p) => (asked.push(p), '4096\n')), 4096);
  t.equal(asked[0], '/sys/dev/block/253:0/queue/logical_block_size');
  const partition = (p: string) => {
    if (!p.includes('/../')) throw Object.assign(new Error('ENOENT'), { code: 'ENOENT' });
    return '512\n';
  };
  t.equal(logicalBlockSize(64769, partition), 512);
  t.equal(logicalBlockSize(64769, () => { throw new Error('ENOENT'); }), undefined);
});

t.test('native cachestat: counts cached pages of a real file, errno on a bad fd', async (t) => {
  const file = join(t.testdir(), 'cached.img');
  writeFileSync(file, Buffer.alloc(256 << 10, 1));
  const fd = openSync(file, 'r');
  t.teardown(() => closeSync(fd));
  const s = native.cachestat(fd, 0, 0);
  t.equal(s.cache, 64, 'a file just written is all in the cache');
  t.ok(s.dirty + s.writeback <= 64);
  t.equal(native.cachestat(fd, 0, 4096).cache, 1, 'the range is honoured');
  t.throws(() => native.cachestat(1 << 20, 0, 0), { code: 'EBADF', errno: 9, syscall: 'cachestat' });
  t.throws(() => native.cachestat(fd, -1, 0), TypeError);
});

function pagesFileOf(imagesDir: string): string {
  const name = readdirSync(imagesDir).filter((f) => /^pages-\d+\.img$/.test(f)).sort((a, b) => readFileSync(join(imagesDir, b)).length - readFileSync(join(imagesDir, a)).length)[0];
  return join(imagesDir, name!);
}

t.test('mem-pattern restored from a cold pages file by O_DIRECT, from a warm one by UFFDIO_COPY', async (t) => {
  const prog = await startProgram(t, 'mem-pattern');
  const imagesDir = await dumpProgram(t, prog);
  const pages = pagesFileOf(imagesDir);
  execFileSync('sync', [pages]);
  execFileSync('dd', [`if=${pages}`, 'iflag=nocache', 'count=0', 'status=none']);
  const fd = openSync(pages, 'r');
  const cached = native.cachestat(fd, 0, 0).cache;
  closeSync(fd);
  t.ok(cached < 1024, `the pages file is out of the cache (${cached} pages left)`);

  const spans: Span[] = [];
  const cold = await restoreProgram(t, prog, imagesDir, { onSpan: (s) => spans.push(s) });
  const direct = spans.find((s) => s.name === 'direct fill');
  t.ok((direct?.bytes ?? 0) >= 60 << 20, `the 64 MiB region came by O_DIRECT (${direct?.bytes} bytes)`);
  t.notOk(spans.some((s) => s.name === 'copy' || s.name === 'read ahead'), 'no UFFDIO_COPY and no read-ahead');
  const taskPid = cold.result.rootHostPid;
  const taskFds = readdirSync(`/proc/${taskPid}/fd`).map((n) => readlinkSync(`/proc/${taskPid}/fd/${n}`));
  t.notOk(taskFds.some((l) => l.includes('pages-')), "the task's pages fd is closed");
  t.equal((await cold.check()).text, 'PASS', 'mem-pattern checks every byte and protection');
  await cold.result.kill();

  readFileSync(pages); // into the cache: warm now
  const warmSpans: Span[] = [];
  const warm = await restoreProgram(t, prog, imagesDir, { onSpan: (s) => warmSpans.push(s) });
  t.notOk(warmSpans.some((s) => s.name === 'direct fill'), 'a cached pages file is not read direct');
  t.ok(warmSpans.some((s) => s.name === 'copy'), "it is copied from the cache by crr's threads");
  t.equal((await warm.check()).text, 'PASS', 'warm: mem-pattern checks every byte and protection');
  await warm.result.kill();
});

t.test('a filesystem that refuses O_DIRECT (ramfs: EINVAL) gets the cached fill', async (t) => {
  const prog = await startProgram(t, 'mem-pattern');
  const dumped = await dumpProgram(t, prog);
  const ramfs = join(t.testdir(), 'ramfs');
  mkdirSync(ramfs);
  execFileSync('mount', ['-t', 'ramfs', 'ramfs', ramfs]);
  t.teardown(() => execFileSync('umount', ['-l', ramfs]));
  const imagesDir = join(ramfs, 'images');
  cpSync(dumped, imagesDir, { recursive: true });

  process.env['CRR_DIRECT_FILL'] = 'force';
  const spans: Span[] = [];
  const restored = await restoreProgram(t, prog, imagesDir, { onSpan: (s) => spans.push(s) }).finally(() => delete process.env['CRR_DIRECT_FILL']);
  t.notOk(spans.some((s) => s.name === 'direct fill'), 'no direct fill: F_SETFL O_DIRECT was refused');
  t.ok(spans.some((s) => s.name === 'copy'), 'the pages came the cached way (UFFDIO_COPY)');
  t.equal((await restored.check()).text, 'PASS', 'mem-pattern checks every byte and protection');
  await restored.result.kill();
});
