// xstateSets (remote-regs.ts), the form setThreadsCpu takes: each distinct FPU Entry's buffer
// once, and per thread the index of its own; a thread's picked buffer is exactly xstateBuffer's.
import t from 'tap';
import { xstateBuffer, xstateSets } from '../src/restore/remote-regs.js';

function template(): Buffer {
  const buf = Buffer.alloc(1088);
  buf.writeBigUInt64LE(0x7n, 464); // XCR0: x87, SSE, AVX
  for (let i = 600; i < 1088; i += 7) buf[i] = i & 0xff;
  return buf;
}

const fpu = (seed: number) => ({
  cwd: 0x37f, swd: seed, twd: 0, fop: 0, rip: BigInt(seed) << 40n, rdp: 0n, mxcsr: 0x1f80, mxcsr_mask: 0xffff,
  st_space: Array.from({ length: 32 }, (_, i) => (i * seed) >>> 0),
  xmm_space: Array.from({ length: 64 }, (_, i) => (i + seed) >>> 0),
  xsave: { xstate_bv: 7n, ymmh_space: Array.from({ length: 64 }, (_, i) => (i ^ seed) >>> 0) },
});

t.test('xstateSets: one buffer per distinct Entry, each thread indexing its own', async (t) => {
  const shared = fpu(5);
  const other = fpu(9);
  const threads = [shared, other, shared, fpu(5), shared];
  const tpl = template();
  const { buffers, indexOf } = xstateSets(tpl, threads);
  t.equal(indexOf.length, 4 * threads.length);
  const picked = threads.map((_, i) => indexOf.readUInt32LE(4 * i));
  t.same(picked, [0, 1, 0, 2, 0], 'the same Entry object shares a buffer; an equal but separate one gets its own');
  t.equal(buffers.length, tpl.length * 3);
  threads.forEach((fp, i) => t.same(buffers.subarray(picked[i]! * tpl.length, (picked[i]! + 1) * tpl.length), xstateBuffer(tpl, fp), `thread ${i}`));
  t.notOk(buffers.subarray(0, tpl.length).equals(buffers.subarray(tpl.length, 2 * tpl.length)), 'different FPU states differ');
});

t.test('xstateSets: no threads, no buffers', async (t) => {
  const { buffers, indexOf } = xstateSets(template(), []);
  t.equal(buffers.length, 0);
  t.equal(indexOf.length, 0);
});
