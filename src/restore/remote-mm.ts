// struct prctl_mm_map (PR_SET_MM_MAP) from an mm image: the eleven layout fields, the saved
// auxv and the exe fd, in the kernel's byte layout. One call sets them all (kernel notes trap 6).
import { setU64 } from '../actors/stub.js';
const FIELDS = [
  'mm_start_code',
  'mm_end_code',
  'mm_start_data',
  'mm_end_data',
  'mm_start_brk',
  'mm_brk',
  'mm_start_stack',
  'mm_arg_start',
  'mm_arg_end',
  'mm_env_start',
  'mm_env_end',
] as const;

/** sizeof(struct prctl_mm_map): 11 u64, the auxv pointer, auxv_size (u32), exe_fd (u32). */
export const PRCTL_MM_MAP_SIZE = 104;
/** The kernel's mm->saved_auxv holds AT_VECTOR_SIZE u64 words (x86-64 on 6.x: 2 * (22 + 3 + 1) = 52). */
export const AUXV_MAX_WORDS = 52;

/** The auxv words as bytes, with an AT_NULL pair at the end when the image has none and room is left. */
export function auxvBytes(words: ReadonlyArray<number | bigint>): Buffer {
  const n = Math.min(words.length - (words.length % 2), AUXV_MAX_WORDS);
  const terminated = n >= 2 && Number(words[n - 2]) === 0;
  // Zero-filled: the AT_NULL pair added is already there.
  const buf = Buffer.alloc((!terminated && n + 2 <= AUXV_MAX_WORDS ? n + 2 : n) * 8);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  for (let i = 0; i < n; i++) setU64(view, i * 8, words[i]!); // no BigInt made per word (1,000 tasks: ~50,000 words)
  return buf;
}

/** The struct, given where the auxv bytes are in the task and how long they are. */
export function encodePrctlMmMap(mm: Record<string, unknown>, auxv: { addr: bigint; size: number }, exeFd: number): Buffer {
  const buf = Buffer.alloc(PRCTL_MM_MAP_SIZE);
  FIELDS.forEach((field, i) => {
    const v = mm[field];
    if (v === undefined) throw new Error(`the mm image has no ${field}`);
    buf.writeBigUInt64LE(BigInt.asUintN(64, BigInt(v as bigint)), i * 8);
  });
  buf.writeBigUInt64LE(auxv.addr, 88);
  buf.writeUInt32LE(auxv.size, 96);
  buf.writeUInt32LE(exeFd >>> 0, 100);
  return buf;
}

/** comm as PR_SET_NAME takes it: at most 15 bytes and a NUL. */
export function commBytes(comm: string): Buffer {
  const raw = Buffer.from(comm, 'utf8').subarray(0, 15);
  return Buffer.concat([raw, Buffer.alloc(1)]);
}
