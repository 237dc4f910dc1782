// epoll round trip: test/programs/epoll.c registers an eventfd and both ends of a pipe with
// distinct events and 64-bit data, and nests the epoll in a second one. The images must hold
// each registration (eventpoll_tfd_entry); the restored program checks fdinfo and readiness.
import t from 'tap';
import { roundTrip, filesOfType, fdsOfTask } from './lib/shared-anon.js';

t.test('epoll: images hold every registration with events and data', async (t) => {
  const trip = await roundTrip(t, 'epoll', { restore: false });
  const byFd = new Map(fdsOfTask(trip.dir, trip.pid).map((f) => [f.fd, f]));
  t.same([20, 24].map((n) => byFd.get(n)?.type), [7, 7], 'fds 20 and 24 are EVENTPOLL');
  const files = filesOfType(trip.dir);
  const tfds = files.get(byFd.get(20)!.id)!.epfd.tfd.map((e: any) => [e.tfd, (e.events & ~0x18) >>> 0, BigInt(e.data)]);
  t.same(tfds, [[21, 0x80000001, 0x1122334455667788n], [22, 0x2001, 22n], [23, 0x4, 0xfffffffffffffffen]], 'targets of fd 20');
  const nested = files.get(byFd.get(24)!.id)!.epfd.tfd.map((e: any) => [e.tfd, BigInt(e.data)]);
  t.same(nested, [[20, 7n]], 'fd 24 watches fd 20');
});

t.test('epoll: state before dump == state after restore', async (t) => {
  const trip = await roundTrip(t, 'epoll');
  t.equal(trip.check!.text.trim(), 'PASS', 'the restored program checks its epoll registrations');
});

t.test('epoll: the check notices changed data', async (t) => {
  const trip = await roundTrip(t, 'epoll', { env: { CRR_SELFTEST_BREAK: 'data' } });
  t.match(trip.check!.text, /^FAIL tfd 22 data 63/, 'changed data is reported');
});
