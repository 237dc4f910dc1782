// signalfd round trip (test/programs/eventfds.c, fd 13): the mask and O_NONBLOCK come back, the
// restored fd reads a raised SIGUSR2; a changed mask is noticed by the program's check.
import t from 'tap';
import { roundTrip, filesOfType, fdsOfTask } from './lib/shared-anon.js';

t.test('signalfd: image mask and flags', async (t) => {
  const trip = await roundTrip(t, 'eventfds', { restore: false });
  const fd = fdsOfTask(trip.dir, trip.pid).find((f) => f.fd === 13)!;
  const sgfd = filesOfType(trip.dir).get(fd.id)!.sgfd;
  t.equal(BigInt(sgfd.sigmask), (1n << 11n) | (1n << 36n), 'mask');
  t.equal(sgfd.flags & 0o4000, 0o4000, 'O_NONBLOCK');
});

t.test('signalfd: a changed mask after restore is noticed', async (t) => {
  const trip = await roundTrip(t, 'eventfds', { env: { CRR_SELFTEST_BREAK: 'mask' } });
  t.match(trip.check!.text, /^FAIL fd 13 sigmask/, 'the program sees the changed mask');
});
