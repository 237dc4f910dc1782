// The public face of src/images: everything the restorer and the dumper need to read CRIU images
// and check them. Import from here, not from the files behind it, except for what only some
// commands need: writing images (./writer.js: the dumper, crr encode) and crit-style JSON
// (./crit-json.js: crr show/encode) are imported from their own files, so a restore, which
// loads this module, does not load them.
export * from './schema.js';
export * from './codec.js';
export {
  readImage,
  parseImage,
  readWholeFile,
  kindForPath,
  entryType,
  headWords,
  MAX_ENTRY_BYTES,
  SUPPORTED_IMG_VERSION,
  type ImageFile,
  type LazyEntry,
} from './reader.js';
export {
  Checkpoint,
  openCheckpoint,
  FD_TYPES,
  CTTY_INFO_ID,
  TTY_TYPE,
  USK_EXTERN,
  type PstreeTask,
  type TaskIds,
  type FdinfoEntry,
  type FsEntry,
} from './checkpoint.js';
export {
  readPagemap,
  hasParentCheckpoint,
  pageSources,
  openPages,
  PAGE_SIZE,
  PE_PARENT,
  PE_LAZY,
  PE_PRESENT,
  type Pagemap,
  type PagemapRun,
  type ParentPages,
  type PagesFile,
} from './pagemap.js';

import { openCheckpoint } from './checkpoint.js';
/** Opens and checks a checkpoint directory (the library's `readImages`). */
export const readImages = (dir: string) => openCheckpoint(dir);
