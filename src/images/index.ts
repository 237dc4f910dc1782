// The public face of src/images: everything the restorer, the dumper and the CLI need to read
// and write CRIU images. Import from here, not from the files behind it.
export * from './schema.js';
export * from './codec.js';
export * from './crit-json.js';
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
export { encodeImage, writeImage, ImageWriter, type EntryToWrite } from './writer.js';
export {
  Checkpoint,
  openCheckpoint,
  FD_TYPES,
  type PstreeTask,
  type TaskIds,
  type FdinfoEntry,
  type FsEntry,
} from './checkpoint.js';
export {
  readPagemap,
  openPages,
  PAGE_SIZE,
  PE_PARENT,
  PE_LAZY,
  PE_PRESENT,
  type Pagemap,
  type PagemapRun,
  type PagesFile,
} from './pagemap.js';

import { openCheckpoint } from './checkpoint.js';
/** Opens and checks a checkpoint directory (the library's `readImages`). */
export const readImages = (dir: string) => openCheckpoint(dir);
