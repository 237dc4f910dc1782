// pidfds (program pidfd): a parent's pidfd of its child, non-blocking and watched by an epoll,
// comes back referring to the restored child: waitid sees it running, a signal sent through it
// arrives, the epoll and waitid see the child die. A pidfd of a process outside the tree is
// refused at plan time.
import t from 'tap';
import { restore } from '../src/restore/index.js';
import { openCheckpoint } from '../src/images/index.js';
import { dumpProgram, restoreProgram } from './lib/program-roundtrip.js';
import { requestCheck, startProgram } from './lib/programs.js';
import { rewriteImage } from './lib/restore-images.js';

t.test('the self-check notices a pidfd of another process', async (t) => {
  const prog = await startProgram(t, 'pidfd', [], { env: { CRR_SELFTEST_BREAK: 'other' } });
  const r = await requestCheck(prog.pid, prog.resultFile);
  t.notOk(r.pass, r.text);
});

t.test("a pidfd comes back referring to the restored child, watched by its epoll", async (t) => {
  const prog = await startProgram(t, 'pidfd');
  const child = prog.tree().find((pid) => pid !== prog.pid)!;
  const imagesDir = await dumpProgram(t, prog);
  const checkpoint = openCheckpoint(imagesDir);
  const fd30 = checkpoint.fdinfo(checkpoint.ids(prog.pid).files_id).find((f) => f.fd === 30)!;
  t.match(checkpoint.file(fd30.id, 'test')['pidfd'], { nspid: child }, 'files.img: a pidfd of the child');
  const rt = await restoreProgram(t, prog, imagesDir);
  t.same(await rt.check(), { pass: true, text: 'PASS' }, 'waitid, pidfd_send_signal and the epoll all act on the child');

  rewriteImage(imagesDir, 'files.img', (entries) => entries.map((e) => (e['pidfd'] ? { ...e, pidfd: { ...(e['pidfd'] as object), nspid: 1 } } : e)));
  await t.rejects(restore({ imagesDir, pidNamespace: true, dryRun: true }), { stage: 'plan', resource: 'pidfd', message: /fd 30 is a pidfd of pid 1, which is not a live task of the tree/ });
});
