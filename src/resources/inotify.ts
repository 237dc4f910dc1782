// inotify files: the instance (flags), then each watch by path and mask with the watch
// descriptor the task had (the helper adds and removes watches until the kernel hands out that
// number). CRIU's image keeps a file handle for each watched inode; crr's dumper also records
// the path it resolved (fh_entry.path), which is what the restore opens. A watch with no path
// (an image from a dumper that only kept the handle) is refused with a clear error.
import { StageError } from '../errors.js';
import type { Entry } from '../images/index.js';
import { helperOf, type RestoreCtx } from '../restore/context.js';
import { O_NONBLOCK, restoreAnonFds } from './eventfd.js';
import { holdsFdOfType, O_CLOEXEC } from './shared-fds.js';
import type { ResourceKind } from './types.js';

export const FD_TYPE_INOTIFY = 8;

export const inotify: ResourceKind<RestoreCtx> = {
  name: 'inotify',
  stage: 'shared-fds',
  images: ['files', 'fdinfo-*'],
  appliesTo: holdsFdOfType(FD_TYPE_INOTIFY),
  describe: () => ['inotify instances and their watches (path, mask, watch descriptor)'],
  async restore(ctx) {
    await restoreAnonFds(ctx, FD_TYPE_INOTIFY, async (first) => {
      const ify = first.file['ify'] as Entry;
      const helper = helperOf(ctx);
      await helper.request('inotify_init', { flags: (Number(ify['flags'] ?? 0) & O_NONBLOCK) | (first.cloexec ? O_CLOEXEC : 0), fd: first.fd });
      const watches = ((ify['wd'] as Entry[] | undefined) ?? []).slice().sort((a, b) => Number(a['wd']) - Number(b['wd']));
      for (const w of watches) {
        const path = (w['f_handle'] as Entry | undefined)?.['path'];
        if (typeof path !== 'string' || !path) {
          throw new StageError({ stage: ctx.stage, pid: ctx.pid, resource: ctx.resource, code: 'ENOTSUP', message: `inotify fd ${first.fd} watch ${String(w['wd'])} (inode ${String(w['i_ino'])}) has no path in the image: not supported` });
        }
        try {
          await helper.request('inotify_add_watch', { fd: first.fd, path, mask: Number(w['mask']), wd: Number(w['wd']) });
        } catch (err) {
          if (err instanceof Error) err.message += ` [inotify fd ${first.fd} watch ${String(w['wd'])}: ${path}]`;
          throw err;
        }
      }
    });
  },
};
