// signalfd files: the signal mask they accept and their flags (O_NONBLOCK), made natively with
// signalfd4 at the task's fd numbers (see eventfd.ts for how shared ones land).
import type { Entry } from '../images/index.js';
import { helperOf, type RestoreCtx } from '../restore/context.js';
import { O_NONBLOCK, restoreAnonFds } from './eventfd.js';
import { holdsFdOfType, O_CLOEXEC } from './shared-fds.js';
import type { ResourceKind } from './types.js';

export const FD_TYPE_SIGNALFD = 9;

export const signalfd: ResourceKind<RestoreCtx> = {
  name: 'signalfd',
  stage: 'shared-fds',
  images: ['files', 'fdinfo-*'],
  appliesTo: holdsFdOfType(FD_TYPE_SIGNALFD),
  describe: () => ['signalfds with their masks'],
  async restore(ctx) {
    await restoreAnonFds(ctx, FD_TYPE_SIGNALFD, async (first) => {
      const sgfd = first.file['sgfd'] as Entry;
      await helperOf(ctx).request('signalfd', {
        mask: BigInt(sgfd['sigmask'] as bigint | number),
        flags: (Number(sgfd['flags'] ?? 0) & O_NONBLOCK) | (first.cloexec ? O_CLOEXEC : 0),
        fd: first.fd,
      });
    });
  },
};
