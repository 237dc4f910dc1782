// A container's tree: a PID and mount namespace of its own whose root is an overlay (lower: this
// machine's /, upper on a tmpfs), entered by pivot_root, with /proc, and /dev as a runtime makes
// it (a tmpfs with device nodes, a host device bind-mounted, devpts of its own). The dump describes the overlay root and carries none of its files; the restore
// makes the overlay where crr sees it the tree's root, or with rootDir (criu --root) a new
// overlay on a copy of the upper layer, as a platform that kept the container's rootfs has it.
// The counter's output file lives in the container: it carries on from the dumped line.
import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { dump } from '../src/dump/index.js';
import { openCheckpoint, type Entry } from '../src/images/index.js';
import { readTarGz } from '../src/images/tar.js';
import { summariseCheckpoint } from '../src/cli/commands/show.js';
import { restore } from '../src/restore/index.js';
import { buildPrograms, killTree, programPath, requestCheck, waitPidGone } from './lib/programs.js';
import { copyFixture, rewriteImage } from './lib/restore-images.js';

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

/** A directory for the test, and a tmpfs `rw` in it for the overlays' upper layers. */
function scratch(t: { teardown(fn: () => unknown): void }): { dir: string; rw: string } {
  const dir = mkdtempSync(join(tmpdir(), 'crr-container-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const rw = join(dir, 'rw');
  mkdirSync(rw);
  run('mount', '-t', 'tmpfs', 'tmpfs', rw);
  t.teardown(() => spawnSync('umount', ['-l', rw]));
  return { dir, rw };
}

/** A fresh overlay of / at DIR/merged`suffix`, its layers upper`suffix` and work`suffix` in `rw`. */
function overlay(t: { teardown(fn: () => unknown): void }, dir: string, rw: string, suffix: string): string {
  const merged = join(dir, `merged${suffix}`);
  mkdirSync(join(rw, `upper${suffix}`));
  mountOverlay(t, merged, join(rw, `upper${suffix}`), join(rw, `work${suffix}`));
  return merged;
}

interface ContainerOptions {
  /** The shell redirections its init starts with (stdio on the container's /dev/null by default). */
  fds?: string;
  /** A user namespace of its own (root mapped to root), its device nodes bind-mounted. */
  userns?: boolean;
  /** Host directories bind-mounted at /vol. */
  volumes?: string[];
  /** The test program its init runs (result file /ctr-result), the counter by default. */
  program?: string[];
}

/** The container: its init is the counter, pid 1 of its PID namespace, its output at /ctr-out. */
async function startContainer(t: { teardown(fn: () => unknown): void }, merged: string, options: ContainerOptions = {}): Promise<number> {
  const { fds = 'exec </dev/null >/dev/null 2>/ctr-log', userns = false, volumes = [], program = [programPath('counter'), '/ctr-result', '/ctr-out'] } = options;
  buildPrograms();
  // As a runtime makes /dev: a tmpfs with device nodes, a host device bind-mounted on a file,
  // a devpts instance of its own.
  const script = [
    'export PATH=/usr/sbin:/usr/bin:/sbin:/bin',
    `mount --bind ${merged} ${merged}`,
    `mount -t tmpfs -o mode=755,size=64k tmpfs ${merged}/dev`,
    // In a user namespace of its own no mknod: the host's nodes are bind-mounted instead.
    ...(userns
      ? ['null', 'zero'].map((n) => `touch ${merged}/dev/${n} && mount --bind /dev/${n} ${merged}/dev/${n}`)
      : [`mknod -m 666 ${merged}/dev/null c 1 3`, `mknod -m 640 ${merged}/dev/zero c 1 5`]),
    `touch ${merged}/dev/urandom`,
    `mount --bind /dev/urandom ${merged}/dev/urandom`,
    `mkdir ${merged}/dev/pts`,
    `mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts ${merged}/dev/pts`,
    ...volumes.map((v) => `mkdir -p ${merged}/vol && mount --bind ${v} ${merged}/vol`),
    `cd ${merged}`,
    'mkdir -p .old',
    'pivot_root . .old',
    'cd /',
    'mount -t proc proc /proc',
    // runc's masked and read-only paths: bind mounts of the container's own mounts.
    'mount --bind /proc/sys /proc/sys',
    'mount -o remount,bind,ro /proc/sys',
    'mount --bind /dev/null /proc/timer_list',
    'umount -l /.old',
    'rmdir /.old',
    ...(fds ? [fds] : []),
    `exec setsid ${program.join(' ')}`,
  ].join(' && ');
  const unshare = spawn('unshare', [...(userns ? ['--user', '--map-root-user'] : []), '--mount', '--pid', '--fork', 'sh', '-c', `touch ${merged}/ctr-out && ${script}`], { stdio: 'ignore', detached: true });
  unshare.unref();
  const child = (): number | undefined => {
    try {
      return Number(readFileSync(`/proc/${unshare.pid}/task/${unshare.pid}/children`, 'utf8').trim().split(/\s+/)[0]) || undefined;
    } catch {
      return undefined;
    }
  };
  let root: number | undefined;
  t.teardown(() => killTree([...new Set([root, child()].filter((p): p is number => p !== undefined)), unshare.pid!]));
  const result = join(merged, 'ctr-result');
  for (let i = 0; i < 500 && !(existsSync(result) && readFileSync(result, 'utf8').startsWith('READY')); i++) await sleep(10);
  root = child();
  if (!root) throw new Error(`the container did not start (${existsSync(result) ? readFileSync(result, 'utf8') : 'no result file'})`);
  return root;
}

/** The container's mounts as its mountinfo lists them: mount point and fstype (mnt_entry's number, or fsname). */
const MOUNTS = [['/', 17], ['/dev', 5], ['/dev/urandom', 3], ['/dev/pts', 6], ['/proc', 1], ['/proc/sys', 1], ['/proc/timer_list', 5]];

/** The restored counter's fd of /ctr-out and the file at `path` are one file. */
function sameOutput(hostPid: number, path: string): boolean {
  const fd = readdirSync(`/proc/${hostPid}/fd`).find((n) => readlinkSync(`/proc/${hostPid}/fd/${n}`) === '/ctr-out');
  if (!fd) return false;
  const held = statSync(`/proc/${hostPid}/fd/${fd}`);
  const there = statSync(path);
  return held.ino === there.ino && held.dev === there.dev;
}

t.test('a container on an overlay root is restored on that rootfs, found or given with rootDir', async (t) => {
  const { dir, rw } = scratch(t);
  const merged = overlay(t, dir, rw, '');

  const root = await startContainer(t, merged);
  t.match(readFileSync(`/proc/${root}/mountinfo`, 'utf8'), /^\d+ \d+ \S+ \/ \/ \S+ .*- overlay /, "the container's root is the overlay");
  await sleep(1200); // a line or two in /ctr-out
  const imagesDir = join(dir, 'images');
  await dump({ pid: root, imagesDir });
  await waitPidGone(root);

  const checkpoint = openCheckpoint(imagesDir);
  const mountsImage = readdirSync(imagesDir).find((n) => n.startsWith('mountpoints-'))!;
  const mounts = [...checkpoint.image(mountsImage).entries()].map((e) => e.decode() as Entry);
  t.same(mounts.map((m) => [m['mountpoint'], m['fsname'] ?? m['fstype']]), MOUNTS, 'mountpoints: the overlay root (OVERLAYFS, 17), /dev with its device and devpts, /proc');
  const devArchive = readdirSync(imagesDir).filter((n) => n.startsWith('tmpfs-dev-'));
  t.equal(devArchive.length, 1, "one tmpfs archive, /dev's: the rootfs's files are not in the checkpoint");
  const nodes = readTarGz(readFileSync(join(imagesDir, devArchive[0]!)), 'dev').map((e) => [e.path, e.type, e.major, e.minor, e.mode & 0o777]);
  t.same(nodes.filter(([path]) => path !== 'pts'), [['null', 'chardev', 1, 3, 0o666], ['urandom', 'chardev', 1, 9, 0o666], ['zero', 'chardev', 1, 5, 0o640]], '/dev: its device nodes with their numbers and modes');
  t.match(summariseCheckpoint(imagesDir).namespaces, [/^pid$/, /^mnt: 7 mounts, a root of its own \(overlay overlay: not in the checkpoint; the restore takes --root DIR/], '`crr show` names the root of its own');
  const escaping = join(dir, 'escaping');
  cpSync(imagesDir, escaping, { recursive: true });
  rewriteImage(escaping, mountsImage, (entries) => entries.map((e) => (e['mountpoint'] === '/proc' ? { ...e, mountpoint: '/../proc' } : e)));
  await t.rejects(restore({ imagesDir: escaping, pidNamespace: true, dryRun: true }), { message: /an absolute mountpoint without "\." or "\.\."/ }, 'a mount point reaching out of the root: refused as a bad image');
  // The platform keeps the container's rootfs: here a copy of its upper layer as dumped.
  cpSync(join(rw, 'upper'), join(rw, 'kept'), { recursive: true });

  await t.test('found: the overlay where crr sees it becomes the root', async (t) => {
    const result = await restore({ imagesDir, pidNamespace: true });
    t.teardown(() => result.kill());
    const host = result.rootHostPid;
    const lines = readFileSync(`/proc/${host}/mountinfo`, 'utf8').trim().split('\n');
    t.match(lines[0], / \/ \/ .* - overlay overlay /, "the restored tree's root is the overlay");
    t.same(lines.map((l) => l.split(' ')[4]), MOUNTS.map(([point]) => point), "and its mounts are the dumped ones, nothing of crr's");
    t.ok(sameOutput(host, join(merged, 'ctr-out')), '/ctr-out is the file in the overlay');
    t.equal(readlinkSync(`/proc/${host}/fd/0`), '/dev/null', 'stdin is /dev/null of the container');
    t.equal(statSync(`/proc/${host}/fd/0`).rdev, (1 << 8) | 3, 'a device node 1:3');
    const zero = statSync(`/proc/${host}/root/dev/zero`);
    t.ok(zero.isCharacterDevice() && zero.rdev === ((1 << 8) | 5) && (zero.mode & 0o777) === 0o640, '/dev/zero made again with its mode');
    t.not(statSync(`/proc/${host}/root/dev/pts`).dev, statSync('/dev/pts').dev, 'its /dev/pts a devpts instance of its own');
    t.ok(existsSync(`/proc/${host}/root/dev/pts/ptmx`), 'with its ptmx');
    t.match(lines.find((l) => l.split(' ')[4] === '/proc/sys'), /^\S+ \S+ \S+ \/sys \/proc\/sys ro,/, "/proc/sys: its /proc's own, read-only");
    t.equal(statSync(`/proc/${host}/root/proc/timer_list`).rdev, (1 << 8) | 3, '/proc/timer_list masked by its /dev/null');
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

t.test('a container in a user namespace of its own, its device nodes bind-mounted', async (t) => {
  const { dir, rw } = scratch(t);
  const merged = overlay(t, dir, rw, '');
  const root = await startContainer(t, merged, { userns: true });
  t.match(readFileSync(`/proc/${root}/uid_map`, 'utf8'), /^\s*0\s+0\s+1\s*$/, 'root in its user namespace, mapped to root');
  const imagesDir = join(dir, 'images');
  await dump({ pid: root, imagesDir });
  await waitPidGone(root);
  const result = await restore({ imagesDir, pidNamespace: true });
  t.teardown(() => result.kill());
  const host = result.rootHostPid;
  t.not(readlinkSync(`/proc/${host}/ns/user`), readlinkSync('/proc/self/ns/user'), 'restored in a user namespace of its own');
  t.same(readFileSync(`/proc/${host}/mountinfo`, 'utf8').trim().split('\n').map((l) => l.split(' ')[4]), ['/', '/dev', '/dev/null', '/dev/zero', '/dev/urandom', '/dev/pts', '/proc', '/proc/sys', '/proc/timer_list'], 'its mounts, on the overlay');
  t.equal(statSync(`/proc/${host}/fd/0`).rdev, (1 << 8) | 3, 'stdin the bind-mounted /dev/null');
  t.same(await requestCheck(host, join(merged, 'ctr-result')), { pass: true, text: 'PASS' }, 'the counter carries on');
});

t.test('a deleted file the container holds is made again below its root, and gone again after', async (t) => {
  const { dir, rw } = scratch(t);
  const merged = overlay(t, dir, rw, '');
  const root = await startContainer(t, merged, { program: [programPath('ghost'), '/ctr-result'] });
  const imagesDir = join(dir, 'images');
  await dump({ pid: root, imagesDir });
  await waitPidGone(root);
  t.ok(readdirSync(imagesDir).some((n) => n.startsWith('ghost-file-')), 'its deleted files are in the checkpoint');
  const result = await restore({ imagesDir, pidNamespace: true });
  t.teardown(() => result.kill());
  t.equal(readlinkSync(`/proc/${result.rootHostPid}/fd/20`), '/ghost-data (deleted)', 'fd 20 names the deleted file by its path in the container');
  t.same(readdirSync(merged).filter((n) => n.includes('ghost')), [], 'nothing of it left in the container root');
  t.notOk(existsSync('/ghost-data'), "nor in crr's own root");
  t.same(await requestCheck(result.rootHostPid, join(merged, 'ctr-result')), { pass: true, text: 'PASS' }, 'its offset, bytes and mapping');
});

t.test('a volume left out of the dump (criu --external mnt[/vol]:KEY) is bound from the path given for KEY, or found', async (t) => {
  const { dir, rw } = scratch(t);
  const merged = overlay(t, dir, rw, '');
  const [volA, volB] = ['vol-a', 'vol-b'].map((name) => {
    const path = join(dir, name);
    mkdirSync(path);
    writeFileSync(join(path, name), name);
    return path;
  }) as [string, string];
  const root = await startContainer(t, merged, { volumes: [volA] });
  const imagesDir = join(dir, 'images');
  await t.rejects(dump({ pid: root, imagesDir, external: ['mnt[/nope]:x'] }), { message: /--external mnt\[\/nope\]: its mount namespace has no mount at \/nope/ }, 'a mount point it lacks: refused');
  await dump({ pid: root, imagesDir, external: ['mnt[/vol]:data'] });
  await waitPidGone(root);
  const mountsImage = readdirSync(imagesDir).find((n) => n.startsWith('mountpoints-'))!;
  const vol = [...openCheckpoint(imagesDir).image(mountsImage).entries()].map((e) => e.decode() as Entry).find((m) => m['mountpoint'] === '/vol');
  t.match(vol, { ext_mount: true, ext_key: 'data' }, 'its mnt_entry carries the key');
  const proc = [...openCheckpoint(imagesDir).image(mountsImage).entries()].map((e) => e.decode() as Entry).find((m) => m['mountpoint'] === '/proc');
  t.notOk(proc?.['ext_key'], 'its fresh /proc is no external mount (either restore makes one)');

  await t.rejects(restore({ imagesDir, pidNamespace: true, externalMounts: { other: volB } }), { stage: 'plan', message: /--external mnt\[other\]: no mount of the checkpoint has that key \(its keys: data\)/ }, 'an unknown key: refused');
  const given = await restore({ imagesDir, pidNamespace: true, externalMounts: { data: volB } });
  t.ok(existsSync(`/proc/${given.rootHostPid}/root/vol/vol-b`) && !existsSync(`/proc/${given.rootHostPid}/root/vol/vol-a`), 'given: /vol is vol-b');
  await given.kill();
  // The first restore's counter wrote on in /ctr-out: its size is not the dumped one now.
  const found = await restore({ imagesDir, pidNamespace: true, allowFileMismatch: true });
  t.teardown(() => found.kill());
  t.ok(existsSync(`/proc/${found.rootHostPid}/root/vol/vol-a`), 'not given: the volume where crr sees it');
});

t.test("a container holding the runtime's /dev/null, or a terminal of its own devpts, is refused at dump", async (t) => {
  const { dir, rw } = scratch(t);
  const cases: Array<[string, string, RegExp]> = [
    ['outside', '', /fd 0 is \/dev\/null on mount \d+, outside its mount namespace, whose root is its own/],
    ['terminal', 'exec </dev/null >/dev/null 2>/ctr-log 5<>/dev/pts/ptmx', /fd 5 is a terminal \(\/dev\/pts\/ptmx\) of a mount namespace with a devpts instance of its own/],
  ];
  for (const [name, fds, refusal] of cases) {
    const merged = overlay(t, dir, rw, `-${name}`);
    const root = await startContainer(t, merged, { fds });
    await t.rejects(dump({ pid: root, imagesDir: join(dir, `images-${name}`) }), { message: refusal }, name);
    t.ok(existsSync(`/proc/${root}`), 'the container runs on');
    await killTree([root]);
    spawnSync('umount', ['-l', merged]);
  }
});

t.test('rootDir for a tree on crr\'s own root is refused', async (t) => {
  const imagesDir = copyFixture(t, 'sleep');
  await t.rejects(restore({ imagesDir, dryRun: true, pidNamespace: true, rootDir: '/tmp' }), { stage: 'plan', message: /--root \/tmp: the tree's root is crr's own/ });
});
