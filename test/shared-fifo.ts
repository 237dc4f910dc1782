// FIFOs across tasks (test/programs/fifo.c): the program's own check passes and each break kind
// fails it; a dump writes each FIFO as CRIU does (a REG entry with the path and the fd's flags, a
// FIFO entry whose regf_id names it and whose pipe_id is the inode; queued bytes with the buffer
// size in fifo-data.img, including a FIFO that only has a writer); and after dump -> kill ->
// restore in a fresh PID namespace the program passes again: ends at their fds in both tasks,
// flags, size, one description shared across tasks, queued bytes byte for byte.
import t from 'tap';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { openCheckpoint } from '../src/images/index.js';
import { requestCheck, startProgram } from './lib/programs.js';
import { dumpProgram, restoreProgram } from './lib/program-roundtrip.js';

t.test('fifo: self-check passes, every break fails', async (t) => {
  const p = await startProgram(t, 'fifo');
  t.same(await requestCheck(p.pid, p.resultFile), { pass: true, text: 'PASS' });
  for (const [kind, why] of Object.entries({ data: /fifo-a holds|differ/, nonblock: /O_NONBLOCK read end/ })) {
    const b = await startProgram(t, 'fifo', [], { env: { CRR_SELFTEST_BREAK: kind } });
    const r = await requestCheck(b.pid, b.resultFile);
    t.notOk(r.pass, `break ${kind} fails`);
    t.match(r.text, why, `break ${kind} names what differed: ${r.text}`);
  }
});

t.test('fifo: dump writes REG + FIFO entries and fifo-data.img; restore passes the check', async (t) => {
  const p = await startProgram(t, 'fifo');
  const inoA = statSync(join(p.dir, 'fifo-a')).ino;
  const inoB = statSync(join(p.dir, 'fifo-b')).ino;
  const imagesDir = await dumpProgram(t, p);
  const checkpoint = openCheckpoint(imagesDir);
  const files = [...checkpoint.files().values()];
  const fifos = files.filter((f) => f['type'] === 3 || f['type'] === 'FIFO').map((f) => f['fifo'] as Record<string, unknown>);
  // descriptions: A read (31), A write (32), A rdwr (50, shared), B write (40)
  t.equal(fifos.filter((f) => Number(f['pipe_id']) === inoA).length, 3, 'three descriptions of fifo-a');
  t.equal(fifos.filter((f) => Number(f['pipe_id']) === inoB).length, 1, 'one description of fifo-b');
  for (const f of fifos) {
    const reg = checkpoint.file(Number(f['regf_id']))['reg'] as Record<string, unknown>;
    const want = Number(f['pipe_id']) === inoA ? 'fifo-a' : 'fifo-b';
    t.equal(reg['name'], join(p.dir, want), `regf_id ${String(f['regf_id'])} names ${want}`);
    t.not(Number(f['regf_id']), Number(f['id']), 'the path has an id of its own');
  }
  const modes = fifos.filter((f) => Number(f['pipe_id']) === inoA).map((f) => Number((checkpoint.file(Number(f['regf_id']))['reg'] as Record<string, unknown>)['flags']) & 3);
  t.same(modes.sort(), [0, 1, 2], 'read, write and read-write descriptions of fifo-a');
  const data = [...checkpoint.image('fifo-data.img').entries()].map((e) => ({ entry: e.decode(), payload: Buffer.from(e.payload ?? []) }));
  const a = data.find((d) => Number(d.entry['pipe_id']) === inoA);
  const b = data.find((d) => Number(d.entry['pipe_id']) === inoB);
  t.equal(Number(a?.entry['bytes']), 70000, 'fifo-a: 70000 queued bytes');
  t.equal(a?.payload.length, 70000, 'and its payload follows the entry');
  t.equal(Number(a?.entry['size']), 128 * 1024, 'with its F_SETPIPE_SZ size');
  t.equal(b?.payload.toString(), 'fifo-b-data', 'fifo-b (writer only): its bytes');

  const rt = await restoreProgram(t, p, imagesDir);
  t.same(await rt.check(), { pass: true, text: 'PASS' });
});
