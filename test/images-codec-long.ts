// 64-bit fields through the codec's bit-level Long <-> bigint conversion (no decimal strings):
// signed (int64, sint64), unsigned (uint64, fixed64), extremes and values past 2^53, both ways,
// and the exact wire bytes of a value against a hand-encoded varint.
import t from 'tap';
import { decodeEntry, encodeEntry } from '../src/images/index.js';

const U64_MAX = (1n << 64n) - 1n;
const I64_MIN = -(1n << 63n);
const I64_MAX = (1n << 63n) - 1n;

t.test('signed and unsigned extremes survive encode -> decode', async (t) => {
  for (const v of [0n, 1n, -1n, I64_MIN, I64_MAX, (1n << 53n) + 1n, -(1n << 40n) - 7n]) {
    const lock = decodeEntry('file_lock_entry', encodeEntry('file_lock_entry', { fl_kind: 1, fl_ltype: 2, pid: 3, fd: 4, start: v, len: v }));
    t.equal(lock['start'], v, `int64 ${v}`);
    const vma = decodeEntry('vma_entry', encodeEntry('vma_entry', { start: 0x1000n, end: 0x2000n, pgoff: 0n, shmid: 0n, prot: 0, flags: 0, status: 0, fd: v }));
    t.equal(vma['fd'], v, `sint64 ${v}`);
  }
  for (const v of [0n, 1n, U64_MAX, 1n << 63n, 0xffffffffn, 0x1_0000_0000n, 0x7fff_ffff_f000n]) {
    const vma = decodeEntry('vma_entry', encodeEntry('vma_entry', { start: v, end: v, pgoff: 0n, shmid: 0n, prot: 0, flags: 0, status: 0 }));
    t.equal(vma['start'], v, `uint64 ${v}`);
    const so = decodeEntry('sk_opts_entry', encodeEntry('sk_opts_entry', { so_sndbuf: 0, so_rcvbuf: 0, so_snd_tmo_sec: 0n, so_snd_tmo_usec: 0n, so_rcv_tmo_sec: 0n, so_rcv_tmo_usec: 0n, so_filter: [v, 5n] }));
    t.same(so['so_filter'], [v, 5n], `fixed64[] ${v}`);
  }
});

t.test('out-of-range values wrap like a C cast', async (t) => {
  const vma = decodeEntry('vma_entry', encodeEntry('vma_entry', { start: -1n, end: 1n << 64n, pgoff: 0n, shmid: 0n, prot: 0, flags: 0, status: 0 }));
  t.equal(vma['start'], U64_MAX, '-1 into a uint64');
  t.equal(vma['end'], 0n, '2^64 into a uint64');
});

t.test('wire bytes of a uint64 are the plain varint', async (t) => {
  // field 1 (start), varint: 0x08 then 0x7fff_ffff_f000 as 7-bit groups, low first
  const bytes = encodeEntry('vma_entry', { start: 0x7fff_ffff_f000n, end: 0n, pgoff: 0n, shmid: 0n, prot: 0, flags: 0, status: 0 });
  t.same([...bytes.subarray(0, 8)], [0x08, 0x80, 0xe0, 0xff, 0xff, 0xff, 0xff, 0x1f]);
});
