// A container's tree: a PID and mount namespace of its own whose root is an overlay (lower: this
// machine's /, upper on a tmpfs), entered by pivot_root, with /proc mounted inside, as a runtime
// starts one. The dump describes the overlay root and carries none of its files; the restore
// makes the overlay where crr sees it the tree's root, or with rootDir (criu --root) a new
// overlay on a copy of the upper layer, as a platform that kept the container's rootfs has it.
// The counter's output file lives in the container: it carries on from the dumped line.
import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { dump } from '../src/dump/index.js';
import { openCheckpoint, type Entry } from '../src/images/index.js';
import { restore } from '../src/restore/index.js';
import { buildPrograms, killTree, programPath, requestCheck, waitPidGone } from './lib/programs.js';
import { copyFixture } from './lib/restore-images.js';

function run(command: string, ...args: string[]): void {
  const got = spawnSync(command, args, { encoding: 'utf8' });
  if (got.status !== 0) throw new Error(`${command} ${args.join(' ')}: ${got.stderr || got.error?.message}`);
}

/** An overlay of this machine's / at `merged`, its upper and work directories below `rw`. */
function mountOverlay(t: { teardown(fn: () => unknown): void }, merged: string, upper: string, work: string): void {
  mkdirSync(merged, { recursive: true });
  mkdirSync(work, { recursive: true });
  run('mount', '-t', 'overlay', 'overlay', '-o', `lowerdir=/,upperdir=${upper},workdir=${work}`, merged);
  t.teardown(() => spawnSync('umount', ['-l', merged]));
}

/** The container: its init is the counter, pid 1 of its PID namespace, its output at /ctr-out. */
async function startContainer(t: { teardown(fn: () => unknown): void }, merged: string, stdioInside = true): Promise<number> {
  buildPrograms();
  const script = [
    'export PATH=/usr/sbin:/usr/bin:/sbin:/bin',
    `mount --bind ${merged} ${merged}`,
    `cd ${merged}`,
    'mkdir -p .old',
    'pivot_root . .old',
    'cd /',
    'mount -t proc proc /proc',
    'umount -l /.old',
    'rmdir /.old',
    ...(stdioInside ? ['exec </ctr-out >/ctr-log 2>&1'] : []),
    `exec setsid ${programPath('counter')} /ctr-result /ctr-out`,
  ].join(' && ');
  const unshare = spawn('unshare', ['--mount', '--pid', '--fork', 'sh', '-c', `touch ${merged}/ctr-out && ${script}`], { stdio: 'ignore', detached: true });
  unshare.unref();
  const child = (): number | undefined => {
    try {
      return Number(readFileSync(`/proc/${unshare.pid}/task/${unshare.pid}/children`, 'utf8').trim().split(/\s+/)[0]) || undefined;
    } catch {
      return undefined;
    }
  };
  let root: number | undefined;
  t.teardown(() => killTree([...(root ? [root] : []), unshare.pid!]));
  const result = join(merged, 'ctr-result');
  for (let i = 0; i < 500 && !(existsSync(result) && readFileSync(result, 'utf8').startsWith('READY')); i++) await sleep(10);
  root = child();
  if (!root) throw new Error(`the container did not start (${existsSync(result) ? readFileSync(result, 'utf8') : 'no result file'})`);
  return root;
}

/** The restored counter's fd of /ctr-out and the file at `path` are one file. */
function sameOutput(hostPid: number, path: string): boolean {
  const fd = readdirSync(`/proc/${hostPid}/fd`).find((n) => readlinkSync(`/proc/${hostPid}/fd/${n}`) === '/ctr-out');
  if (!fd) return false;
  const held = statSync(`/proc/${hostPid}/fd/${fd}`);
  const there = statSync(path);
  return held.ino === there.ino && held.dev === there.dev;
}

