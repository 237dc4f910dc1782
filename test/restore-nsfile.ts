// Namespace files held at fds (src/dump/fd-nsfile.ts, src/resources/nsfile.ts): a program in a
// UTS namespace of its own (unshared after it started) holds its UTS, network and PID namespaces
// at fds 40, 41 (dup'ed at 43) and 42. Restored in a fresh PID namespace, each fd is the
// namespace the task is in again: the tree's own UTS namespace as restored, crr's network
// namespace, the new PID namespace. A namespace neither the tree nor crr is in is refused.
import t from 'tap';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dump } from '../src/dump/index.js';
import { summariseCheckpoint } from '../src/cli/commands/show.js';
import { openCheckpoint } from '../src/images/index.js';
import { restore } from '../src/restore/index.js';
import { rewriteImage } from './lib/restore-images.js';
import { dumpProgram, restoreProgram } from './lib/program-roundtrip.js';
import { startPython } from './lib/python-program.js';
import { makeNetns } from './lib/netns.js';

t.test("namespace fds come back as the namespaces the task is in: the tree's own, crr's, the new PID namespace", async (t) => {
  const setUp = [
    'libc = ctypes.CDLL(None, use_errno=True)',
    'assert libc.unshare(0x04000000) == 0', // CLONE_NEWUTS
    'socket.sethostname("crr-nsfile")',
    'for fd, kind in ((40, "uts"), (41, "net"), (42, "pid")):',
    '    got = os.open(f"/proc/self/ns/{kind}", os.O_RDONLY)',
    '    os.dup2(got, fd)',
    '    os.close(got)',
    'os.dup2(41, 43, inheritable=False)',
  ];
  const check = [
    'same = [os.readlink(f"/proc/self/fd/{fd}") == os.readlink(f"/proc/self/ns/{kind}") for fd, kind in ((40, "uts"), (41, "net"), (42, "pid"), (43, "net"))]',
    'open(result, "w").write(repr([same, socket.gethostname(), os.get_inheritable(41), os.get_inheritable(43)]))',
  ];
  const { prog, go, result } = await startPython(t, ['ctypes', 'socket'], setUp, check, 'a program holding its namespaces');
  const imagesDir = await dumpProgram(t, prog);
  const checkpoint = openCheckpoint(imagesDir);
  const fds = checkpoint.fdinfo(checkpoint.ids(prog.pid).files_id).filter((f) => f.fd >= 40 && f.fd <= 43);
  t.same(fds.map((f) => f.type), [14, 14, 14, 14], 'fdinfo: NS entries');
  t.equal(fds[1]!.id, fds[3]!.id, 'fds 41 and 43: one description');
  t.match(summariseCheckpoint(imagesDir).tasks[0]!.fds.find((fd) => fd.fd === 41)!.what, /^namespace \(id \d+, CLONE_NEW\* 0x40000000\)$/, 'crr show names it');
  const ids = checkpoint.ids(prog.pid) as unknown as Record<string, number>;
  const own = checkpoint.inventory['root_ids'] as Record<string, number>;
  const nsIdOf = (fd: number) => Number((checkpoint.file(fds.find((f) => f.fd === fd)!.id)['nsf'] as Record<string, number>)['ns_id']);
  t.equal(nsIdOf(40), ids['uts_ns_id'], "fd 40: the tree's UTS namespace");
  t.not(ids['uts_ns_id'], own['uts_ns_id'], "which is not the dumper's");
  t.equal(nsIdOf(41), own['net_ns_id'], "fd 41: the dumper's network namespace, the tree's too");
  // The same images with fd 40's namespace id changed to one of neither: refused at plan time.
  const unknown = mkdtempSync(join(tmpdir(), 'crr-nsfile-'));
  t.teardown(() => rmSync(unknown, { recursive: true, force: true }));
  cpSync(imagesDir, unknown, { recursive: true });
  rewriteImage(unknown, 'files.img', (entries) => entries.map((e) => (Number(e['id']) === fds[0]!.id ? { ...e, nsf: { ...(e['nsf'] as object), ns_id: 999 } } : e)));
  await t.rejects(restore({ imagesDir: unknown, dryRun: true, pidNamespace: true }), { stage: 'plan', pid: prog.pid, resource: 'nsfile', message: /fd 40 is a namespace file: its uts namespace \(id 999\) is neither the tree's nor the dumper's/ }, 'an unknown namespace id: refused at plan time');
  await restoreProgram(t, prog, imagesDir);
  go();
  t.equal(await result(), "[[True, True, True, True], 'crr-nsfile', True, False]", 'each fd is the namespace the task is in; CLOEXEC kept');
});

t.test('a namespace file of a namespace neither the tree nor crr is in is refused at dump, naming it', async (t) => {
  const netns = makeNetns(t, '10.77.0.1');
  const setUp = [`got = os.open(${JSON.stringify(netns.path)}, os.O_RDONLY)`, 'os.dup2(got, 40)', 'os.close(got)'];
  const { prog } = await startPython(t, [], setUp, [], 'a program holding a network namespace of its own');
  const imagesDir = mkdtempSync(join(tmpdir(), 'crr-nsfile-'));
  t.teardown(() => rmSync(imagesDir, { recursive: true, force: true }));
  await t.rejects(dump({ pid: prog.pid, imagesDir }), { message: new RegExp(`pid ${prog.pid}: fd 40 is a namespace file \\(${netns.path}\\) of a namespace neither the tree nor crr is in, which crr dump does not support`) });
});
