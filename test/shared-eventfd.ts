// eventfd, signalfd and timerfd round trip: test/programs/eventfds.c sets them up (counters, a
// semaphore shared by two fds, a signal mask, relative/absolute/fired timers); crr dump writes
// what CRIU writes for them; crr restore (fresh PID namespace) brings them back; the program
// checks its own state. The images are also checked against what the program set up.
import t from 'tap';
import { roundTrip, filesOfType, fdsOfTask } from './lib/shared-anon.js';

t.test('eventfds: images hold counters, semaphore, mask, clocks and ticks', async (t) => {
  const trip = await roundTrip(t, 'eventfds', { restore: false });
  const fds = fdsOfTask(trip.dir, trip.pid);
  const byFd = new Map(fds.map((f) => [f.fd, f]));
  t.same([10, 11, 12, 13, 14, 15, 16].map((n) => byFd.get(n)?.type), [6, 6, 6, 9, 17, 17, 17], 'fd types EVENTFD, SIGNALFD, TIMERFD');
  t.equal(byFd.get(11)!.id, byFd.get(12)!.id, 'fds 11 and 12 are one description');
  t.equal(byFd.get(11)!.flags, 1, 'fd 11 close-on-exec');
  const files = filesOfType(trip.dir);
  const efd = (fd: number) => files.get(byFd.get(fd)!.id)!.efd;
  t.equal(BigInt(efd(10).counter), 7n, 'counter of fd 10');
  t.equal(efd(10).flags & 0o4000, 0o4000, 'fd 10 O_NONBLOCK');
  t.equal(BigInt(efd(11).counter), 3n, 'counter of fd 11');
  t.equal(efd(11).flags & 1, 1, 'fd 11 EFD_SEMAPHORE');
  const sg = files.get(byFd.get(13)!.id)!.sgfd;
  t.equal(BigInt(sg.sigmask), (1n << 11n) | (1n << 36n), 'signalfd mask SIGUSR2 | SIGRTMIN+3');
  const tfd = (fd: number) => files.get(byFd.get(fd)!.id)!.tfd;
  t.equal(tfd(14).clockid, 1, 'fd 14 CLOCK_MONOTONIC');
  t.same([Number(tfd(14).isec), tfd(14).insec], [7, 500000000], 'fd 14 interval 7.5 s');
  t.ok(Number(tfd(14).vsec) <= 1000 && Number(tfd(14).vsec) > 900, 'fd 14 time left about 1000 s');
  t.same([tfd(15).clockid, tfd(15).settime_flags], [0, 1], 'fd 15 CLOCK_REALTIME, TFD_TIMER_ABSTIME');
  t.ok(Number(tfd(15).vsec) > 3500 && Number(tfd(15).vsec) <= 3600, 'fd 15 time left is relative (about 3600 s)');
  t.equal(BigInt(tfd(16).ticks), 1n, 'fd 16 one pending tick');
});

t.test('eventfds: state before dump == state after restore', async (t) => {
  const trip = await roundTrip(t, 'eventfds');
  t.equal(trip.check!.text.trim(), 'PASS', 'the restored program checks its eventfds, signalfd and timerfds');
});

t.test('eventfds: the check notices a damaged restore', async (t) => {
  const trip = await roundTrip(t, 'eventfds', { env: { CRR_SELFTEST_BREAK: 'ticks' } });
  t.match(trip.check!.text, /^FAIL fd 16 ticks/, 'a drained timerfd is reported');
});
