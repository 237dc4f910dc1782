// Pipes across tasks (test/programs/pipes.c): the program's own check passes and each break kind
// fails it; a dump of it writes the pipes as CRIU does (two PIPE descriptions per pipe, the queued
// bytes in pipes-data.img with the pipe size); and after dump -> kill -> restore it passes again:
// one pipe per pair of ends across tasks, O_NONBLOCK, F_SETPIPE_SZ, a dup with its own
// close-on-exec, queued bytes byte for byte.
import t from 'tap';
import { openCheckpoint } from '../src/images/index.js';
import { requestCheck, startProgram } from './lib/programs.js';
import { roundTrip } from './lib/round-trip.js';

t.test('pipes: self-check passes, every break fails', async (t) => {
  const p = await startProgram(t, 'pipes');
  t.same(await requestCheck(p.pid, p.resultFile), { pass: true, text: 'PASS' });
  for (const [kind, why] of Object.entries({ data: /queued bytes|fewer/, nonblock: /O_NONBLOCK/, cloexec: /close-on-exec/ })) {
    const b = await startProgram(t, 'pipes', [], { env: { CRR_SELFTEST_BREAK: kind } });
    const r = await requestCheck(b.pid, b.resultFile);
    t.notOk(r.pass, `break ${kind} fails`);
    t.match(r.text, why, `break ${kind} names what differed`);
  }
});

t.test('pipes: dump -> restore keeps both pipes, flags, size and queued bytes', async (t) => {
  const rt = await roundTrip(t, 'pipes');
  const checkpoint = openCheckpoint(rt.imagesDir);
  const pipes = [...checkpoint.files().values()].filter((f) => f['type'] === 2 || f['type'] === 'PIPE');
  t.equal(pipes.length, 4, 'four PIPE descriptions (two ends of two pipes)');
  const data = [...checkpoint.image('pipes-data.img').entries()].map((e) => ({ entry: e.decode(), bytes: e.payload?.length }));
  const big = data.find((d) => Number(d.entry['bytes']) === 100000);
  t.ok(big, 'pipe A has 100000 queued bytes in pipes-data.img');
  t.equal(big?.bytes, 100000, 'and its payload follows the entry');
  t.equal(Number(big?.entry['size']), 256 * 1024, 'with its F_SETPIPE_SZ size');
  t.ok(data.some((d) => Number(d.entry['bytes']) === 11), 'pipe B has its 11 bytes');
  t.equal(rt.result.rootPid, rt.program.pid, 'restored with its PID');
  t.same(await requestCheck(rt.program.pid, rt.program.resultFile), { pass: true, text: 'PASS' });
});
