// Which threads skip their creds list: a thread whose image creds equal what it inherited at clone
// time runs none. The comparison must say "different" for every field the list would change. The
// order of a list: what needs the thread still root with every capability comes before its uid
// change, which keeps them (KEEP_CAPS and NO_SETUID_FIXUP) until the final securebits are set;
// capset comes last but for ambient caps. A wrong order fails on a real kernel with EPERM
// (test/shared-unixsk.ts restores such a task).
import t from 'tap';
import { readFileSync } from 'node:fs';
import { addCreds, kernelLastCap, plainCreds, sameCreds, statusCreds } from '../src/resources/creds.js';
import { RemoteBatch } from '../src/restore/remote.js';
import { PR_CAPBSET_DROP, PR_SET_SECUREBITS, SYS } from '../src/restore/remote-sys.js';

const STATUS = [
  'Name:\tthreads',
  'Uid:\t0\t0\t0\t0',
  'Gid:\t0\t0\t0\t0',
  'Groups:\t4 0 ',
  'CapInh:\t0000000000000000',
  'CapPrm:\t000001fffeffffff',
  'CapEff:\t000001fffeffffff',
  'CapBnd:\t000001fffeffffff',
  'CapAmb:\t0000000000000000',
  'NoNewPrivs:\t0',
].join('\n');

const rootImage = () => ({
  uid: 0, gid: 0, euid: 0, egid: 0, suid: 0, sgid: 0, fsuid: 0, fsgid: 0,
  cap_inh: [0, 0], cap_prm: [0xfeffffff, 0x1ff], cap_eff: [0xfeffffff, 0x1ff], cap_bnd: [0xfeffffff, 0x1ff], cap_amb: [0, 0],
  secbits: 0, groups: [0, 4],
});

t.test('status parsing', async (t) => {
  const have = statusCreds(STATUS, 0);
  t.same(have.ids, [0, 0, 0, 0, 0, 0, 0, 0]);
  t.same(have.groups, [0, 4], 'groups sorted');
  t.same(have.caps, [0, 0, 0xfeffffff, 0x1ff, 0xfeffffff, 0x1ff, 0xfeffffff, 0x1ff, 0, 0]);
  const mixed = statusCreds(STATUS.replace('Uid:\t0\t0\t0\t0', 'Uid:\t1\t2\t3\t4').replace('Gid:\t0\t0\t0\t0', 'Gid:\t5\t6\t7\t8'), 3);
  t.same(mixed.ids, [1, 5, 2, 6, 3, 7, 4, 8], 'real/effective/saved/fs in image field order');
  t.equal(mixed.secbits, 3);
});

t.test('equal creds skip, any difference runs the list', async (t) => {
  const have = statusCreds(STATUS, 0);
  t.ok(sameCreds(rootImage(), have), 'the same root creds');
  t.ok(sameCreds({ ...rootImage(), groups: [4, 0] }, have), 'groups in another order');
  const differs: Array<[string, Record<string, unknown>]> = [
    ['uid', { uid: 1000 }], ['euid', { euid: 1000 }], ['suid', { suid: 1 }], ['fsuid', { fsuid: 1 }],
    ['gid', { gid: 1000 }], ['egid', { egid: 1 }], ['sgid', { sgid: 1 }], ['fsgid', { fsgid: 1 }],
    ['groups', { groups: [0] }], ['no groups', { groups: undefined }],
    ['cap_eff', { cap_eff: [0, 0] }], ['cap_prm high word', { cap_prm: [0xfeffffff, 0xff] }], ['cap_inh', { cap_inh: [1, 0] }],
    ['cap_bnd', { cap_bnd: [0xfeffffff, 0] }], ['cap_amb', { cap_amb: [1 << 12, 0] }], ['secbits', { secbits: 0x10 }],
  ];
  for (const [what, change] of differs) t.notOk(sameCreds({ ...rootImage(), ...change }, have), `${what} differs`);
  const noBnd: Record<string, unknown> = rootImage();
  delete noBnd['cap_bnd'];
  t.ok(sameCreds(noBnd, statusCreds(STATUS.replace('CapBnd:\t000001fffeffffff', 'CapBnd:\t0000000000000fff'), 0)), 'no bounding set in the image: nothing dropped, any set will do');
  t.notOk(sameCreds(rootImage(), statusCreds(STATUS, 1)), 'inherited securebits differ');
});

