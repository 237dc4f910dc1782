// Unix sockets through dump and restore, with the self-checking unixsk program (one variant at a
// time: pairs, path, abstract, listen, queues, shutdown, options): the program's own checks can
// fail (break kinds), the images say what /proc and the program set up (types, names, peers,
// queued bytes), and after dump -> kill -> restore in a fresh PID namespace the program passes.
import t from 'tap';
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dump } from '../src/dump/index.js';
import { readImage } from '../src/images/reader.js';
import { writeImage } from '../src/images/writer.js';
import { imageKindForFile } from '../src/images/index.js';
import { restore } from '../src/restore/index.js';
import { summariseCheckpoint } from '../src/cli/commands/show.js';
import { requestCheck, startProgram, waitPidGone } from './lib/programs.js';

const VARIANTS = ['pairs', 'path', 'abstract', 'listen', 'queues', 'shutdown', 'options'];
const img = (dir: string, name: string) => readImage(join(dir, name)).all() as any[];
const tmpOut = (t: Tap.Test, name: string) => {
  const out = mkdtempSync(join(tmpdir(), `crr-unixsk-${name}-`));
  t.teardown(() => rmSync(out, { recursive: true, force: true }));
  return out;
};

t.test('the program checks itself: every break kind is noticed', async (t) => {
  const ok = await startProgram(t, 'unixsk');
  t.same(await requestCheck(ok.pid, ok.resultFile), { pass: true, text: 'PASS' });
  for (const kind of ['data', 'peer', 'option', 'name']) {
    const p = await startProgram(t, 'unixsk', [], { env: { ...process.env, CRR_SELFTEST_BREAK: kind } });
    const r = await requestCheck(p.pid, p.resultFile);
    t.equal(r.pass, false, `break ${kind}: ${r.text}`);
  }
});

t.test('dump --leave-running: usk entries and sk-queues as the program left them', async (t) => {
  const p = await startProgram(t, 'unixsk');
  const out = tmpOut(t, 'images');
  const inode = (fd: number) => Number(/socket:\[(\d+)\]/.exec(readlinkSync(`/proc/${p.pid}/fd/${fd}`))![1]);
  const inodes = new Map([10, 11, 20, 21, 40, 41, 50, 51, 52, 53, 54, 55, 60, 70].map((fd) => [fd, inode(fd)]));
  await dump({ pid: p.pid, imagesDir: out, leaveRunning: true });
  const files = img(out, 'files.img').filter((f) => f.type === 5).map((f) => f.usk);
  const fdinfo = img(out, 'fdinfo-2.img');
  const uskAt = (fd: number) => files.find((u) => u.id === fdinfo.find((e) => e.fd === fd)!.id)!;
  for (const [fd, ino] of inodes) t.equal(uskAt(fd).ino, ino, `fd ${fd}: the socket's inode`);
  t.equal(uskAt(10).peer, inodes.get(11), 'a socketpair names each other as peer');
  t.equal(uskAt(11).peer, inodes.get(10));
  t.same([uskAt(10).type, uskAt(12).type, uskAt(14).type], [1, 2, 5], 'stream, dgram, seqpacket');
  t.equal(uskAt(13).flags & 0o4000, 0o4000, 'O_NONBLOCK kept');
  t.equal(Buffer.from(uskAt(20).name).toString().replace(/\0+$/, ''), join(p.dir, 'dg-a'), 'path name');
  t.equal(uskAt(21).peer, inodes.get(20), 'connected dgram names its peer');
  t.equal(Buffer.from(uskAt(22).name)[0], 0, 'abstract name starts with NUL');
  t.equal(uskAt(40).state, 10, 'listening');
  t.equal(uskAt(40).backlog, 8, 'backlog');
  t.equal(uskAt(41).peer, inodes.get(40), 'a pending connection names the listener as its peer');
  t.equal(uskAt(60).shutdown, 2, 'shut down for writing');
  t.equal(uskAt(61).shutdown, 1, 'and its peer for reading');
  t.equal(uskAt(70).opts.so_passcred, true, 'SO_PASSCRED');
  const queues = readImage(join(out, 'sk-queues.img'));
  const packets = new Map<number, string[]>();
  for (const e of queues.entries()) {
    const id = Number(e.decode()['id_for']);
    packets.set(id, [...(packets.get(id) ?? []), Buffer.from(e.payload!).toString()]);
  }
  t.same(packets.get(uskAt(51).id)!.join(''), 'stream one,stream two', 'stream queue bytes');
  t.same(packets.get(uskAt(50).id)!.join(''), 'back the other way', 'stream queue the other way');
  t.same(packets.get(uskAt(53).id), ['d1', 'datagram 2', '3'], 'dgram packets with their bounds');
  t.same(packets.get(uskAt(55).id), ['record A', 'record BB'], 'seqpacket records');
  t.same(await requestCheck(p.pid, p.resultFile), { pass: true, text: 'PASS' }, 'nothing consumed: the program still passes');
});

