// Final CPU state from a core image: the syscall-restart fix-up, orig_ax = -1, the xstate buffer
// built over the kernel's, and the sigaction index to signal mapping.
import t from 'tap';
import { openCheckpoint } from '../src/images/index.js';
import { finalRegs, xstateBuffer } from '../src/restore/remote-regs.js';
import { kernelSigaction, signalOfIndex } from '../src/resources/sigact.js';
import { capsetBytes } from '../src/resources/creds.js';
import { SHARED } from './lib/shared-dir.js';

const U64 = (1n << 64n) - 1n;
const neg = (n: bigint) => (-n) & U64;

t.test('syscall restart fix-up', async (t) => {
  const base = { ip: 0x1002n, orig_ax: 230n };
  for (const code of [512n, 513n, 514n]) {
    const r = finalRegs({ ...base, ax: neg(code) });
    t.equal(r.ax, 230n, `-${code}: re-run the syscall`);
    t.equal(r.ip, 0x1000n, `-${code}: back over syscall`);
    t.equal(r.orig_ax, U64);
  }
  const block = finalRegs({ ...base, ax: neg(516n) });
  t.equal(block.ax, neg(4n), '-ERESTART_RESTARTBLOCK becomes -EINTR');
  t.equal(block.ip, 0x1002n);
  const plain = finalRegs({ ip: 5n, ax: 7n, orig_ax: U64 });
  t.same([plain.ax, plain.ip, plain.orig_ax], [7n, 5n, U64], 'outside a syscall nothing changes');
  const done = finalRegs({ ...base, ax: 0n });
  t.same([done.ax, done.ip, done.orig_ax], [0n, 0x1002n, U64], 'a finished syscall keeps its result, orig_ax still -1');
});

t.test('sleep fixture: registers and xstate', async (t) => {
  const core = openCheckpoint(SHARED + 'fixtures/criu-4.2/sleep').core(17288) as Record<string, any>;
  const regs = finalRegs(core.thread_info.gpregs);
  t.equal(regs.fs_base, 0x7f9356451740n, 'fs_base comes along (trap 8)');
  t.equal(regs.ip, 0x7f9356523503n);
  const current = Buffer.alloc(832, 0xee);
  current.writeUInt32LE(0x46505853, 464);
  current.writeBigUInt64LE(0x7n, 472); // x87 | SSE | AVX
  const buf = xstateBuffer(current, core.thread_info.fpregs);
  t.equal(buf.length, 832);
  t.equal(buf.readUInt16LE(0), 895, 'cwd');
  t.equal(buf.readUInt32LE(24), 8064, 'mxcsr');
  t.equal(buf.readBigUInt64LE(512), 2n, 'xstate_bv from the image');
  t.equal(buf.readBigUInt64LE(520), 0n, 'standard format');
  t.equal(buf.readUInt32LE(576), Number(core.thread_info.fpregs.xsave.ymmh_space[0]), 'ymmh');
  t.equal(buf.readUInt32LE(464), 0x46505853, 'sw_reserved kept');
  t.throws(
    () => xstateBuffer(current, { ...core.thread_info.fpregs, xsave: { xstate_bv: 0xe7n } }),
    /XSAVE components this machine's kernel does not offer: AVX-512 opmask, AVX-512 ZMM_Hi256, AVX-512 Hi16_ZMM \(xstate_bv 0xe7, kernel 0x7\)/,
    'AVX-512 state on a kernel without it is refused, named',
  );
});

t.test('sigaction entries map to signals 1..64 without SIGKILL and SIGSTOP', async (t) => {
  t.same([0, 7, 8, 16, 17, 61].map(signalOfIndex), [1, 8, 10, 18, 20, 64]);
  const sa = kernelSigaction({ sigaction: 0x678f40n, flags: 0x4000000n, restorer: 0x7f00n, mask: 2n });
  t.same([sa.readBigUInt64LE(0), sa.readBigUInt64LE(8), sa.readBigUInt64LE(16), sa.readBigUInt64LE(24)], [0x678f40n, 0x4000000n, 0x7f00n, 2n]);
});

t.test('capset data words', async (t) => {
  const b = capsetBytes({ cap_eff: [0xfeffffff, 0x1ff], cap_prm: [0xfeffffff, 0x1ff], cap_inh: [0, 0] });
  t.equal(b.readUInt32LE(0), 0x20080522);
  t.same([b.readUInt32LE(8), b.readUInt32LE(12), b.readUInt32LE(16), b.readUInt32LE(20)], [0xfeffffff, 0xfeffffff, 0, 0x1ff]);
});
