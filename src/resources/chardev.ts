// Character devices (/dev/null, /dev/zero, /dev/urandom, ...) at their exact fd numbers with
// their flags. CRIU records them as regular-file entries whose mode says S_IFCHR; they have no
// size or build-id, and an offset on them means nothing, so none is restored.
import type { RestoreCtx } from '../restore/context.js';
import { openAtFds, regFds } from './regfile.js';
import type { ResourceKind } from './types.js';

export const chardev: ResourceKind<RestoreCtx> = {
  name: 'chardev',
  stage: 'shared-fds',
  images: ['files', 'fdinfo-*'],
  appliesTo: (task) => !task.zombie,
  async restore(ctx) {
    await openAtFds(ctx, regFds(ctx, true), false);
  },
};
