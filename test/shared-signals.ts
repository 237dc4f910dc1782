// Pending signals across a dump and restore: the signals program leaves blocked signals
// pending process-wide and per thread (si_value payloads, SI_QUEUE and SI_USER); the images must
// hold them in the right queues, and the restored program must dequeue them all, in order.
import t from 'tap';
import { join } from 'node:path';
import { readImage } from '../src/images/reader.js';
import { requestCheck, startProgram } from './lib/programs.js';
import { dumpProgram, restoreProgram } from './lib/program-roundtrip.js';

const img = (dir: string, name: string) => readImage(join(dir, name)).all() as any[];
const SIGRTMIN = 34;

function queued(queue: any): Array<{ signo: number; code: number; value: number }> {
  return (queue?.signals ?? []).map((s: any) => {
    const b = Buffer.from(s.siginfo);
    return { signo: b.readInt32LE(0), code: b.readInt32LE(8), value: b.readInt32LE(24) };
  });
}

t.test('the self-check notices lost, changed and misplaced signals', async (t) => {
  for (const kind of ['lost', 'value', 'thread']) {
    const prog = await startProgram(t, 'signals', [], { env: { CRR_SELFTEST_BREAK: kind } });
    const r = await requestCheck(prog.pid, prog.resultFile);
    t.notOk(r.pass, `break ${kind}: ${r.text}`);
  }
  const prog = await startProgram(t, 'signals');
  t.ok((await requestCheck(prog.pid, prog.resultFile)).pass, 'passes undamaged');
});

t.test('pending signals survive dump and restore', async (t) => {
  const prog = await startProgram(t, 'signals');
  const dir = await dumpProgram(t, prog);
  const pstree = img(dir, 'pstree.img')[0];
  const [main, worker] = pstree.threads as number[];
  const mainCore = img(dir, `core-${main}.img`)[0];
  const workerCore = img(dir, `core-${worker}.img`)[0];
  t.same(queued(mainCore.tc.signals_s).map((s) => [s.signo, s.code, s.value]),
    [[SIGRTMIN + 1, -1, 111], [SIGRTMIN + 1, -1, 222], [12, -1, 333], [1, 0, 0]],
    'shared queue in the order sent: SIGRTMIN+1 111 then 222, SIGUSR2 333, SIGHUP (SI_USER)');
  t.same(queued(mainCore.thread_core.signals_p).map((s) => [s.signo, s.value]), [[SIGRTMIN + 3, 666]], 'main thread queue');
  t.same(queued(workerCore.thread_core.signals_p).map((s) => [s.signo, s.value]), [[SIGRTMIN + 2, 444], [SIGRTMIN + 2, 555]], 'worker thread queue');
  const rt = await restoreProgram(t, prog, dir);
  const r = await rt.check();
  t.equal(r.text.trim(), 'PASS', 'the restored program finds every signal');
});
