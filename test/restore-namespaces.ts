// UTS, IPC and network namespaces across a dump and restore (program namespaces: a parent in namespaces
// of its own with a host name, a domain name, IPC limits and SysV objects, and a child sharing
// them; a child with UTS, IPC and network namespaces of its own, nested), the dump's refusals
// (a nested PID namespace, a socket in a nested network namespace, a network device) and the
// restore's (nested namespaces it cannot make, missing namespace images).
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { summariseCheckpoint } from '../src/cli/commands/show.js';
import { dump } from '../src/dump/index.js';
import { imageKindForFile, openCheckpoint } from '../src/images/index.js';
import { writeImage } from '../src/images/writer.js';
import { restore } from '../src/restore/index.js';
import { dumpProgram, restoreProgram } from './lib/program-roundtrip.js';
import { requestCheck, startProgram } from './lib/programs.js';
import { copyFixture, rewriteImage } from './lib/restore-images.js';
import { mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmdirSync, rmSync } from 'node:fs';
import { cgroupMounts, parseCgroupFile } from '../src/cgroup-fs.js';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const crr = fileURLToPath(new URL('../bin/crr.js', import.meta.url));
const hostName = () => readFileSync('/proc/sys/kernel/hostname', 'utf8').trim();
const hostMsgmax = () => readFileSync('/proc/sys/kernel/msgmax', 'utf8').trim();

t.test('the self-check notices a renamed host and a changed IPC limit', async (t) => {
  for (const kind of ['hostname', 'msgmax']) {
    const prog = await startProgram(t, 'namespaces', [], { env: { CRR_SELFTEST_BREAK: kind } });
    const r = await requestCheck(prog.pid, prog.resultFile);
    t.notOk(r.pass, `break ${kind}: ${r.text}`);
  }
});

