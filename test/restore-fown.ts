// Signal-driven I/O across a dump and restore (program fown: a pipe owned by the process with
// SIGUSR2 and O_ASYNC, a socket owned by its process group with SIGIO): the program's checks can
// fail, the images carry each owner (files.img fown), and the restored program gets its signals.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { readImage } from '../src/images/reader.js';
import { dumpProgram, restoreProgram } from './lib/program-roundtrip.js';
import { requestCheck, startProgram } from './lib/programs.js';

const SIGUSR2 = 12;

t.test('the self-check notices an owner taken away', async (t) => {
  const prog = await startProgram(t, 'fown', [], { env: { ...process.env, CRR_SELFTEST_BREAK: 'owner' } });
  const r = await requestCheck(prog.pid, prog.resultFile);
  t.equal(r.pass, false, r.text);
});

t.test('owners, signals and O_ASYNC are dumped and restored', async (t) => {
  const prog = await startProgram(t, 'fown');
  const pgid = Number(/\) \S+ \d+ (\d+)/.exec(readFileSync(`/proc/${prog.pid}/stat`, 'latin1'))![1]);
  const imagesDir = await dumpProgram(t, prog);
  const fdinfo = [...readImage(join(imagesDir, 'fdinfo-2.img')).entries()].map((e) => e.decode());
  const files = [...readImage(join(imagesDir, 'files.img')).entries()].map((e) => e.decode());
  const fileAt = (fd: number) => files.find((f) => f['id'] === fdinfo.find((e) => e['fd'] === fd)!['id'])!;
  t.match((fileAt(70)['pipe'] as Record<string, unknown>)['fown'], { pid: prog.pid, pid_type: 1, signum: SIGUSR2 }, 'the pipe: this process, SIGUSR2');
  t.equal(Number((fileAt(70)['pipe'] as Record<string, unknown>)['flags']) & 0o20000, 0o20000, 'O_ASYNC in its flags');
  t.match((fileAt(72)['usk'] as Record<string, unknown>)['fown'], { pid: pgid, pid_type: 2, signum: 0 }, 'the socket: its process group, SIGIO');
  t.match((fileAt(71)['pipe'] as Record<string, unknown>)['fown'], { pid: 0, signum: 0 }, 'the write end: no owner');
  const rt = await restoreProgram(t, prog, imagesDir);
  t.same(await rt.check(), { pass: true, text: 'PASS' }, 'owners, signal and O_ASYNC back; a byte brings each signal');
});
