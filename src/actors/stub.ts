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
    const base = at + i * STUB_CMD_SIZE;
    const args = c.args ?? [];
    if (args.length > 6) throw new RangeError(`command ${i}: at most 6 syscall arguments`);
    view.setUint32(base, c.nr, true);
    view.setUint32(base + 4, 0, true);
    for (let a = 0; a < 6; a++) {
      const v = a < args.length ? args[a]! : 0;
      const to = base + 8 + a * 8;
      // Small non-negative numbers skip BigInt conversion: the common case, and much cheaper.
      if (typeof v === 'number' && v >= 0 && v <= 0xffffffff && Number.isInteger(v)) {
        view.setUint32(to, v, true);
        view.setUint32(to + 4, 0, true);
      } else {
        view.setBigInt64(to, BigInt(v), true); // wraps: an unsigned bigint above 2^63 keeps its bits
      }
    }
    view.setUint32(base + 56, flagsOf ? flagsOf(c) : (c.flags ?? 0), true);
    view.setUint32(base + 60, 0, true);
    view.setBigInt64(base + 64, 0n, true);
  }
}

/** Reads the i64 results a batch returned. */
export function unpackResults(buf: Buffer, executed: number): bigint[] {
  const aligned = buf.byteOffset % 8 === 0 ? buf : Buffer.from(buf);
  return Array.from(new BigInt64Array(aligned.buffer, aligned.byteOffset, executed));
}
