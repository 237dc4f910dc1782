// Paths of the native executables and the stub, built into native/build/ by the set-up: a module
// of its own, so a caller that only runs one (crr check) does not load the addon.
import { fileURLToPath } from 'node:url';

export const nativePaths = {
  helper: fileURLToPath(new URL('../../native/build/crr-helper', import.meta.url)),
  lazyPages: fileURLToPath(new URL('../../native/build/crr-lazy-pages', import.meta.url)),
  stub: fileURLToPath(new URL('../../native/build/stub.bin', import.meta.url)),
};
