// File locks across a dump and restore: flock (exclusive, shared), POSIX (two ranges in the
// parent, one in a child, on one shared description) and OFD locks. filelocks.img must list each
// lock once with its owner and fd; the restored program's probe must find every lock held by
// the same process over the same range.
import t from 'tap';
import { join } from 'node:path';
import { readImage } from '../src/images/reader.js';
import { parseFdinfoLocks } from '../src/dump/file-locks.js';
import { flockStruct } from '../src/resources/file-locks.js';
import { requestCheck, startProgram } from './lib/programs.js';
import { dumpProgram, restoreProgram } from './lib/program-roundtrip.js';

const img = (dir: string, name: string) => readImage(join(dir, name)).all() as any[];

t.test('fdinfo lock lines and struct flock', async (t) => {
  const text = 'pos:\t0\nflags:\t02\nlock:\t1: POSIX  ADVISORY  WRITE 812 00:2a:1234 100 199\nlock:\t2: OFDLCK ADVISORY  READ  -1 00:2a:1234 300 EOF\nlock:\t3: FLOCK  ADVISORY  WRITE 812 00:2a:1234 0 EOF\n';
  t.same(parseFdinfoLocks(text, { pid: 812, fd: 3 }), [
    { flag: 1, type: 1, start: 100n, len: 100n },
    { flag: 4, type: 0, start: 300n, len: 0n },
    { flag: 2, type: 1, start: 0n, len: 0n },
  ]);
  t.throws(() => parseFdinfoLocks('lock:\t1: LEASE  ACTIVE    READ  812 00:2a:1234 0 EOF\n', { pid: 812, fd: 3 }), /does not support/);
  const f = flockStruct({ type: 1, start: 100n, len: 100n });
  t.same([f.readInt16LE(0), f.readInt16LE(2), f.readBigInt64LE(8), f.readBigInt64LE(16), f.readInt32LE(24)], [1, 0, 100n, 100n, 0]);
});

t.test('the self-check notices lost and moved locks', async (t) => {
  for (const kind of ['flock', 'posix', 'owner', 'ofd']) {
    const prog = await startProgram(t, 'locks', [], { env: { CRR_SELFTEST_BREAK: kind } });
    const r = await requestCheck(prog.pid, prog.resultFile);
    t.notOk(r.pass, `break ${kind}: ${r.text}`);
  }
  const prog = await startProgram(t, 'locks');
  const r = await requestCheck(prog.pid, prog.resultFile);
  t.ok(r.pass, `passes undamaged: ${r.text}`);
});

t.test('file locks survive dump and restore', async (t) => {
  const prog = await startProgram(t, 'locks');
  const dir = await dumpProgram(t, prog);
  const pstree = img(dir, 'pstree.img');
  const parent = pstree.find((e) => e.pid === prog.pid)!.pid;
  const child = pstree.find((e) => e.pid !== prog.pid)!.pid;
  const locks = img(dir, 'filelocks.img').map((l) => [l.flag, l.type, l.pid, l.fd, Number(l.start), Number(l.len)]);
  t.same(locks.sort(), [
    [2, 1, parent, 10, 0, 0],
    [1, 1, parent, 11, 100, 100],
    [1, 0, parent, 11, 1000, 0],
    [4, 1, parent, 12, 0, 10],
    [4, 0, parent, 12, 50, 10],
    [2, 0, parent, 13, 0, 0],
    [1, 1, child, 11, 500, 10],
  ].sort(), 'one entry per lock, with its owner and fd');
  const rt = await restoreProgram(t, prog, dir);
  const r = await rt.check();
  t.equal(r.text.trim(), 'PASS', 'the restored processes hold the same locks');
});