for (const variant of VARIANTS) {
  t.test(`round trip: ${variant}`, async (t) => {
    const p = await startProgram(t, 'unixsk', [variant]);
    const out = tmpOut(t, variant);
    await dump({ pid: p.pid, imagesDir: out });
    await waitPidGone(p.pid);
    const result = await restore({ imagesDir: out, pidNamespace: true });
    t.teardown(() => result.kill());
    const r = await requestCheck(result.rootHostPid, p.resultFile);
    t.same(r, { pass: true, text: 'PASS' }, `${variant} state after restore`);
    await result.kill();
  });
}

t.test('fds in flight (SCM_RIGHTS not yet received): the program notices them taken', async (t) => {
  const p = await startProgram(t, 'unixsk', ['inflight'], { env: { ...process.env, CRR_SELFTEST_BREAK: 'inflight' } });
  const r = await requestCheck(p.pid, p.resultFile);
  t.equal(r.pass, false, r.text);
});

t.test('fds in flight: dumped as files with their packets (scm entries), the program untouched', async (t) => {
  const p = await startProgram(t, 'unixsk', ['inflight']);
  const out = tmpOut(t, 'inflight-images');
  const inFlight = [join(p.dir, 'inflight-file'), readlinkSync(`/proc/${p.pid}/fd/84`)];
  await dump({ pid: p.pid, imagesDir: out, leaveRunning: true });
  const files = img(out, 'files.img');
  const fdinfo = img(out, 'fdinfo-2.img');
  const idAt = (fd: number) => fdinfo.find((e) => e.fd === fd)!.id;
  const packets = [...readImage(join(out, 'sk-queues.img')).entries()]
    .map((e) => ({ ...e.decode(), text: Buffer.from(e.payload!).toString() }))
    .filter((e: any) => e.id_for === idAt(81) || e.id_for === idAt(83)) as any[];
  t.same(packets.map((e) => e.text), ['file', 'plain,pipe', 'sock'], 'the packets as a receiver reads them');
  const rights = packets.map((e) => (e.scm ?? []).flatMap((m: any) => (m.type === 1 ? m.rights : [])));
  const fileOf = (id: number) => files.find((f) => f.id === id)!;
  t.equal(rights[0].length, 1, 'one fd with "file"');
  t.match(fileOf(rights[0][0]).reg, { name: join(p.dir, 'inflight-file'), pos: 3 }, 'the file in flight, at its offset');
  t.same(rights[1].map((id: number) => fileOf(id).type), [2, 2], 'two pipe ends with "pipe"');
  t.equal(fileOf(rights[1][1]).id, idAt(84), 'the write end in flight is the description kept at 84');
  t.equal(fileOf(rights[2][0]).usk.peer, fileOf(idAt(85)).usk.ino, 'the socket in flight is the peer of 85');
  const shown = summariseCheckpoint(out).tasks[0]!.fds.find((f) => f.fd === 81)!.what;
  t.match(shown, new RegExp(`\\(fds in flight: ${join(p.dir, 'inflight-file')}, pipe:\\[\\d+\\], pipe:\\[\\d+\\]\\)$`), `crr show names them: ${shown}`);
  const held = readdirSync('/proc/self/fd').map((fd) => {
    try {
      return readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      return ''; // the directory's own fd, closed by now
    }
  });
  t.same(held.filter((link) => inFlight.includes(link)), [], `crr closed its copies of the fds in flight (${inFlight.join(', ')})`);
  t.same(await requestCheck(p.pid, p.resultFile), { pass: true, text: 'PASS' }, 'nothing received: the program still passes');
});

