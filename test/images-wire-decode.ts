// The direct wire decoder (src/images/wire-decode.ts) gives exactly protobufjs's Entry (same
// keys in the same order, same value types) for every entry of every fixture and of a crr dump,
// and leaves to protobufjs whatever is not plain: unknown fields, a wrong wire type, a missing
// required field, truncated input.
import t from 'tap';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { decodeByProtobufjs, decodeEntry, encodeEntry, messageFields } from '../src/images/codec.js';
import { decodePlain } from '../src/images/wire-decode.js';
import { readImage } from '../src/images/reader.js';
import { imageKindForFile } from '../src/images/schema.js';
import { SHARED } from './lib/shared-dir.js';

const FIXTURES = SHARED + 'fixtures/criu-4.2';

/** A deep description that tells key order, bigint from number, Uint8Array from Buffer. */
function shape(v: unknown): unknown {
  if (typeof v === 'bigint') return `${v}n`;
  if (v instanceof Uint8Array) return { [v.constructor.name]: [...v] };
  if (Array.isArray(v)) return v.map(shape);
  if (v && typeof v === 'object') return Object.entries(v).map(([k, x]) => [k, shape(x)]);
  return v;
}

t.test('every fixture entry decodes the same both ways', async (t) => {
  let plain = 0;
  let entries = 0;
  for (const dir of readdirSync(FIXTURES).sort()) {
    for (const name of readdirSync(join(FIXTURES, dir)).sort()) {
      const kind = imageKindForFile(name);
      if (!kind || kind.head === 'raw') continue;
      const image = readImage(join(FIXTURES, dir, name), kind);
      for (const lazy of image.entries()) {
        entries++;
        const fast = decodePlain(lazy.type, lazy.bytes, messageFields);
        const reference = decodeByProtobufjs(lazy.type, lazy.bytes);
        if (fast) plain++;
        t.same(shape(decodeEntry(lazy.type, lazy.bytes)), shape(reference), `${dir}/${name} #${lazy.offset}`);
      }
    }
  }
  t.ok(entries > 100, `${entries} entries`);
  t.ok(plain > entries * 0.9, `the direct decoder took ${plain} of ${entries}`);
});

const coreEntry = () => ({
  mtype: 1,
  thread_info: {
    clear_tid_addr: 0x7f0000001000n,
    gpregs: Object.fromEntries(['r15', 'r14', 'r13', 'r12', 'bp', 'bx', 'r11', 'r10', 'r9', 'r8', 'ax', 'cx', 'dx', 'si', 'di', 'orig_ax', 'ip', 'cs', 'flags', 'sp', 'ss', 'fs_base', 'gs_base', 'ds', 'es', 'fs', 'gs'].map((n, i) => [n, i === 15 ? (1n << 64n) - 1n : BigInt(i) << 40n])),
    fpregs: { cwd: 0x37f, swd: 0, twd: 0, fop: 0, rip: 0n, rdp: 0n, mxcsr: 0x1f80, mxcsr_mask: 0xffff, st_space: Array.from({ length: 32 }, (_, i) => i * 0x1001), xmm_space: Array.from({ length: 64 }, (_, i) => (0xffffffff - i) >>> 0) },
  },
  thread_core: { futex_rla: 0x7f00n, futex_rla_len: 24, sched_nice: -5, sched_policy: 0, comm: 'wörker', creds: { uid: 0, gid: 0, euid: 0, egid: 0, suid: 0, sgid: 0, fsuid: 0, fsgid: 0, cap_inh: [0, 0], cap_prm: [1, 2], cap_eff: [1, 2], cap_bnd: [1, 2], secbits: 0, groups: [4, 0] }, blk_sigset: 0x8000000000000000n },
});

t.test('a thread core with negatives, 64-bit extremes, packed arrays and UTF-8', async (t) => {
  const bytes = Buffer.from(encodeEntry('core_entry', coreEntry()));
  const fast = decodePlain('core_entry', bytes, messageFields);
  t.ok(fast, 'plain');
  t.same(shape(fast), shape(decodeByProtobufjs('core_entry', bytes)));
  t.equal((fast!['thread_core'] as Record<string, unknown>)['sched_nice'], -5, 'int32 negative');
  t.equal((fast!['thread_core'] as Record<string, unknown>)['comm'], 'wörker', 'UTF-8 from a Buffer');
  const asUint8 = new Uint8Array(bytes);
  t.equal(decodePlain('core_entry', asUint8, messageFields), undefined, 'non-ASCII text outside a Buffer is left to protobufjs');
  t.same(shape(decodeEntry('core_entry', asUint8)), shape(fast), 'and decodeEntry still gives the same');
});

t.test('what is not plain goes to protobufjs', async (t) => {
  const bytes = Buffer.from(encodeEntry('core_entry', coreEntry()));
  const unknown = Buffer.concat([bytes, Buffer.from([0xf8, 0x01, 0x05])]); // field 31, varint 5
  t.equal(decodePlain('core_entry', unknown, messageFields), undefined, 'unknown field');
  const viaEntry = decodeEntry('core_entry', unknown);
  const reference = decodeByProtobufjs('core_entry', unknown);
  t.same(shape(viaEntry), shape(reference), 'decodeEntry gives what protobufjs gives');
  t.same(Object.getOwnPropertyDescriptor(viaEntry, '$unknowns')?.value, Object.getOwnPropertyDescriptor(reference, '$unknowns')?.value, 'unknown fields kept alike');
  t.equal(decodePlain('core_entry', Buffer.from([0x0d, 1, 0, 0, 0]), messageFields), undefined, 'mtype with a wrong wire type');
  t.equal(decodePlain('core_entry', Buffer.from([0x12, 0x00]), messageFields), undefined, 'required mtype missing');
  t.throws(() => decodeEntry('core_entry', Buffer.from([0x12, 0x00])), /missing required/, 'protobufjs names the missing field');
  t.equal(decodePlain('core_entry', bytes.subarray(0, bytes.length - 3), messageFields), undefined, 'truncated');
  t.throws(() => decodeEntry('core_entry', bytes.subarray(0, bytes.length - 3)), 'truncated input still fails');
  const twice = Buffer.concat([Buffer.from([0x08, 0x01]), Buffer.from([0x2a, 0x00, 0x2a, 0x00])]); // thread_core twice: protobufjs merges
  t.equal(decodePlain('core_entry', twice, messageFields), undefined, 'a singular message twice');
});
