// The one loader of the native addon (build/Release/crr_native.node). Its surface is typed in
// tracer-binding.ts (ptrace, process_vm_*), fds-binding.ts (fd-level calls), sockdiag-binding.ts
// and, below, spawn.cc's two functions, channel.cc's helper channels, namespaces.cc and sysvipc.cc.
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type { TracerBinding } from './tracer-binding.js';
import type { FdsBinding } from './fds-binding.js';
import type { SockDiagBinding } from './sockdiag-binding.js';

/** spawn.cc: the first helper started without child_process, and reaped by crr (helper.ts). */
interface SpawnBinding {
  /** posix_spawn of `path` with /dev/null on 0-2, `channelFd` on 3, default signals; its PID. */
  spawnChild(path: string, channelFd: number, env: string[]): number;
  /** waitpid on a libuv worker: only for a child of spawnChild that was killed or told to exit. */
  reapChild(pid: number): Promise<{ exitCode: number | null; signal: number | null }>;
}

/** channel.cc: a helper channel (SOCK_SEQPACKET) read and written by the addon, one packet each. */
export interface ChannelHandle {
  readonly __channel: unique symbol;
}
interface ChannelBinding {
  /**
   * Polls `fd` on Node's loop: onPacket per packet read, onEnd once when the peer closed or the
   * channel failed, onWritable after a send that found it full. From then on the channel owns the fd.
   */
  channelOpen(fd: number, onPacket: (packet: Buffer) => void, onEnd: () => void, onWritable: () => void): ChannelHandle;
  /** One packet; false: the channel is full, nothing sent, onWritable follows. Throws on other errors. */
  channelSend(channel: ChannelHandle, packet: Buffer): boolean;
  /** No callback after it; closes the fd. A second close does nothing. */
  channelClose(channel: ChannelHandle): void;
  /** Whether the open channel keeps Node running (it does at first). */
  channelRef(channel: ChannelHandle, keepsNodeRunning: boolean): void;
}

/**
 * namespaces.cc: files read or written by a thread of its own that entered the namespace at
 * `nsPath` (/proc/PID/ns/KIND; `nstype` its CLONE_NEW* flag) first. Both throw the errno Error
 * of the first failure (`syscall` setns, open, read or write), with `path`.
 */
/** A SysV IPC object as sysvipc.cc reads and makes it (`key` as the kernel's signed key_t). */
export interface SysvDesc {
  key: number;
  id: number;
  mode: number;
  uid: number;
  gid: number;
  cuid: number;
  cgid: number;
}
export interface SysvObjects {
  shm: Array<SysvDesc & { size: number; data: Buffer }>;
  msg: Array<SysvDesc & { qbytes: number; messages: Array<{ mtype: bigint; data: Buffer }> }>;
  sem: Array<SysvDesc & { values: number[] }>;
}

interface NamespacesBinding {
  /** Each file read whole, as text. */
  readInNamespace(nsPath: string, nstype: number, paths: readonly string[]): string[];
  /** Each text written to its path in one write, in order; with `euid`, by a thread with that effective uid. */
  writeInNamespace(nsPath: string, nstype: number, writes: ReadonlyArray<readonly [string, string]>, euid?: number): void;
  /** A close-on-exec socket of the network namespace at `nsPath` (made there by such a thread). */
  socketInNamespace(nsPath: string, family: number, type: number, protocol: number): number;
  /**
   * sysvipc.cc: every SysV object of the IPC namespace at `nsPath`, with its contents (messages
   * copied, not taken). Needs Linux 4.17+ (*_STAT_ANY).
   */
  sysvIpcRead(nsPath: string): SysvObjects;
  /**
   * Makes each object in the IPC namespace at `nsPath` with its id (its kind's *_next_id set
   * first; EEXIST when another id came back), fills it and sets its owner and mode.
   */
  sysvIpcCreate(nsPath: string, objects: SysvObjects): void;
  /** IPC_RMID of each segment of `ids` in the IPC namespace at `nsPath`. */
  sysvShmRemove(nsPath: string, ids: readonly number[]): void;
}

export type NativeBinding = TracerBinding & FdsBinding & SockDiagBinding & SpawnBinding & ChannelBinding & NamespacesBinding;

const addonPath = fileURLToPath(new URL('../../build/Release/crr_native.node', import.meta.url));

export const native: NativeBinding = createRequire(import.meta.url)(addonPath) as NativeBinding;

export { nativePaths } from './native-paths.js';