t.test('fds in flight: round trip, each received with its message after the restore', async (t) => {
  const p = await startProgram(t, 'unixsk', ['inflight']);
  const out = tmpOut(t, 'inflight');
  await dump({ pid: p.pid, imagesDir: out });
  await waitPidGone(p.pid);
  const result = await restore({ imagesDir: out, pidNamespace: true });
  t.teardown(() => result.kill());
  t.same(readdirSync(`/proc/${result.rootHostPid}/fd`).map(Number).filter((fd) => fd > 99), [], 'the fds the restore used for them are closed');
  t.same(await requestCheck(result.rootHostPid, p.resultFile), { pass: true, text: 'PASS' });
  await result.kill();
});

t.test('fds in flight: an epoll instance is refused at dump, naming socket and fd; the program runs on', async (t) => {
  const p = await startProgram(t, 'unixsk', ['inflight-epoll', 'pairs']);
  const out = tmpOut(t, 'inflight-epoll');
  await t.rejects(dump({ pid: p.pid, imagesDir: join(out, 'img') }), { message: new RegExp(`pid ${p.pid}: fd 90 is unix socket \\d+: not supported: an fd in flight \\(SCM_RIGHTS not yet received\\) is an epoll instance`) });
  t.same(await requestCheck(p.pid, p.resultFile), { pass: true, text: 'PASS' }, 'the failed dump left the program running');
});

t.test('fds in flight: bad scm entries are refused before anything is made', async (t) => {
  const p = await startProgram(t, 'unixsk', ['inflight']);
  const out = tmpOut(t, 'inflight-bad');
  await dump({ pid: p.pid, imagesDir: out });
  await waitPidGone(p.pid);
  const queues = join(out, 'sk-queues.img');
  const original = readFileSync(queues);
  const rewrite = (change: (scm: any[]) => any[]) => {
    writeFileSync(queues, original);
    const entries = [...readImage(queues).entries()].map((e) => ({ entry: e.decode(), payload: e.payload! }));
    for (const { entry } of entries) if (entry['scm']) entry['scm'] = change(entry['scm'] as any[]);
    writeImage(queues, imageKindForFile('sk-queues.img')!, entries);
  };
  rewrite((scm) => scm.map((m) => ({ ...m, type: 2 })));
  await t.rejects(restore({ imagesDir: out, pidNamespace: true }), { message: /carries a control message of type 2: only SCM_RIGHTS is supported/ });
  rewrite((scm) => scm.map((m) => ({ ...m, rights: [999999] })));
  await t.rejects(restore({ imagesDir: out, pidNamespace: true }), { message: /files\.img: at byte 0: expected a file with id 999999 \(referenced from sk-queues\.img\)/ });
});

t.test("a queued message's sender credentials (SO_PASSCRED): dumped as ucred, sent again with them", async (t) => {
  const p = await startProgram(t, 'unixsk', ['creds']);
  const out = tmpOut(t, 'creds');
  const pids = p.tree();
  // The child runs as uid 65534, gid 65533, without capabilities: restored as it was.
  const credLines = (pid: number) => readFileSync(`/proc/${pid}/status`, 'latin1').split('\n').filter((l) => /^(Uid|Gid|Groups|Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs):/.test(l));
  const before = credLines(pids.find((pid) => pid !== p.pid)!);
  await dump({ pid: p.pid, imagesDir: out });
  for (const pid of pids) await waitPidGone(pid);
  const child = (readImage(join(out, 'pstree.img')).all() as any[]).map((e) => e.pid).find((pid: number) => pid !== p.pid);
  const packet = [...readImage(join(out, 'sk-queues.img')).entries()].map((e) => e.decode()).find((e: any) => e.ucred) as any;
  t.match(packet?.ucred, { pid: child, uid: 65534, gid: 65533 }, "sk-queues.img: the child's pid, uid and gid");
  const result = await restore({ imagesDir: out, pidNamespace: true });
  t.teardown(() => result.kill());
  t.same(credLines(result.hostPids.get(child)!), before, 'the non-root child has its uids, gids, groups and capabilities back');
  t.match(before.join('\n'), /Uid:\t65534\t65534\t65534\t65534\n[^]*CapEff:\t0000000000000000/, 'a task that dropped root');
  t.same(await requestCheck(result.rootHostPid, p.resultFile), { pass: true, text: 'PASS' }, 'received with them after the restore');
});
