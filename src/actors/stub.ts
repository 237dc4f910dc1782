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
  if (commands.length > STUB_MAX_COMMANDS) {
    throw new RangeError(`a batch holds at most ${STUB_MAX_COMMANDS} commands, got ${commands.length}`);
  }
  const words = new BigInt64Array(commands.length * 9);
  const halves = new Uint32Array(words.buffer);
  for (let i = 0; i < commands.length; i++) {
    const c = commands[i]!;
    const base = i * 9;
    halves[base * 2] = c.nr;
    const args = c.args ?? [];
    if (args.length > 6) throw new RangeError(`command ${i}: at most 6 syscall arguments`);
    for (let a = 0; a < args.length; a++) {
      const v = args[a]!;
      // Small non-negative numbers skip BigInt conversion: the common case, and much cheaper.
      if (typeof v === 'number' && v >= 0 && v <= 0xffffffff && Number.isInteger(v)) halves[(base + 1 + a) * 2] = v;
      else words[base + 1 + a] = BigInt(v);
    }
    halves[(base + 7) * 2] = c.flags ?? 0;
  }
  return Buffer.from(words.buffer, 0, words.byteLength);
}

/** Reads the i64 results a batch returned. */
export function unpackResults(buf: Buffer, executed: number): bigint[] {
  const aligned = buf.byteOffset % 8 === 0 ? buf : Buffer.from(buf);
  return Array.from(new BigInt64Array(aligned.buffer, aligned.byteOffset, executed));
}