t.test('a tree in UTS and IPC namespaces of its own comes back in new ones with their names and limits', async (t) => {
  const before = { host: hostName(), msgmax: hostMsgmax() };
  const prog = await startProgram(t, 'namespaces');
  const imagesDir = await dumpProgram(t, prog);
  const checkpoint = openCheckpoint(imagesDir);
  const ids = checkpoint.ids(checkpoint.tasks[0]!.pid);
  t.same(checkpoint.image(`utsns-${ids['uts_ns_id']}.img`).only(), { nodename: 'crr-ns-host', domainname: 'crr-ns.example' }, 'utsns image');
  const vars = checkpoint.image(`ipcns-var-${ids['ipc_ns_id']}.img`).only();
  t.same([vars['msg_ctlmax'], vars['sem_ctls'], vars['mq_msg_max']], [12345, [300, 64000, 50, 210], 42], 'ipcns-var image');
  t.same(summariseCheckpoint(imagesDir).namespaces, ['ipc: SysV 0 shm, 0 msg, 0 sem', 'uts: host crr-ns-host, domain crr-ns.example'], 'crr show DIR names them');
  const plan = spawnSync(process.execPath, [crr, 'plan', '-D', imagesDir], { encoding: 'utf8' });
  t.match(plan.stdout, /namespaces the root's parent makes before the fork: ipc: SysV 0 shm, 0 msg, 0 sem; uts: host crr-ns-host/, 'crr plan names them');
  const rt = await restoreProgram(t, prog, imagesDir);
  for (const kind of ['uts', 'ipc']) {
    t.not(readlinkSync(`/proc/${rt.result.rootHostPid}/ns/${kind}`), readlinkSync(`/proc/self/ns/${kind}`), `the restored root is not in crr's ${kind} namespace`);
  }
  t.same(await rt.check(), { pass: true, text: 'PASS' }, 'names, limits and the shared namespaces are back');
  t.same({ host: hostName(), msgmax: hostMsgmax() }, before, "crr's own host name and limits are untouched");
});

t.test('SysV objects of the IPC namespace come back with their ids, messages, values and bytes', async (t) => {
  const prog = await startProgram(t, 'namespaces', ['sysv']);
  const imagesDir = await dumpProgram(t, prog);
  const checkpoint = openCheckpoint(imagesDir);
  const id = checkpoint.ids(checkpoint.tasks[0]!.pid)['ipc_ns_id'];
  const only = (kind: string) => [...checkpoint.image(`ipcns-${kind}-${id}.img`).entries()].map((e) => e.decode());
  t.match(only('msg'), [{ desc: { key: 0x4352 }, qnum: 2 }], 'ipcns-msg: the queue, two messages');
  t.ok(Number((only('msg')[0]!['desc'] as Record<string, number>)['id']) > 0, 'an id the kernel would not give a first object');
  t.match(only('sem'), [{ desc: { key: 0x4353 }, nsems: 3 }], 'ipcns-sem: the set of three');
  t.match(only('shm'), [{ desc: { key: 0x4354 }, size: 10000n }], 'ipcns-shm: the segment');
  const rt = await restoreProgram(t, prog, imagesDir);
  t.same(await rt.check(), { pass: true, text: 'PASS' }, 'every object is back at its id with its contents');
});

t.test('a loopback-only network namespace comes back with lo up and its sockets in it', async (t) => {
  const prog = await startProgram(t, 'namespaces', ['net']);
  const imagesDir = await dumpProgram(t, prog);
  const checkpoint = openCheckpoint(imagesDir);
  const id = checkpoint.ids(checkpoint.tasks[0]!.pid)['net_ns_id'];
  t.match(checkpoint.image(`netdev-${id}.img`).only(), { name: 'lo', type: 1, ifindex: 1, mtu: 65536 }, 'netdev: lo');
  t.ok(summariseCheckpoint(imagesDir).namespaces.includes('net: lo up'), 'crr show DIR: net, lo up');
  const rt = await restoreProgram(t, prog, imagesDir);
  t.not(readlinkSync(`/proc/${rt.result.rootHostPid}/ns/net`), readlinkSync('/proc/self/ns/net'), "the restored root is not in crr's network namespace");
  t.same(await rt.check(), { pass: true, text: 'PASS' }, 'lo is up, the child shares the namespace, the listener on 127.0.0.1:4242 accepts');
});

t.test('a user namespace comes back with its id maps, the credentials as it sees them, and the namespaces it owns', async (t) => {
  const prog = await startProgram(t, 'namespaces', ['user']);
  const imagesDir = await dumpProgram(t, prog);
  const checkpoint = openCheckpoint(imagesDir);
  const root = checkpoint.tasks[0]!.pid;
  const extents = [{ first: 0, lower_first: 100000, count: 65536 }];
  t.same(checkpoint.image(`userns-${checkpoint.ids(root)['user_ns_id']}.img`).only(), { uid_map: extents, gid_map: extents }, 'userns image');
  const creds = (checkpoint.core(root)['thread_core'] as { creds: Record<string, number> }).creds;
  t.same([creds['uid'], creds['euid'], creds['gid']], [0, 0, 0], 'credentials as the user namespace sees them (crr sees 100000)');
  await t.rejects(restore({ imagesDir }), { stage: 'plan', resource: 'namespaces', message: /user namespace of its own: restore it into a fresh PID namespace/ }, 'refused without a fresh PID namespace');
  const rt = await restoreProgram(t, prog, imagesDir);
  const status = readFileSync(`/proc/${rt.result.rootHostPid}/status`, 'latin1');
  t.match(status, /\nUid:\t100000\t100000\t100000\t100000\n/, 'crr sees uid 100000 again');
  t.same(await rt.check(), { pass: true, text: 'PASS' }, 'root in the user namespace with its maps; names, limits and the child in the owned namespaces');
});

t.test('a cgroup namespace comes back rooted where it was', async (t) => {
  const mounts = cgroupMounts();
  const hierarchy = mounts.has('pids') ? 'pids' : '';
  const base = parseCgroupFile(readFileSync('/proc/self/cgroup', 'latin1')).find((m) => m.name === hierarchy)!.path.replace(/\/$/, '');
  const path = `${base}/crr-cgns-${process.pid}`;
  const dir = `${mounts.get(hierarchy)}${path}`;
  mkdirSync(dir);
  t.teardown(async () => {
    for (let i = 0; i < 200; i++) {
      try {
        return rmdirSync(dir);
      } catch {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    }
  });
  const prog = await startProgram(t, 'namespaces', ['cgroup', dir]);
  const imagesDir = await dumpProgram(t, prog);
  const checkpoint = openCheckpoint(imagesDir);
  const setId = (checkpoint.core(prog.pid)['tc'] as { cg_set: number }).cg_set;
  const set = (checkpoint.image('cgroup.img').only()['sets'] as Array<{ id: number; ctls: Array<{ name: string; path: string; cgns_prefix?: number }> }>).find((x) => x.id === setId)!;
  t.match(set.ctls.find((m) => m.name === hierarchy), { path, cgns_prefix: path.length }, "cgroup.img: the namespace's root as cgns_prefix");
  const rt = await restoreProgram(t, prog, imagesDir);
  t.ok(parseCgroupFile(readFileSync(`/proc/${rt.result.rootHostPid}/cgroup`, 'latin1')).some((m) => m.name === hierarchy && m.path === path), `crr sees the root in ${path}`);
  t.same(await rt.check(), { pass: true, text: 'PASS' }, 'inside, every hierarchy is at the namespace root, the child too');
});

t.test("a child's own UTS, IPC and network namespaces (nested) come back, a grandchild in them", async (t) => {
  const prog = await startProgram(t, 'namespaces', ['nested']);
  const imagesDir = await dumpProgram(t, prog);
  const checkpoint = openCheckpoint(imagesDir);
  const [parent, child, grandchild] = checkpoint.tasks.map((task) => checkpoint.ids(task.pid) as Record<string, number>);
  for (const field of ['uts_ns_id', 'ipc_ns_id', 'net_ns_id']) {
    t.not(child![field], parent![field], `${field}: the child's own`);
    t.equal(grandchild![field], child![field], `${field}: the grandchild's the child's`);
  }
  t.same(checkpoint.image(`utsns-${child!['uts_ns_id']}.img`).only(), { nodename: 'crr-nested', domainname: 'crr-ns.example' }, "utsns image of the child's namespace");
  t.match([...checkpoint.image(`ipcns-msg-${child!['ipc_ns_id']}.img`).entries()].map((e) => e.decode()), [{ desc: { key: 0x4e5354 }, qnum: 1 }], 'ipcns-msg: its queue');
  t.match(checkpoint.image(`netdev-${child!['net_ns_id']}.img`).only(), { name: 'lo', flags: 0x49 }, 'netdev: lo up');
  const childPidDumped = checkpoint.tasks[1]!.pid;
  t.same(summariseCheckpoint(imagesDir).namespaces.filter((n) => n.includes('nested')), [`net of task ${childPidDumped} (nested): lo up`, `ipc of task ${childPidDumped} (nested): SysV 0 shm, 1 msg, 0 sem`, `uts of task ${childPidDumped} (nested): host crr-nested, domain crr-ns.example`], 'crr show DIR names them');
  const rt = await restoreProgram(t, prog, imagesDir);
  const rootPid = rt.result.rootHostPid;
  const childPid = Number(readFileSync(`/proc/${rootPid}/task/${rootPid}/children`, 'latin1').trim().split(/\s+/)[0]);
  for (const kind of ['uts', 'ipc', 'net']) t.not(readlinkSync(`/proc/${childPid}/ns/${kind}`), readlinkSync(`/proc/${rootPid}/ns/${kind}`), `the restored child has a ${kind} namespace of its own`);
  t.same(await rt.check(), { pass: true, text: 'PASS' }, "the child's host name, queue, lo and listener are back in its namespaces, the grandchild in them");
});

t.test('the restore refuses nested namespaces it cannot make, before anything is made', async (t) => {
  const prog = await startProgram(t, 'namespaces', ['nested']);
  const imagesDir = await dumpProgram(t, prog);
  const checkpoint = openCheckpoint(imagesDir);
  const [parent, child] = checkpoint.tasks.map((task) => task.pid) as [number, number];
  const dumpers = checkpoint.inventory['root_ids'] as Record<string, number>;
  const edited = (name: string, change: (dir: string) => void) => {
    const dir = mkdtempSync(join(tmpdir(), `crr-nested-${name}-`));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    spawnSync('cp', ['-a', `${imagesDir}/.`, dir]);
    change(dir);
    return dir;
  };
  const mount = edited('mount', (dir) => rewriteImage(dir, `ids-${child}.img`, ([ids]) => [{ ...ids!, mnt_ns_id: 4242 }]));
  await t.rejects(restore({ imagesDir: mount, pidNamespace: true }), { stage: 'plan', pid: child, message: /in a mnt namespace other than its parent's \(\d+\); crr restores nested uts, ipc and net namespaces only/ }, 'a nested mount namespace');
  const root = edited('root', (dir) => rewriteImage(dir, `ids-${child}.img`, ([ids]) => [{ ...ids!, uts_ns_id: dumpers['uts_ns_id'] }]));
  await t.rejects(restore({ imagesDir: root, pidNamespace: true }), { stage: 'plan', pid: child, message: /back in the dumper's/ }, "a nested namespace that is crr's own again");
  const socket = edited('socket', (dir) => {
    // The child's listener (fd 62, in its own network namespace) held by its parent too.
    const listener = checkpoint.fdinfo(checkpoint.ids(child).files_id).find((fd) => fd.fd === 62)!;
    rewriteImage(dir, `fdinfo-${checkpoint.ids(parent).files_id}.img`, (fds) => [...fds, { ...listener, fd: 99 }]);
  });
  await t.rejects(restore({ imagesDir: socket, pidNamespace: true }), { stage: 'plan', message: /socket file \d+ \(inet\) is held in several network namespaces \(tasks \d+ and \d+\): crr makes a socket in the namespace of the task that makes it/ }, 'an inet socket held in two network namespaces');
});

t.test('the dump refuses namespaces it cannot restore, naming the task and the kind', async (t) => {
  const cases = [
    ['nested-pid', /pid (\d+): it is in a pid namespace other than its parent's \(pid \d+\): crr restores nested uts, ipc and net namespaces only/],
    ['nested-socket', /pid (\d+): fd 63 is a socket \d+: not supported: it is of network namespace net:\[\d+\], its holder in net:\[\d+\] \(one nested in the tree, or the tree's\): crr makes a socket in the namespace of the task that makes it/],
    ['netdev', /its network namespace has devices other than lo \(crr-v[01], crr-v[01]\)/],
  ] as const;
  for (const [setup, message] of cases) {
    const prog = await startProgram(t, 'namespaces', [setup]);
    const imagesDir = mkdtempSync(join(tmpdir(), 'crr-ns-refused-'));
    t.teardown(() => rmSync(imagesDir, { recursive: true, force: true }));
    await t.rejects(dump({ pid: prog.pid, imagesDir }), { message }, `${setup}: refused`);
    // A refused dump leaves the tree running.
    t.ok((await requestCheck(prog.pid, prog.resultFile)).pass, `${setup}: the tree still runs and passes its check`);
  }
});

t.test("a task CRIU dumped stopped (task_state Stopped) comes back stopped", async (t) => {
  // Without stop_signo (older images), and stopped by SIGTSTP: the restored root's process group
  // may be orphaned, where the kernel drops a terminal stop signal (crr stops it by SIGSTOP there).
  for (const stopSigno of [undefined, 20]) {
    const dir = copyFixture(t, 'sleep');
    rewriteImage(dir, 'core-17288.img', ([core]) => [{ ...core!, tc: { ...(core!['tc'] as Record<string, unknown>), task_state: 3, ...(stopSigno ? { stop_signo: stopSigno } : {}) } }]);
    const result = await restore({ imagesDir: dir, pidNamespace: true });
    t.teardown(() => result.kill());
    const state = () => readFileSync(`/proc/${result.rootHostPid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ')[0];
    for (let i = 0; i < 100 && state() !== 'T'; i++) await new Promise((r) => setTimeout(r, 10));
    t.equal(state(), 'T', `stop_signo ${stopSigno}: stopped, as when it was dumped`);
    process.kill(result.rootHostPid, 'SIGCONT');
    for (let i = 0; i < 100 && state() !== 'S'; i++) await new Promise((r) => setTimeout(r, 10));
    t.equal(state(), 'S', `stop_signo ${stopSigno}: and sleeps on when continued`);
  }
});

t.test('a VMA crr does not map (a packet socket ring) fails the plan, naming the task and the range', async (t) => {
  const dir = copyFixture(t, 'sleep');
  rewriteImage(dir, 'mm-17288.img', ([mm]) => {
    const vmas = (mm!['vmas'] as Array<Record<string, unknown>>).map((v, i) => (i === 0 ? { ...v, status: Number(v['status']) | (1 << 11) } : v));
    return [{ ...mm!, vmas }];
  });
  await t.rejects(restore({ imagesDir: dir, dryRun: true, pidNamespace: true }), { stage: 'plan', pid: 17288, resource: 'memory', message: /not supported: VMA [0-9a-f]+-[0-9a-f]+ is a packet socket ring/ });
});

t.test("the restore refuses a checkpoint whose namespaces crr does not make, before touching anything", async (t) => {
  const mountNs = copyFixture(t, 'sleep');
  rewriteImage(mountNs, 'ids-17288.img', ([ids]) => [{ ...ids!, mnt_ns_id: 99 }]);
  await t.rejects(restore({ imagesDir: mountNs, pidNamespace: true }), { stage: 'plan', resource: 'namespaces', message: /mountpoints-99\.img is missing/ });

  const cgroupNs = copyFixture(t, 'sleep');
  rewriteImage(cgroupNs, 'ids-17288.img', ([ids]) => [{ ...ids!, cgroup_ns_id: 99 }]);
  await t.rejects(restore({ imagesDir: cgroupNs, pidNamespace: true }), { stage: 'plan', resource: 'namespaces', message: /cgroup\.img is missing/ });

  const pidNs = copyFixture(t, 'sleep');
  rewriteImage(pidNs, 'ids-17288.img', ([ids]) => [{ ...ids!, pid_ns_id: 99 }]);
  await t.rejects(restore({ imagesDir: pidNs, dryRun: true }), { message: /restore it into a fresh one \(--pid-namespace\)/ });

  const noUtsImage = copyFixture(t, 'sleep');
  rewriteImage(noUtsImage, 'ids-17288.img', ([ids]) => [{ ...ids!, uts_ns_id: 99 }]);
  await t.rejects(restore({ imagesDir: noUtsImage, pidNamespace: true }), { message: /utsns-99\.img is missing/ });

  const veth = copyFixture(t, 'sleep');
  rewriteImage(veth, 'ids-17288.img', ([ids]) => [{ ...ids!, net_ns_id: 99 }]);
  writeImage(join(veth, 'netdev-99.img'), imageKindForFile('netdev-99.img')!, [
    { entry: { type: 1, ifindex: 1, mtu: 65536, flags: 0x49, name: 'lo' } },
    { entry: { type: 2, ifindex: 2, mtu: 1500, flags: 0x1003, name: 'eth0' } },
  ]);
  await t.rejects(restore({ imagesDir: veth, pidNamespace: true }), { message: /had devices other than lo \(eth0\)/ });

  const nested = copyFixture(t, 'pipe');
  const child = openCheckpoint(nested).tasks[1]!.pid;
  rewriteImage(nested, `ids-${child}.img`, ([ids]) => [{ ...ids!, ipc_ns_id: 99 }]);
  await t.rejects(restore({ imagesDir: nested, pidNamespace: true }), { pid: child, message: new RegExp(`the namespace image ipcns-var-99.img is missing from the checkpoint \\(task ${child}'s namespace\\)`) }, 'a nested IPC namespace without its images');
});

t.test('a restored tree dumps again with its namespaces and its clocks, and comes back once more', async (t) => {
  const prog = await startProgram(t, 'namespaces');
  const first = await dumpProgram(t, prog);
  // Clocks 1,000 s ahead of the host's at the first dump: the restored tree lives in a time
  // namespace with that offset, and its next dump must keep it.
  const AHEAD = 1000n * 1_000_000_000n;
  const shift = (ts: unknown) => {
    const { tv_sec, tv_nsec } = ts as { tv_sec: bigint; tv_nsec: bigint };
    return { tv_sec: BigInt(tv_sec) + AHEAD / 1_000_000_000n, tv_nsec };
  };
  rewriteImage(first, 'timens-0.img', ([e]) => [{ monotonic: shift(e!['monotonic']), boottime: shift(e!['boottime']) }]);
  const restored = await restore({ imagesDir: first });
  t.teardown(() => restored.kill());
  const second = mkdtempSync(join(tmpdir(), 'crr-ns-second-'));
  t.teardown(() => rmSync(second, { recursive: true, force: true }));
  const before = process.hrtime.bigint();
  await dump({ pid: restored.rootHostPid, imagesDir: second });
  const after = process.hrtime.bigint();
  const clocks = openCheckpoint(second).image('timens-0.img').only() as { monotonic: { tv_sec: bigint; tv_nsec: bigint } };
  const monotonic = BigInt(clocks.monotonic.tv_sec) * 1_000_000_000n + BigInt(clocks.monotonic.tv_nsec);
  t.ok(monotonic >= before + AHEAD - 2_000_000_000n && monotonic <= after + AHEAD, `the second dump's CLOCK_MONOTONIC is the tree's, ~1,000 s ahead of crr's (${(monotonic - before) / 1_000_000n} ms)`);
  await restored.kill();
  const again = await restore({ imagesDir: second });
  t.teardown(() => again.kill());
  t.same(await requestCheck(again.rootHostPid, prog.resultFile), { pass: true, text: 'PASS' }, 'the second restore passes the check');
});