t.test('absent image fields mean 0, as addCreds uses them', async (t) => {
  t.same(plainCreds({}).ids, [0, 0, 0, 0, 0, 0, 0, 0]);
  t.same(plainCreds({}).caps, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
  t.notOk(sameCreds({}, statusCreds(STATUS, 0)), 'no caps in the image: the list must clear them');
});

t.test("this process's own status parses", async (t) => {
  const own = statusCreds(readFileSync('/proc/self/status', 'utf8'), 0);
  t.equal(own.ids[0], process.getuid!(), 'uid');
  t.equal(own.ids[1], process.getgid!(), 'gid');
  // Node's getgroups() adds the egid to the supplementary groups /proc lists.
  t.same(own.groups, [...new Set(process.getgroups!())].filter((g) => g !== process.getegid!() || own.groups.includes(g)).sort((a, b) => a - b), 'groups');
  t.equal(own.caps.length, 10);
});

t.test('addCreds drops bounding-set caps up to the kernel\'s last one only, and names the thread on failure', async (t) => {
  const last = kernelLastCap();
  t.equal(last, Math.min(63, Number(readFileSync('/proc/sys/kernel/cap_last_cap', 'utf8'))), 'read from /proc');
  const batch = new RemoteBatch(0x7000_0000_0000n);
  // Bounding set: caps 0..3 only, so 4..last are dropped.
  addCreds(batch, { ...rootImage(), cap_bnd: [0xf, 0] }, 77);
  const drops = batch.layout()[0]!.commands.filter((c) => c.nr === SYS.prctl && Number(c.args[0]) === PR_CAPBSET_DROP).map((c) => Number(c.args[1]));
  t.same(drops, Array.from({ length: last - 3 }, (_, i) => i + 4), 'every cap above the set, none above the kernel\'s last');
  const failing = new RemoteBatch(0x7000_0000_0000n);
  addCreds(failing, rootImage(), 77);
  const n = failing.size;
  const results = Array.from({ length: n }, (_, i) => (i === 1 ? -1n : 0n)); // setresgid fails with EPERM
  const err = await failing.run({ runBatch: async () => ({ results: results.slice(0, 2), executed: 2 }) }, 1).catch((e: unknown) => e);
  t.match(String((err as Error).message), /set the gids of thread 77/);
});

function commands(creds: Record<string, unknown>): Array<{ nr: number; args: readonly (number | bigint)[] }> {
  const calls: Array<{ nr: number; args: readonly (number | bigint)[] }> = [];
  addCreds({ call: (nr, args) => calls.push({ nr, args }), put: () => 0n, reserve: () => undefined }, creds, 42);
  return calls;
}

const nobody = { uid: 65534, euid: 65534, suid: 65534, fsuid: 65534, gid: 65533, egid: 65533, sgid: 65533, fsgid: 65533, groups: [], cap_inh: [0, 0], cap_prm: [0, 0], cap_eff: [0, 0], cap_bnd: [0xfeffffff, 0x1ff], cap_amb: [0, 0] };

t.test('a task that dropped root: bounding set, then the uid change keeping every capability, securebits, capset', async (t) => {
  const calls = commands({ ...nobody, secbits: 0x20 | 0x10 }); // KEEP_CAPS, and KEEP_CAPS_LOCKED
  const at = (pred: (c: (typeof calls)[number]) => boolean) => calls.findIndex(pred);
  const drop = at((c) => c.nr === SYS.prctl && c.args[0] === PR_CAPBSET_DROP);
  const setuid = at((c) => c.nr === SYS.setresuid);
  const secbits = calls.flatMap((c, i) => (c.nr === SYS.prctl && c.args[0] === PR_SET_SECUREBITS ? [{ i, bits: Number(c.args[1]) }] : []));
  const capset = at((c) => c.nr === SYS.capset);
  t.equal(calls[drop]!.args[1], 24, 'capability 24, which the image lacks, is dropped');
  t.ok(drop < setuid, 'the bounding set is trimmed before the uid change');
  t.same(secbits.map((s) => s.bits), [0x10 | 0x4, 0x30], 'keep every capability across it (no lock bits yet), then the image\'s securebits');
  t.ok(secbits[0]!.i < setuid && setuid < secbits[1]!.i && secbits[1]!.i < capset, 'securebits around the uid change, before capset');
});

t.test('root keeps root: no securebits change around setresuid', async (t) => {
  const calls = commands({ ...nobody, uid: 0, euid: 0, suid: 0, fsuid: 0, secbits: 0 });
  t.notOk(calls.some((c) => c.nr === SYS.prctl && c.args[0] === PR_SET_SECUREBITS), 'no PR_SET_SECUREBITS');
});
