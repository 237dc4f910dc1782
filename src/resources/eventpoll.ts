// epoll files: created like the other anon-inode kinds (eventfd.ts), then every registered fd
// is added back with its events and data. The watched fds must already be at their numbers, so
// the kind acts after every kind that lands fds in this stage. A target registered through an
// fd the task has since closed cannot be found again: that is an epoll_ctl EBADF naming the fd.
import type { Entry } from '../images/index.js';
import { helperOf, type RestoreCtx } from '../restore/context.js';
import { restoreAnonFds } from './eventfd.js';
import { holdsFdOfType, O_CLOEXEC } from './shared-fds.js';
import type { ResourceKind } from './types.js';

export const FD_TYPE_EVENTPOLL = 7;
const EPOLL_CTL_ADD = 1;

export const eventpoll: ResourceKind<RestoreCtx> = {
  name: 'eventpoll',
  stage: 'shared-fds',
  images: ['files', 'fdinfo-*'],
  after: ['regfile', 'chardev', 'pipe', 'fifo', 'unixsk', 'inetsk', 'netlinksk', 'eventfd', 'signalfd', 'timerfd', 'inotify', 'memfd', 'tty', 'pidfd'],
  appliesTo: holdsFdOfType(FD_TYPE_EVENTPOLL),
  describe: () => ['epoll instances, then their registered fds with events and data'],
  async restore(ctx) {
    await restoreAnonFds(ctx, FD_TYPE_EVENTPOLL, async (first) => {
      const epfd = first.file['epfd'] as Entry;
      const helper = helperOf(ctx);
      await helper.request('epoll_create', { flags: first.cloexec ? O_CLOEXEC : 0, fd: first.fd });
      const targets = (epfd['tfd'] as Entry[] | undefined) ?? [];
      const ops = targets.map((t) => ({ op: 'epoll_ctl', epfd: first.fd, ctl: EPOLL_CTL_ADD, fd: Number(t['tfd']), events: Number(t['events']), data: t['data'] ?? 0 }));
      if (!ops.length) return;
      try {
        await helper.batch(ops);
      } catch (err) {
        const index = (err as { index?: number }).index;
        if (index !== undefined && err instanceof Error) err.message += ` [epoll fd ${first.fd}: target fd ${ops[index]!.fd}]`;
        throw err;
      }
    });
  },
};