t.test('a container on an overlay root is restored on that rootfs, found or given with rootDir', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'crr-container-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const rw = join(dir, 'rw');
  mkdirSync(rw);
  run('mount', '-t', 'tmpfs', 'tmpfs', rw);
  t.teardown(() => spawnSync('umount', ['-l', rw]));
  mkdirSync(join(rw, 'upper'));
  const merged = join(dir, 'merged');
  mountOverlay(t, merged, join(rw, 'upper'), join(rw, 'work'));

  const root = await startContainer(t, merged);
  t.match(readFileSync(`/proc/${root}/mountinfo`, 'utf8'), /^\d+ \d+ \S+ \/ \/ \S+ .*- overlay /, "the container's root is the overlay");
  await sleep(1200); // a line or two in /ctr-out
  const imagesDir = join(dir, 'images');
  await dump({ pid: root, imagesDir });
  await waitPidGone(root);

  const checkpoint = openCheckpoint(imagesDir);
  const mountsImage = readdirSync(imagesDir).find((n) => n.startsWith('mountpoints-'))!;
  const mounts = [...checkpoint.image(mountsImage).entries()].map((e) => e.decode() as Entry);
  t.same(mounts.map((m) => [m['mountpoint'], m['fsname'] ?? m['fstype']]), [['/', 'overlay'], ['/proc', 1]], 'mountpoints: the overlay root and its /proc');
  t.notOk(readdirSync(imagesDir).some((n) => n.startsWith('tmpfs-dev-')), "the rootfs's files are not in the checkpoint");
  // The platform keeps the container's rootfs: here a copy of its upper layer as dumped.
  cpSync(join(rw, 'upper'), join(rw, 'kept'), { recursive: true });

  await t.test('found: the overlay where crr sees it becomes the root', async (t) => {
    const result = await restore({ imagesDir, pidNamespace: true });
    t.teardown(() => result.kill());
    const host = result.rootHostPid;
    const lines = readFileSync(`/proc/${host}/mountinfo`, 'utf8').trim().split('\n');
    t.match(lines[0], / \/ \/ .* - overlay overlay /, "the restored tree's root is the overlay");
    t.same(lines.map((l) => l.split(' ')[4]), ['/', '/proc'], 'and its mounts are the dumped ones, nothing of crr\'s');
    t.ok(sameOutput(host, join(merged, 'ctr-out')), '/ctr-out is the file in the overlay');
    t.same(await requestCheck(host, join(merged, 'ctr-result')), { pass: true, text: 'PASS' }, 'the counter carries on in its file');
  });

  await t.test('given: rootDir names a new overlay on the kept upper layer', async (t) => {
    // Mounted before the first goes: an unmounted overlay's device number would go to the next.
    const merged2 = join(dir, 'merged2');
    mountOverlay(t, merged2, join(rw, 'kept'), join(rw, 'work2'));
    spawnSync('umount', ['-l', merged]);
    await t.rejects(restore({ imagesDir, pidNamespace: true }), { stage: 'plan', message: /crr's namespace shows no mount of it: give the directory that holds it with --root DIR/ }, 'without it: refused at plan time, naming --root');
    await t.rejects(restore({ imagesDir, pidNamespace: true, rootDir: join(dir, 'nothing') }), { stage: 'plan', message: /--root .*nothing: ENOENT/ }, 'a missing directory: refused');
    const result = await restore({ imagesDir, pidNamespace: true, rootDir: merged2 });
    t.teardown(() => result.kill());
    t.ok(sameOutput(result.rootHostPid, join(merged2, 'ctr-out')), '/ctr-out is the file in the new overlay');
    t.same(await requestCheck(result.rootHostPid, join(merged2, 'ctr-result')), { pass: true, text: 'PASS' }, 'the counter carries on from the kept layer');
  });
});

t.test("a container holding an fd from outside its root (the runtime's /dev/null) is refused at dump", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'crr-container-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const rw = join(dir, 'rw');
  mkdirSync(rw);
  run('mount', '-t', 'tmpfs', 'tmpfs', rw);
  t.teardown(() => spawnSync('umount', ['-l', rw]));
  mkdirSync(join(rw, 'upper'));
  const merged = join(dir, 'merged');
  mountOverlay(t, merged, join(rw, 'upper'), join(rw, 'work'));
  const root = await startContainer(t, merged, false);
  await t.rejects(dump({ pid: root, imagesDir: join(dir, 'images') }), { message: /fd 0 is \/dev\/null on mount \d+, outside its mount namespace, whose root is its own/ });
  t.ok(existsSync(`/proc/${root}`), 'the container runs on');
});

t.test('rootDir for a tree on crr\'s own root is refused', async (t) => {
  const imagesDir = copyFixture(t, 'sleep');
  await t.rejects(restore({ imagesDir, dryRun: true, pidNamespace: true, rootDir: '/tmp' }), { stage: 'plan', message: /--root \/tmp: the tree's root is crr's own/ });
});
