// The direct wire decoder gives the same frozen sub-message Entry again for byte-identical
// sub-messages (thread cores of one process repeat their creds, tls, FPU state), a fresh one
// for different bytes, and entries equal to protobufjs's either way.
import t from 'tap';
import { decodeByProtobufjs, encodeEntry, messageFields } from '../src/images/codec.js';
import { decodePlain } from '../src/images/wire-decode.js';

type Rec = Record<string, any>;

function core(sp: bigint, uid: number): Rec {
  return {
    mtype: 1,
    thread_info: {
      clear_tid_addr: 0x7f00_0000_1000n,
      gpregs: { r15: 0n, r14: 0n, r13: 0n, r12: 0n, bp: 0n, bx: 0n, r11: 0n, r10: 0n, r9: 0n, r8: 0n, ax: 202n, cx: 0n, dx: 0n, si: 0n, di: 0n, orig_ax: 202n, ip: 0x401000n, cs: 51n, flags: 582n, sp, ss: 43n, fs_base: sp + 64n, gs_base: 0n, ds: 0n, es: 0n, fs: 0n, gs: 0n },
      fpregs: { cwd: 895, swd: 0, twd: 0, fop: 0, rip: 0n, rdp: 0n, mxcsr: 8064, mxcsr_mask: 65535, st_space: new Array(32).fill(0), xmm_space: new Array(64).fill(7), padding: [] },
    },
    thread_core: {
      futex_rla: sp + 128n,
      futex_rla_len: 24,
      blk_sigset: 0n,
      creds: { uid, gid: 0, euid: uid, egid: 0, suid: uid, sgid: 0, fsuid: uid, fsgid: 0, cap_inh: [0, 0], cap_prm: [1, 2], cap_eff: [1, 2], cap_bnd: [1, 2], secbits: 0, groups: [4, 5] },
      comm: 'worker',
    },
  };
}

const tlsEntry = (entry_number: number): Rec => ({ entry_number, base_addr: 0, limit: 0, seg_32bit: false, contents_h: false, contents_l: false, read_exec_only: true, limit_in_pages: false, seg_not_present: true, usable: false });

const decode = (entry: Rec) => decodePlain('core_entry', Buffer.from(encodeEntry('core_entry', entry)), messageFields) as Rec;

t.test('identical sub-messages are one frozen Entry; different ones are not', async (t) => {
  const a = decode(core(0x7000_0000n, 0));
  const b = decode(core(0x7001_0000n, 0));
  const c = decode(core(0x7002_0000n, 1000));
  t.not(a.thread_info, b.thread_info, 'registers differ: thread_info decoded again');
  t.equal(a.thread_info.fpregs, b.thread_info.fpregs, 'same FPU bytes: the same Entry');
  t.equal(a.thread_core.creds, b.thread_core.creds, 'same creds bytes: the same Entry');
  t.not(b.thread_core.creds, c.thread_core.creds, 'other creds: another Entry');
  t.equal(c.thread_core.creds.uid, 1000);
  // Same length, only the last byte differs (groups [4, 5] vs [4, 6]): the short comparison reads it.
  const d = core(0x7003_0000n, 0);
  d.thread_core.creds.groups = [4, 6];
  const lastByte = decode(d);
  t.not(lastByte.thread_core.creds, b.thread_core.creds, 'a last byte apart: another Entry');
  t.same(lastByte.thread_core.creds.groups, [4, 6]);
  t.equal(b.thread_info.gpregs.sp, 0x7001_0000n, 'each thread keeps its own registers');
  t.ok(Object.isFrozen(a.thread_info.fpregs) && Object.isFrozen(a.thread_info.fpregs.xmm_space), 'a shared Entry and its arrays are frozen');
  t.throws(() => {
    a.thread_core.creds.groups.push(6);
  }, TypeError, 'so modifying one (every thread\'s) throws');
  for (const [entry, e] of [[a, core(0x7000_0000n, 0)], [b, core(0x7001_0000n, 0)], [c, core(0x7002_0000n, 1000)]] as const) {
    const reference = decodeByProtobufjs('core_entry', Buffer.from(encodeEntry('core_entry', e)));
    t.same(JSON.stringify(entry, (_k, v) => (typeof v === 'bigint' ? `${v}n` : v)), JSON.stringify(reference, (_k, v) => (typeof v === 'bigint' ? `${v}n` : v)), 'equal to protobufjs');
  }
});

t.test('sub-messages that take turns within each core (its three tls entries) are reused too', async (t) => {
  const withTls = (sp: bigint) => {
    const c = core(sp, 0);
    c.thread_info.tls = [tlsEntry(12), tlsEntry(13), tlsEntry(14)];
    return c;
  };
  const a = decode(withTls(0x7100_0000n));
  const b = decode(withTls(0x7101_0000n));
  t.same(b.thread_info.tls.map((e: Rec) => e.entry_number), [12, 13, 14]);
  for (let i = 0; i < 3; i++) t.equal(b.thread_info.tls[i], a.thread_info.tls[i], `tls entry ${i}: the same Entry in both cores`);
});
