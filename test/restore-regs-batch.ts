// The batched forms of remote-regs.ts, as setThreadsCpu takes them: xstateSets builds each
// distinct FPU Entry's buffer once and gives every thread the index of its own, whose bytes are
// exactly xstateBuffer's; packFinalRegs gives finalRegs's words back to back.
import t from 'tap';
import { GPREG_FIELDS, KEEP_XSTATE, finalRegs, packFinalRegs, xstateBuffer, xstateSets } from '../src/restore/remote-regs.js';

function template(): Buffer {
  const buf = Buffer.alloc(1088);
  buf.writeBigUInt64LE(0x7n, 464); // XCR0: x87, SSE, AVX
  for (let i = 600; i < 1088; i += 7) buf[i] = i & 0xff; // kernel bytes the image does not cover
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

t.test('xstateSets: threads with the inherited Entry keep theirs; the others index built buffers', async (t) => {
  const inherited = fpu(5);
  const other = fpu(9);
  const tpl = template();
  const { buffers, indexOf } = xstateSets(tpl, [inherited, other, inherited, fpu(5)], inherited);
  const picked = [0, 1, 2, 3].map((i) => indexOf.readUInt32LE(4 * i));
  t.same(picked, [KEEP_XSTATE, 0, KEEP_XSTATE, 1], 'only the very Entry is kept: an equal separate one is set');
  t.equal(buffers.length, tpl.length * 2, 'no buffer for the inherited state');
  t.same(buffers.subarray(0, tpl.length), xstateBuffer(tpl, other));
  const all = xstateSets(tpl, [inherited, inherited], inherited);
  t.equal(all.buffers.length, 0, 'every thread inherited: nothing to write');
});

t.test('xstateSets: no threads, no buffers', async (t) => {
  const { buffers, indexOf } = xstateSets(template(), []);
  t.equal(buffers.length, 0);
  t.equal(indexOf.length, 0);
});

t.test('packFinalRegs: finalRegs of each thread, back to back', async (t) => {
  const gp = (sp: bigint, ax: bigint) => Object.fromEntries(GPREG_FIELDS.map((f, i) => [f, f === 'sp' ? sp : f === 'ax' ? ax : f === 'orig_ax' ? 7n : BigInt(i)]));
  const threads = [gp(0x7000n, -512n & ((1n << 64n) - 1n)), gp(0x8000n, 0n)];
  const packed = packFinalRegs(threads);
  threads.forEach((g, k) => {
    const want = finalRegs(g);
    GPREG_FIELDS.forEach((f, i) => t.equal(packed.readBigUInt64LE((k * GPREG_FIELDS.length + i) * 8), BigInt.asUintN(64, want[f]), `thread ${k} ${f}`));
  });
});
