// timerfd round trip (test/programs/eventfds.c, fds 14-16): relative time left and interval,
// an absolute CLOCK_REALTIME deadline that must not move, one pending tick; a re-armed timer
// after restore is noticed by the program's check (so the PASS of shared-eventfd.ts means
// something for timers).
import t from 'tap';
import { roundTrip } from './lib/shared-anon.js';

t.test('timerfd: a timer changed after restore is noticed', async (t) => {
  const trip = await roundTrip(t, 'eventfds', { env: { CRR_SELFTEST_BREAK: 'timer' } });
  t.match(trip.check!.text, /^FAIL fd 14 (interval|left)/, 'the program sees the changed timer');
});

// CRIU's rule, which crr follows: an absolute timer comes back at "now + time left at dump",
// so a deadline can only move later by the time spent dumped (the program checks that bound).
t.test('timerfd: timers restored a few seconds after the dump keep their time left', async (t) => {
  const trip = await roundTrip(t, 'eventfds', { restoreDelayMs: 3000 });
  t.equal(trip.check!.text.trim(), 'PASS', 'deadline, time left within bounds, ticks');
});
