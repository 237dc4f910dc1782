// The library entry of crr: `import { restore, dump, readImages } from 'crr'`.
export { restore, type RestoreOptions, type RestoreResult, type RootExit } from './restore/index.js';
export { dump } from './dump/index.js';
export { readImages, openCheckpoint, type Checkpoint } from './images/index.js';
export { CrrError, UsageError, ImageError, NativeError, StageError } from './errors.js';
