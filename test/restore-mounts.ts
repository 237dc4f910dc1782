// A mount namespace of the tree's own (program mounts): a tmpfs with files (one open at an
// offset), a read-only bind mount, and a mount of crr's namespace detached. The dump keeps the
// mount list and the tmpfs files; the restore makes the namespace again in the root's parent.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readlinkSync, rmdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openCheckpoint } from '../src/images/index.js';
import { restore } from '../src/restore/index.js';
import { dumpProgram, restoreProgram } from './lib/program-roundtrip.js';
import { requestCheck, startProgram } from './lib/programs.js';
import { rewriteImage } from './lib/restore-images.js';

/** A tmpfs mounted in crr's own namespace, for the program to detach in its own. */
function crrMount(t: { teardown(fn: () => unknown): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'crr-mnt-gone-'));
  mkdirSync(dir, { recursive: true });
  const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'none', dir]);
  if (mounted.status !== 0) throw new Error(`mount tmpfs on ${dir}: ${String(mounted.stderr)}`);
  t.teardown(() => {
    spawnSync('umount', ['-l', dir]);
    rmdirSync(dir);
  });
  return dir;
}

t.test('the self-check notices a tmpfs that is gone', async (t) => {
  const prog = await startProgram(t, 'mounts', [crrMount(t)], { env: { CRR_SELFTEST_BREAK: 'tmpfs' } });
  const r = await requestCheck(prog.pid, prog.resultFile);
  t.notOk(r.pass, r.text);
});

t.test('a mount namespace comes back with its tmpfs files, its read-only bind mount and without a detached mount', async (t) => {
  const gone = crrMount(t);
  const prog = await startProgram(t, 'mounts', [gone]);
  const imagesDir = await dumpProgram(t, prog);
  const checkpoint = openCheckpoint(imagesDir);
  const id = checkpoint.ids(prog.pid)['mnt_ns_id'];
  const mounts = [...checkpoint.image(`mountpoints-${id}.img`).entries()].map((e) => e.decode());
  const tmpfs = mounts.find((m) => m['mountpoint'] === join(prog.dir, 't'));
  t.match(tmpfs, { fstype: 5, options: /size=4096k,mode=750/ }, 'mountpoints: the tmpfs with its options');
  t.ok(checkpoint.has(`tmpfs-dev-${String(tmpfs?.['root_dev'])}.tar.gz.img`), "its files in a tar archive named by its device, as CRIU names it");
  t.notOk(mounts.some((m) => m['mountpoint'] === gone), 'the detached mount is not in the list');
  const rt = await restoreProgram(t, prog, imagesDir);
  t.not(readlinkSync(`/proc/${rt.result.rootHostPid}/ns/mnt`), readlinkSync('/proc/self/ns/mnt'), "the restored root is not in crr's mount namespace");
  t.same(await rt.check(), { pass: true, text: 'PASS' }, 'fd 40 and the tmpfs files, the read-only bind mount, no detached mount');
  t.equal(spawnSync('findmnt', ['-n', join(prog.dir, 't')]).status, 1, "crr's own namespace did not get the tmpfs");

  const bound = mounts.find((m) => m['mountpoint'] === join(prog.dir, 'b'))!;
  rewriteImage(imagesDir, `mountpoints-${id}.img`, (entries) => entries.map((e) => (e['mnt_id'] === bound['mnt_id'] ? { ...e, root_dev: (999 << 20) >>> 0 } : e)));
  await t.rejects(restore({ imagesDir, pidNamespace: true, dryRun: true }), { stage: 'plan', resource: 'namespaces', message: /cannot be made here: no mount of its filesystem \(999:0/ }, 'a bind mount of a filesystem crr does not see is refused at plan time');

  rewriteImage(imagesDir, `mountpoints-${id}.img`, (entries) => entries.map((e) => (e['mountpoint'] === '/' ? { ...e, fstype: 5 } : e)));
  await t.rejects(restore({ imagesDir, pidNamespace: true, dryRun: true }), { stage: 'plan', resource: 'namespaces', message: /the tree's root is its own \(tmpfs .*\).*give the directory that holds it with --root DIR/ }, 'a root of its own (a container\'s) that crr does not see needs --root');
});

t.test("without a PID namespace the root's parent unshares the mount namespace itself", async (t) => {
  const prog = await startProgram(t, 'mounts', [crrMount(t)]);
  const imagesDir = await dumpProgram(t, prog);
  const result = await restore({ imagesDir });
  t.teardown(() => result.kill());
  t.same(await requestCheck(result.rootHostPid, prog.resultFile), { pass: true, text: 'PASS' }, 'the same namespace, made by a plain holder');
});
