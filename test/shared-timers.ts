// itimers and POSIX timers across a dump and restore: the images hold the timers with their ids
// (a hole where one was deleted), clocks, sigevents (SIGEV_THREAD_ID with its thread) and
// remaining times; the restored timers program finds them all working under the same ids.
import t from 'tap';
import { join } from 'node:path';
import { readImage } from '../src/images/reader.js';
import { parseProcTimers } from '../src/dump/timers.js';
import { posixTimersOf, sigeventBytes } from '../src/resources/timers.js';
import { requestCheck, startProgram } from './lib/programs.js';
import { dumpProgram, restoreProgram } from './lib/program-roundtrip.js';

const img = (dir: string, name: string) => readImage(join(dir, name)).all() as any[];
const SIGRTMIN = 34;

t.test('/proc/PID/timers parsing: notify word, pid or tid, sigev value', async (t) => {
  const text = 'ID: 3\nsignal: 39/000000000000004d\nnotify: signal/tid.812\nClockID: 7\nID: 2\nsignal: 0/0000000000000000\nnotify: none/pid.811\nClockID: 0\nID: 9\nsignal: 12/00007f0000001000\nnotify: thread/pid.811\nClockID: 1\n';
  t.same(parseProcTimers(text), [
    { id: 3, signo: 39, sigval: 0x4dn, notify: 4, notifyTid: 812, clockId: 7 },
    { id: 2, signo: 0, sigval: 0n, notify: 1, notifyTid: 0, clockId: 0 },
    { id: 9, signo: 12, sigval: 0x7f0000001000n, notify: 2, notifyTid: 0, clockId: 1 },
  ]);
  const [timer] = posixTimersOf({ timers: { posix: [{ it_id: 3, clock_id: 0xfffffffe, si_signo: 39, it_sigev_notify: 4, sival_ptr: 77n, overrun: 0, isec: 0n, insec: 0n, vsec: 1n, vnsec: 0n, notify_thread_id: 812 }] } });
  t.equal(timer!.clockId, -2, 'clock ids are signed again (CPU clocks)');
  const ev = sigeventBytes(timer!);
  t.same([ev.readBigUInt64LE(0), ev.readInt32LE(8), ev.readInt32LE(12), ev.readInt32LE(16)], [77n, 39, 4, 812], 'struct sigevent layout');
});

t.test('the self-check notices changed timers', async (t) => {
  for (const kind of ['interval', 'id', 'itimer', 'proc']) {
    const prog = await startProgram(t, 'timers', [], { env: { CRR_SELFTEST_BREAK: kind } });
    const r = await requestCheck(prog.pid, prog.resultFile);
    t.notOk(r.pass, `break ${kind}: ${r.text}`);
  }
  const prog = await startProgram(t, 'timers');
  const r = await requestCheck(prog.pid, prog.resultFile);
  t.ok(r.pass, `passes undamaged: ${r.text}`);
});

t.test('timers survive dump and restore', async (t) => {
  const prog = await startProgram(t, 'timers');
  const dir = await dumpProgram(t, prog);
  const [main, worker] = img(dir, 'pstree.img')[0].threads as number[];
  const timers = img(dir, `core-${main}.img`)[0].tc.timers;
  t.same([timers.real.isec, timers.real.iusec, timers.virt.isec, timers.prof.isec], [7n, 0n, 3n, 0n], 'itimer intervals');
  t.ok(timers.real.vsec <= 100n && timers.real.vsec >= 90n, `ITIMER_REAL remaining ${timers.real.vsec} s`);
  const posix = [...timers.posix].sort((a: any, b: any) => a.it_id - b.it_id);
  t.same(posix.map((p: any) => p.it_id), [0, 2, 3, 4], 'timer ids with the hole of the deleted one');
  t.same(posix.map((p: any) => [p.clock_id, p.si_signo, p.it_sigev_notify, Number(p.sival_ptr)]),
    [[1, SIGRTMIN + 4, 0, 0xabc], [0, 0, 1, 0], [7, SIGRTMIN + 5, 4, 77], [1, SIGRTMIN + 6, 0, 4242]], 'clocks and sigevents');
  t.equal(posix[2].notify_thread_id, worker, 'SIGEV_THREAD_ID names the worker thread');
  t.same([posix[0].isec, posix[3].insec], [5n, 300_000_000n], 'POSIX intervals');
  const rt = await restoreProgram(t, prog, dir);
  const r = await rt.check();
  t.equal(r.text.trim(), 'PASS', 'the restored program finds its timers');
});
