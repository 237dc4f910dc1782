// The remote-syscall stub as TypeScript sees it: its bytes (native/build/stub.bin), the scratch
// layout constants of native/stub/stub.h (test/native-stub.ts checks they agree), and the
// packing of a command list into the structs the stub reads.
import { readFileSync } from 'node:fs';
import { nativePaths } from './native.js';

export const STUB_ENTRY_BATCH = 0x00;
export const STUB_ENTRY_SYSCALL = 0x60;
export const STUB_BATCH_TRAP_END = 0x5c;
export const STUB_SYSCALL_TRAP_END = STUB_ENTRY_SYSCALL + 3;
export const STUB_CODE_SIZE = 0x80;
export const STUB_HEADER_OFFSET = STUB_CODE_SIZE;
export const STUB_HEADER_SIZE = 0x40;
export const STUB_CMDS_OFFSET = STUB_HEADER_OFFSET + STUB_HEADER_SIZE;
export const STUB_CMD_SIZE = 72;
export const STUB_MAX_COMMANDS = 4096;
/** Where the caller's own data (iovecs, paths, structs) may go inside the scratch area. */
export const STUB_DATA_OFFSET = 0x49000;
export const STUB_SCRATCH_SIZE = 0x100000;
export const STUB_STOP_ON_ERROR = 0x1;
/** clone3 whose new thread runs the list at args[2] instead of its parent's (stub.h). */
export const STUB_CLONE_CHILD_LIST = 0x2;

let cached: Buffer | undefined;
/** The stub's code, to copy to the start of a scratch area. */
export function stubCode(): Buffer {
  cached ??= readFileSync(nativePaths.stub);
  return cached;
}

export interface StubCommand {
  nr: number;
  args?: ReadonlyArray<number | bigint>;
  flags?: number;
}

/** Packs commands as crr_stub_cmd structs (the tracer pre-sets each result to -ENOSYS). */
export function packCommands(commands: readonly StubCommand[]): Buffer {
  const buf = Buffer.allocUnsafe(commands.length * STUB_CMD_SIZE);
  packCommandsInto(buf, 0, commands);
  return buf;
}

/**
 * packCommands straight into `buf` at byte `at` (whole structs written, result 0), with no
 * buffer of its own: per-thread lists are packed by the thousand. `flagsOf` gives each
 * command's flags when the commands carry none of their own.
 */
export function packCommandsInto<C extends StubCommand>(buf: Buffer, at: number, commands: readonly C[], flagsOf?: (command: C) => number): void {
  if (commands.length > STUB_MAX_COMMANDS) {
    throw new RangeError(`a batch holds at most ${STUB_MAX_COMMANDS} commands, got ${commands.length}`);
  }
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  for (let i = 0; i < commands.length; i++) {
    const c = commands[i]!;
    packCommand(view, at + i * STUB_CMD_SIZE, c.nr, c.args ?? NO_ARGS, flagsOf ? flagsOf(c) : (c.flags ?? 0), i);
  }
}

const NO_ARGS: readonly number[] = [];

/**
 * One crr_stub_cmd at byte `base` of `view` (result 0): for builders that keep their commands
 * in their own form and pack them without making StubCommand objects (`index` is for errors).
 */
export function packCommand(view: DataView, base: number, nr: number, args: ReadonlyArray<number | bigint>, flags: number, index = 0): void {
  if (args.length > 6) throw new RangeError(`command ${index}: at most 6 syscall arguments`);
  view.setUint32(base, nr, true);
  view.setUint32(base + 4, 0, true);
  for (let a = 0; a < 6; a++) setU64(view, base + 8 + a * 8, a < args.length ? args[a]! : 0);
  view.setUint32(base + 56, flags, true);
  view.setUint32(base + 60, 0, true);
  view.setUint32(base + 64, 0, true);
  view.setUint32(base + 68, 0, true);
}

/**
 * A u64 at byte `at` (little-endian). Non-negative integer numbers (addresses are below 2^53)
 * are written as two u32 halves, with no BigInt made; a negative number or a bigint wraps to
 * its 64-bit two's complement (an unsigned bigint above 2^63 keeps its bits).
 */
export function setU64(view: DataView, at: number, v: number | bigint): void {
  if (typeof v === 'number' && v >= 0 && v <= Number.MAX_SAFE_INTEGER && Number.isInteger(v)) {
    view.setUint32(at, v % 0x1_0000_0000, true);
    view.setUint32(at + 4, Math.floor(v / 0x1_0000_0000), true);
  } else {
    view.setBigUint64(at, typeof v === 'bigint' ? v : BigInt(v), true);
  }
}

/**
 * Reads the i64 results a batch returned. An indexed loop: Array.from over a BigInt64Array goes
 * through the iterator protocol, an object per result (~8 MB per tree-1000 restore).
 */
export function unpackResults(buf: Buffer, executed: number): bigint[] {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const out: bigint[] = [];
  for (let i = 0; i < executed; i++) out.push(view.getBigInt64(i * 8, true));
  return out;
}
