// inotify round trip: test/programs/inotify.c watches a directory and a file, with a freed
// watch descriptor between them (wd 1 and 3). The images must hold both watches with their
// masks, inodes, file handles and the paths the dumper found; the restored program checks
// fdinfo and that events still arrive with the same wds.
import t from 'tap';
import { join } from 'node:path';
import { dirname } from 'node:path';
import { roundTrip, filesOfType, fdsOfTask } from './lib/shared-anon.js';

t.test('inotify: images hold the watches by path, mask and wd', async (t) => {
  const trip = await roundTrip(t, 'inotify', { restore: false });
  const byFd = new Map(fdsOfTask(trip.dir, trip.pid).map((f) => [f.fd, f]));
  t.same([byFd.get(30)?.type, byFd.get(31)?.type], [8, 8], 'fds 30 and 31 are INOTIFY');
  t.equal(byFd.get(30)!.id, byFd.get(31)!.id, 'one description');
  const ify = filesOfType(trip.dir).get(byFd.get(30)!.id)!.ify;
  const base = dirname(trip.resultFile);
  t.same(ify.wd.map((w: any) => [w.wd, w.mask, w.f_handle.path]), [
    [1, 0x300, join(base, 'watched-dir')],
    [3, 0xa, join(base, 'watched-file')],
  ], 'wd, mask and path of each watch');
  t.ok(ify.wd.every((w: any) => w.f_handle.bytes > 0 && w.f_handle.handle.length > 0), 'file handles recorded');
});

t.test('inotify: state before dump == state after restore', async (t) => {
  const trip = await roundTrip(t, 'inotify');
  t.equal(trip.check!.text.trim(), 'PASS', 'the restored program checks its watches and gets events');
});

t.test('inotify: the check notices a missing watch', async (t) => {
  const trip = await roundTrip(t, 'inotify', { env: { CRR_SELFTEST_BREAK: 'missing' } });
  t.match(trip.check!.text, /^FAIL/, 'a removed watch is reported');
});
