// The one loader of the native addon (build/Release/crr_native.node). Its surface is typed in
// tracer-binding.ts (ptrace, process_vm_*) and fds-binding.ts (fd-level calls).
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type { TracerBinding } from './tracer-binding.js';
import type { FdsBinding } from './fds-binding.js';
import type { SockDiagBinding } from './sockdiag-binding.js';

export type NativeBinding = TracerBinding & FdsBinding & SockDiagBinding;

const addonPath = fileURLToPath(new URL('../../build/Release/crr_native.node', import.meta.url));

export const native: NativeBinding = createRequire(import.meta.url)(addonPath) as NativeBinding;

/** Paths of the native executables and the stub, built into native/build/ by the set-up. */
export const nativePaths = {
  helper: fileURLToPath(new URL('../../native/build/crr-helper', import.meta.url)),
  stub: fileURLToPath(new URL('../../native/build/stub.bin', import.meta.url)),
};
