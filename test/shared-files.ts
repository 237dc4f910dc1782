// One open file description shared by a parent and its child, a dup with close-on-exec, and a
// separate description of the same file (test/programs/shared-file.c): self-check and breaks,
// the dump gives the shared fds one files.img id, and after dump -> kill -> restore parent and
// child write through one offset again (the file reads "P0C1P2") and `crr plan` names the
// parent as the creator and the child as the receiver of that description.
import t from 'tap';
import { openCheckpoint } from '../src/images/index.js';
import { buildPlan } from '../src/plan/plan.js';
import { registry } from '../src/resources/registry.js';
import { loadCheckpoint } from '../src/restore/load.js';
import { requestCheck, startProgram } from './lib/programs.js';
import { roundTrip } from './lib/round-trip.js';

t.test('shared-file: self-check passes, every break fails', async (t) => {
  const p = await startProgram(t, 'shared-file');
  t.same(await requestCheck(p.pid, p.resultFile), { pass: true, text: 'PASS' });
  for (const [kind, why] of Object.entries({ offset: /offset is 1/, cloexec: /close-on-exec/ })) {
    const b = await startProgram(t, 'shared-file', [], { env: { CRR_SELFTEST_BREAK: kind } });
    const r = await requestCheck(b.pid, b.resultFile);
    t.notOk(r.pass, `break ${kind} fails`);
    t.match(r.text, why, `break ${kind} names what differed`);
  }
});

t.test('shared-file: dump -> restore keeps one offset across parent and child', async (t) => {
  const rt = await roundTrip(t, 'shared-file');
  const checkpoint = openCheckpoint(rt.imagesDir);
  const parent = rt.program.pid;
  const child = rt.pids.find((pid) => pid !== parent)!;
  const fdsOf = (pid: number) => checkpoint.fdinfo(checkpoint.ids(pid).files_id);
  const at = (pid: number, fd: number) => fdsOf(pid).find((e) => e.fd === fd)?.id;
  t.equal(at(parent, 30), at(child, 30), 'fd 30 of parent and child: one files.img id');
  t.equal(at(parent, 31), at(parent, 30), 'fd 31 (dup) has the same id');
  t.not(at(parent, 40), at(parent, 30), 'fd 40 (opened again) has its own id');
  const { tasks, images } = await loadCheckpoint(rt.imagesDir);
  const plan = buildPlan(registry, tasks, { checkpoint, images });
  t.same(
    plan.sharedObjects.find((o) => o.kind === 'file' && o.id === String(at(parent, 30))),
    { kind: 'file', id: String(at(parent, 30)), creator: parent, receivers: [child] },
    'plan: the parent creates the description, the child receives it',
  );
  t.same(await requestCheck(parent, rt.program.resultFile), { pass: true, text: 'PASS' });
});
