// timerfd files: clock, time left and interval, pending expirations (ticks), flags. Like CRIU,
// the image holds the time left when the task was dumped; a TFD_TIMER_ABSTIME timer is armed
// again at "clock now + time left" with the same flag (so a later clock change still moves it),
// a relative one with the time left. Pending ticks go back with TFD_IOC_SET_TICKS.
import type { Entry } from '../images/index.js';
import { helperOf, type RestoreCtx } from '../restore/context.js';
import { O_NONBLOCK, restoreAnonFds } from './eventfd.js';
import { holdsFdOfType, O_CLOEXEC } from './shared-fds.js';
import type { ResourceKind } from './types.js';

export const FD_TYPE_TIMERFD = 17;

const num = (v: unknown) => (typeof v === 'bigint' ? Number(v) : Number(v ?? 0));

export const timerfd: ResourceKind<RestoreCtx> = {
  name: 'timerfd',
  stage: 'shared-fds',
  images: ['files', 'fdinfo-*'],
  appliesTo: holdsFdOfType(FD_TYPE_TIMERFD),
  describe: () => ['timerfds with their clocks, remaining times, intervals and ticks'],
  async restore(ctx) {
    await restoreAnonFds(ctx, FD_TYPE_TIMERFD, async (first) => {
      const tfd = first.file['tfd'] as Entry;
      await helperOf(ctx).request('timerfd', {
        clockid: num(tfd['clockid']),
        flags: (num(tfd['flags']) & O_NONBLOCK) | (first.cloexec ? O_CLOEXEC : 0),
        settimeFlags: num(tfd['settime_flags']),
        value: [num(tfd['vsec']), num(tfd['vnsec'])],
        interval: [num(tfd['isec']), num(tfd['insec'])],
        ticks: tfd['ticks'] ?? 0,
        fd: first.fd,
      });
    });
  },
};
