// Tasks that share an fs (clone CLONE_FS) or an fd table (clone CLONE_FILES) with their parent
// (test/programs/clone-share.c): the program's check proves the sharing with a change made at
// check time (a chdir/umask, an fd opened by one task seen by the other) and can fail (break
// unshare). The dump records the sharing as one fs_id / files_id for both tasks (one fdinfo
// image); after dump -> restore in a fresh PID namespace both kinds of sharing are back (the
// child is forked with CLONE_FILES by its parent's helper; its fds are restored once). Two
// processes in one address space (CLONE_VM without CLONE_THREAD) are refused: at dump, and at
// plan time for images that say so.
import t from 'tap';
import { join } from 'node:path';
import { dump } from '../src/dump/index.js';
import { CrrError, StageError } from '../src/errors.js';
import { imageKindForFile, openCheckpoint, readImage } from '../src/images/index.js';
import { writeImage } from '../src/images/writer.js';
import { restore } from '../src/restore/index.js';
import { requestCheck, startProgram } from './lib/programs.js';
import { dumpProgram, restoreProgram } from './lib/program-roundtrip.js';

for (const mode of ['fs', 'files'] as const) {
  t.test(`clone-share ${mode}: self-check passes, break unshare fails`, async (t) => {
    const p = await startProgram(t, 'clone-share', [mode]);
    t.same(await requestCheck(p.pid, p.resultFile), { pass: true, text: 'PASS' });
    const b = await startProgram(t, 'clone-share', [mode], { env: { CRR_SELFTEST_BREAK: 'unshare' } });
    const r = await requestCheck(b.pid, b.resultFile);
    t.notOk(r.pass, 'break unshare fails');
    t.match(r.text, /not shared/, `and says so: ${r.text}`);
  });
}

t.test('clone-share fs: one fs_id in the images; CLONE_FS sharing is back after restore', async (t) => {
  const p = await startProgram(t, 'clone-share', ['fs']);
  const [parent, child] = p.tree();
  const imagesDir = await dumpProgram(t, p);
  const checkpoint = openCheckpoint(imagesDir);
  t.equal(checkpoint.ids(child!).fs_id, checkpoint.ids(parent!).fs_id, 'parent and child have one fs_id');
  t.not(checkpoint.ids(child!).files_id, checkpoint.ids(parent!).files_id, 'but their own fd tables');
  const rt = await restoreProgram(t, p, imagesDir);
  t.same(await rt.check(), { pass: true, text: 'PASS' });
});

t.test('clone-share files: one files_id in the images; CLONE_FILES sharing is back after restore', async (t) => {
  const p = await startProgram(t, 'clone-share', ['files']);
  const [parent, child] = p.tree();
  const imagesDir = await dumpProgram(t, p);
  const checkpoint = openCheckpoint(imagesDir);
  t.equal(checkpoint.ids(child!).files_id, checkpoint.ids(parent!).files_id, 'parent and child have one files_id (one fdinfo image)');
  const rt = await restoreProgram(t, p, imagesDir);
  t.same(await rt.check(), { pass: true, text: 'PASS' }, 'CLONE_FILES sharing after restore');
});

t.test('clone-share vm: two processes in one address space are refused at dump, naming the task; they run on', async (t) => {
  const p = await startProgram(t, 'clone-share', ['vm']);
  const [, child] = p.tree();
  const imagesDir = join(p.dir, 'images');
  const err = await dump({ pid: p.pid, imagesDir }).catch((e: unknown) => e);
  t.type(err, CrrError);
  t.match((err as Error).message, new RegExp(`pid ${child} shares its address space with another task of the tree \\(clone with CLONE_VM but not CLONE_THREAD\\)`));
  t.same(await requestCheck(p.pid, p.resultFile), { pass: true, text: 'PASS' }, 'P and C still share their address space, running');
});

t.test('images of two tasks with one vm_id are refused at plan time', async (t) => {
  const p = await startProgram(t, 'clone-share', ['fs']);
  const [parent, child] = p.tree();
  const imagesDir = await dumpProgram(t, p);
  const name = `ids-${child}.img`;
  const ids = readImage(join(imagesDir, name)).all()[0] as Record<string, unknown>;
  const vmId = openCheckpoint(imagesDir).ids(parent!).vm_id;
  writeImage(join(imagesDir, name), imageKindForFile(name)!, [{ entry: { ...ids, vm_id: vmId } }]);
  const err = await restore({ imagesDir, pidNamespace: true }).then((r) => r.kill(), (e: unknown) => e);
  t.type(err, StageError);
  t.match((err as Error).message, new RegExp(`stage plan, task ${child}, resource memory.*tasks ${parent} and ${child} share one address space \\(vm_id ${vmId}`));
});
