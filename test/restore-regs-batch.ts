// The batched forms of remote-regs.ts: xstateBuffers gives each thread exactly xstateBuffer's
// bytes, whether its FPU Entry is shared with another thread (built once, copied) or its own;
// packFinalRegs gives finalRegs's words back to back.
import t from 'tap';
import { GPREG_FIELDS, finalRegs, packFinalRegs, xstateBuffer, xstateBuffers } from '../src/restore/remote-regs.js';

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

t.test('xstateBuffers: shared and own FPU Entries give xstateBuffer bytes', async (t) => {
  const shared = fpu(5);
  const own = fpu(9);
  const threads = [shared, own, shared, fpu(5), shared];
  const tpl = template();
  const all = xstateBuffers(tpl, threads);
  t.equal(all.length, tpl.length * threads.length);
  threads.forEach((fp, i) => t.same(all.subarray(i * tpl.length, (i + 1) * tpl.length), xstateBuffer(tpl, fp), `thread ${i}`));
  t.notOk(all.subarray(0, tpl.length).equals(all.subarray(tpl.length, 2 * tpl.length)), 'different FPU states differ');
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
