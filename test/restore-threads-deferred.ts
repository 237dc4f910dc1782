// A task with many threads (load.ts DEFER_THREAD_CORES_FROM) gets its other threads' cores after
// the load step: right after loading only the main core is there, all are once threadCoresReady
// resolves (threadCoreDecoded: one thread's), a corrupt thread core rejects it with an ImageError naming the file, and a program
// with 100 threads restores and passes its own check (TIDs, TLS, ymm registers per thread).
import t, { type Test } from 'tap';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ImageError } from '../src/errors.js';
import { readImage } from '../src/images/reader.js';
import { DEFER_THREAD_CORES_FROM, loadCheckpoint, threadCoreDecoded, threadCoresReady } from '../src/restore/load.js';
import { startProgram } from './lib/programs.js';
import { dumpProgram, restoreProgram } from './lib/program-roundtrip.js';

const THREADS = 100;

t.test('100 threads: cores decoded after the load step, and the restore passes', async (t) => {
  t.ok(THREADS + 1 >= DEFER_THREAD_CORES_FROM, 'enough threads to be deferred');
  const prog = await startProgram(t, 'threads', [String(THREADS)]);
  const dir = await dumpProgram(t, prog);
  const pstree = readImage(join(dir, 'pstree.img')).all()[0] as { pid: number; threads: number[] };
  const tids = pstree.threads.map(Number);
  t.equal(tids.length, THREADS + 1);

  const loaded = await loadCheckpoint(dir);
  const images = loaded.images.get(Number(pstree.pid))!;
  t.equal(images.cores.size, 1, 'only the main core right after the load step');
  t.equal(threadCoreDecoded(images, tids[0]!), undefined, 'the main core is there: nothing to wait for');
  const middle = tids[50]!;
  const waiting = threadCoreDecoded(images, middle);
  t.ok(waiting instanceof Promise, 'a later thread\'s core is a promise');
  await waiting;
  t.ok(images.cores.has(middle), 'which resolves once that core is decoded');
  await threadCoresReady(images);
  t.same([...images.cores.keys()], tids, 'then every thread, in thread order');
  const reread = loadCheckpoint(dir).then(async (l) => {
    const set = l.images.get(Number(pstree.pid))!;
    await threadCoresReady(set);
    return set;
  });
  const again = await reread;
  t.same(JSON.stringify([...again.cores.values()], (_k, v) => (typeof v === 'bigint' ? `${v}n` : v)),
    JSON.stringify(tids.map((tid) => readImage(join(dir, `core-${tid}.img`)).only()), (_k, v) => (typeof v === 'bigint' ? `${v}n` : v)),
    'the same entries as reading each core image');

  const rt = await restoreProgram(t, prog, dir);
  const r = await rt.check(30_000);
  t.ok(r.pass, `the restored program checks out: ${r.text.trim()}`);
});

/**
 * A dumped 100-thread program's images, copied, with the core of a thread near the end damaged
 * by `damage`, then loaded (the other threads' cores still to come).
 */
async function loadedWithDamagedCore(t: Test, damage: (file: string) => void) {
  const prog = await startProgram(t, 'threads', [String(THREADS)]);
  const dir = await dumpProgram(t, prog);
  const bad = mkdtempSync(join(tmpdir(), 'crr-deferred-bad-'));
  t.teardown(() => rmSync(bad, { recursive: true, force: true }));
  cpSync(dir, bad, { recursive: true });
  const pstree = readImage(join(bad, 'pstree.img')).all()[0] as { pid: number; threads: number[] };
  const threads = pstree.threads.map(Number);
  const victim = threads[THREADS - 3]!;
  damage(join(bad, `core-${victim}.img`));
  const loaded = await loadCheckpoint(bad);
  return { threads, victim, images: loaded.images.get(Number(pstree.pid))! };
}

t.test('a corrupt thread core: threadCoresReady rejects with its ImageError', async (t) => {
  const { threads, victim, images } = await loadedWithDamagedCore(t, (file) => {
    const bytes = readFileSync(file);
    bytes.fill(0xff, 12, bytes.length); // the entry length and message: garbage
    writeFileSync(file, bytes);
  });
  await t.rejects(threadCoreDecoded(images, threads[THREADS]!)!, ImageError, 'a thread after the bad core: rejects');
  await t.rejects(threadCoresReady(images), ImageError);
  await threadCoresReady(images).catch((e: Error) => t.match(e.message, `core-${victim}.img`, 'naming the file'));
});

t.test('a thread core that cannot be read whole (a directory in its place): its ImageError, not a crash', async (t) => {
  const { threads, victim, images } = await loadedWithDamagedCore(t, (file) => {
    rmSync(file);
    mkdirSync(file);
  });
  await t.rejects(threadCoresReady(images), ImageError);
  await threadCoresReady(images).catch((e: Error) => t.match(e.message, new RegExp(`core-${victim}\\.img.*not a regular file`), 'naming the file and why'));
  t.ok(images.cores.has(threads[THREADS - 4]!), 'the cores before it were decoded');
});
