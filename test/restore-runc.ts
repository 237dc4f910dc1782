// runc (Debian's 1.1.5) checkpoints and restores a container with crr as its criu (`runc --criu
// bin/crr.js`, which runs `crr swrk 3`: src/service/swrk.ts). The container is a busybox shell
// counting into a file of its rootfs and of a volume (a bind mount, which runc names to criu as
// an external mount), in runc's namespaces (PID, mount with its masked paths and cgroup binds,
// network with lo, IPC, UTS) and cgroups. `--leave-running --work-path` leaves it running with
// crr's log in the work path; a checkpoint leaves runc's container gone; `runc restore -d` brings it back running, counting on from where it was; checkpointed
// again, a foreground `runc restore` has the restored init as its child and exits with its
// exit status when the container ends. A container whose stdout is a pipe gets the pipe of
// the runc that restores it (criu's inherit_fd of pipe:[ID], which runc sends for its stdio); one
// with a terminal gets a new one whose master runc passes to its console socket; one that joined
// a network namespace its runtime made (CNI's way) goes back into it (external net, inherit_fd).
import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { killTree, processTree, waitFor, waitPidGone } from './lib/programs.js';

const crr = fileURLToPath(new URL('../bin/crr.js', import.meta.url));
const RUNC = '/usr/sbin/runc';
const BUSYBOX = '/bin/busybox';

/** `runc --criu crr ARGS`; on failure `out` has crr's log from the images dir too. */
function runc(args: string[], cwd: string): { code: number | null; out: string } {
  const r = spawnSync(RUNC, ['--criu', crr, ...args], { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 120_000 });
  const images = args[args.indexOf('--image-path') + 1]!;
  const logs = r.status === 0 ? [] : ['dump.log', 'restore.log'].map((name) => join(images, name)).filter((path) => existsSync(path));
  return { code: r.status, out: [`${r.stdout}${r.stderr}`, ...logs.map((path) => readFileSync(path, 'utf8'))].join('\n') };
}

function statePid(id: string): number | undefined {
  const r = spawnSync(RUNC, ['state', id], { encoding: 'utf8' });
  if (r.status !== 0) return undefined;
  const state = JSON.parse(r.stdout) as { pid: number; status: string };
  return state.status === 'running' ? state.pid : undefined;
}

/**
 * At the test's end: whatever runc still knows of the containers `ids`, then anything left of
 * their trees or in their cgroups (a restore runc lost track of), by PID, and those cgroups.
 */
function removeAtEnd(t: Tap.Test, ...ids: string[]): void {
  t.teardown(async () => {
    for (const id of ids) {
      const pid = statePid(id);
      const left = new Set(pid ? processTree(pid) : []);
      const cgroups = readdirSync('/sys/fs/cgroup').map((h) => `/sys/fs/cgroup/${h}/${id}`).filter((dir) => existsSync(`${dir}/cgroup.procs`));
      for (const dir of cgroups) for (const p of readFileSync(`${dir}/cgroup.procs`, 'utf8').split('\n').filter(Boolean)) left.add(Number(p));
      spawnSync(RUNC, ['delete', '-f', id], { stdio: 'ignore' });
      await killTree([...left]);
      for (const dir of cgroups) {
        try {
          rmdirSync(dir);
        } catch {
          // runc removed it already
        }
      }
    }
  });
}

/** The counter the container writes, or undefined between its writes. */
function count(bundle: string): number | undefined {
  const text = existsSync(join(bundle, 'rootfs/tmp/count')) ? readFileSync(join(bundle, 'rootfs/tmp/count'), 'utf8').trim() : '';
  return /^\d+$/.test(text) ? Number(text) : undefined;
}

/**
 * A bundle whose container (named `crr-test-NAME-PID`, removed at the test's end) counts into
 * /tmp/count until /tmp/stop exists, then exits 7; `edit` changes its config.json first.
 */
function container(t: Tap.Test, name: string, edit?: (config: any) => void): { bundle: string; id: string; images: string } {
  const bundle = mkdtempSync(join(tmpdir(), 'crr-runc-'));
  t.teardown(() => rmSync(bundle, { recursive: true, force: true }));
  for (const dir of ['bin', 'proc', 'sys', 'dev', 'tmp', 'data']) mkdirSync(join(bundle, 'rootfs', dir), { recursive: true });
  mkdirSync(join(bundle, 'volume'));
  copyFileSync(BUSYBOX, join(bundle, 'rootfs/bin/busybox'));
  for (const applet of ['sh', 'sleep', 'cat']) symlinkSync('busybox', join(bundle, 'rootfs/bin', applet));
  const spec = spawnSync(RUNC, ['spec'], { cwd: bundle, encoding: 'utf8' });
  if (spec.status !== 0) throw new Error(`runc spec: ${spec.stderr}`);
  const config = JSON.parse(readFileSync(join(bundle, 'config.json'), 'utf8'));
  config.process.terminal = false;
  // On /tmp/hello it says hello on its stdout, once.
  config.process.args = ['sh', '-c', 'i=0; while [ ! -f /tmp/stop ]; do i=$((i+1)); echo $i > /tmp/count; echo $i > /data/count; if [ -f /tmp/hello ]; then rm /tmp/hello; echo hello $i; fi; sleep 0.05; done; exit 7'];
  // A volume: a bind mount runc names to criu as an external mount (ext_mnt) at dump and restore.
  config.mounts.push({ destination: '/data', type: 'bind', source: join(bundle, 'volume'), options: ['rbind', 'rw'] });
  config.root.readonly = false;
  // A memory limit, as a platform sets one: runc moves criu into the container's cgroups before a
  // restore, and crr's own memory (about 90 MiB) had the OOM killer end it there.
  config.linux.resources = { ...config.linux.resources, memory: { limit: 64 << 20 } };
  edit?.(config);
  writeFileSync(join(bundle, 'config.json'), JSON.stringify(config));
  const id = `crr-test-${name}-${process.pid}`;
  removeAtEnd(t, id);
  return { bundle, id, images: join(bundle, 'checkpoint') };
}

t.test('runc checkpoint and restore with crr as its criu', async (t) => {
  t.ok(existsSync(RUNC) && existsSync(BUSYBOX), 'runc and busybox-static are installed (scripts/setup.sh)');
  const { bundle, id, images } = container(t, 'main');
  const renamed = `${id}-b`;
  removeAtEnd(t, renamed);

  const run = spawnSync(RUNC, ['run', '-d', id], { cwd: bundle, stdio: 'ignore' });
  t.equal(run.status, 0, 'runc run -d');
  const first = await waitFor('the container counting', () => ((count(bundle) ?? 0) > 5 ? statePid(id) : undefined));

  const work = join(bundle, 'work');
  mkdirSync(work);
  const running = runc(['checkpoint', '--leave-running', '--work-path', work, '--image-path', join(bundle, 'running'), id], bundle);
  t.equal(running.code, 0, `runc checkpoint --leave-running: ${running.out}`);
  t.equal(statePid(id), first, 'with --leave-running the container runs on');
  t.match(readFileSync(join(work, 'dump.log'), 'utf8'), /dump done/, 'crr\'s log in runc\'s --work-path');

  const checkpoint = runc(['checkpoint', '--image-path', images, id], bundle);
  t.equal(checkpoint.code, 0, `runc checkpoint: ${checkpoint.out}`);
  t.equal(statePid(id), undefined, 'runc destroyed the container after the checkpoint');
  await waitPidGone(first);
  const reached = await waitFor('the last count', () => count(bundle));
  t.ok(existsSync(join(images, 'inventory.img')) && existsSync(join(images, 'descriptors.json')), 'crr\'s images beside runc\'s descriptors.json');
  t.match(readFileSync(join(images, 'dump.log'), 'utf8'), /notify post-dump/, 'runc got its post-dump notification');

  const restored = runc(['restore', '-d', '--image-path', images, id], bundle);
  t.equal(restored.code, 0, `runc restore -d: ${restored.out}`);
  const pid = statePid(id);
  t.ok(pid, 'runc knows the restored container as running');
  t.match(readFileSync(`/proc/${pid}/status`, 'utf8'), /NSpid:\s+\d+\s+1\n/, 'its init is pid 1 of its PID namespace');
  for (const ns of ['net', 'uts', 'ipc', 'mnt']) t.not(readlinkSync(`/proc/${pid}/ns/${ns}`), readlinkSync(`/proc/self/ns/${ns}`), `in a ${ns} namespace of its own`);
  // Read at once: a counter that started again from 1 would show a number below the last one.
  const resumedAt = await waitFor('a count after the restore', () => count(bundle));
  t.ok(resumedAt >= reached, `it counts on from ${reached} (${resumedAt} right after the restore), not from 1`);
  await waitFor('counting on', () => ((count(bundle) ?? 0) > resumedAt + 5 ? true : undefined));
  t.ok(Number(readFileSync(join(bundle, 'volume/count'), 'utf8')) > resumedAt, 'and into its volume, bound again from the host directory');

  // Again, from the restored container, and back in the foreground: runc waits for its init.
  rmSync(images, { recursive: true, force: true });
  const again = runc(['checkpoint', '--image-path', images, id], bundle);
  t.equal(again.code, 0, `runc checkpoint of the restored container: ${again.out}`);
  await waitPidGone(pid!);
  // Under another name: runc makes cgroups of that name and says so (cg_root); the tasks go there.
  const foreground = spawn(RUNC, ['--criu', crr, 'restore', '--image-path', images, renamed], { cwd: bundle, stdio: 'ignore' });
  const exited = new Promise<number | null>((resolve) => foreground.on('exit', (code) => resolve(code)));
  t.teardown(async () => {
    if (foreground.exitCode === null) foreground.kill('SIGKILL');
    await exited;
  });
  const init = await waitFor('the foreground restore', () => statePid(renamed));
  // runc may know the init before crr's launcher has exited and the init has come to runc (one
  // CI run read the launcher as its parent): a moment's grace.
  const runcsChild = new RegExp(`PPid:\\s+${foreground.pid}\\n`);
  await waitFor("the init to be runc's", () => (runcsChild.test(readFileSync(`/proc/${init}/status`, 'utf8')) ? true : undefined), 10_000).catch(() => undefined);
  t.match(readFileSync(`/proc/${init}/status`, 'utf8'), runcsChild, 'the restored init is runc\'s child');
  const cgroups = readFileSync(`/proc/${init}/cgroup`, 'utf8').trim().split('\n');
  t.ok(cgroups.every((line) => line.endsWith(`/${renamed}`)), `in the cgroups runc made for the new name: ${cgroups.join(' ')}`);
  t.notOk(existsSync(`/sys/fs/cgroup/pids/${id}`), 'none of the old name made again');
  writeFileSync(join(bundle, 'rootfs/tmp/stop'), '');
  t.equal(await exited, 7, 'runc exits with the restored init\'s exit status');
});

t.test('runc restore --lazy-pages: the container counts on while crr\'s own lazy-pages server brings its memory in', async (t) => {
  const { bundle, id, images } = container(t, 'lazy');
  t.equal(spawnSync(RUNC, ['run', '-d', id], { cwd: bundle, stdio: 'ignore' }).status, 0, 'runc run -d');
  const first = await waitFor('the container counting', () => ((count(bundle) ?? 0) > 5 ? statePid(id) : undefined));
  const checkpoint = runc(['checkpoint', '--image-path', images, id], bundle);
  t.equal(checkpoint.code, 0, `runc checkpoint: ${checkpoint.out}`);
  await waitPidGone(first);
  const reached = await waitFor('the last count', () => count(bundle));
  const restored = runc(['restore', '-d', '--lazy-pages', '--image-path', images, id], bundle);
  t.equal(restored.code, 0, `runc restore -d --lazy-pages: ${restored.out}`);
  const log = readFileSync(join(images, 'restore.log'), 'utf8');
  const server = Number(/lazy pages: served by pid (\d+)/.exec(log)?.[1] ?? 0);
  t.match(log, /lazy pages: served by pid \d+ .*its messages: \S+\/restore\.log\)/, 'the server writes to runc\'s restore.log, not to crr\'s pipes');
  t.teardown(() => {
    try {
      if (server > 0) process.kill(server, 'SIGKILL');
    } catch {
      // done and gone
    }
  });
  t.ok(server > 0, 'crr says which process serves the pages');
  const resumedAt = await waitFor('a count after the restore', () => count(bundle));
  t.ok(resumedAt >= reached, `it counts on from ${reached} (${resumedAt} right after the restore)`);
  await waitFor('counting on', () => ((count(bundle) ?? 0) > resumedAt + 5 ? true : undefined));
  await waitFor('the lazy-pages server to finish', () => (existsSync(`/proc/${server}`) ? undefined : true), 30_000);
  t.ok((count(bundle) ?? resumedAt + 6) > resumedAt + 5, 'the container runs on once every page is in');
});

/** Resolves with the first line of `stream` that matches `pattern`. */
function lineMatching(stream: NodeJS.ReadableStream, pattern: RegExp): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    stream.on('data', (chunk) => {
      text += String(chunk);
      const line = text.split('\n').find((l) => pattern.test(l));
      if (line) resolve(line);
    });
    stream.on('end', () => reject(new Error(`the stream ended without a line matching ${pattern}: ${JSON.stringify(text)}`)));
  });
}

/**
 * `runc ARGS` with its stdout a real pipe (Node's stdio pipes are socketpairs) read by a `cat`
 * whose output is returned; runc's exit status lands in `codeFile`.
 */
function runcIntoPipe(t: Tap.Test, args: string[], cwd: string, codeFile: string): NodeJS.ReadableStream {
  const quoted = [RUNC, ...args].map((a) => `'${a}'`).join(' ');
  const shell = spawn('/bin/sh', ['-c', `{ ${quoted} </dev/null 2>/dev/null; echo $? > '${codeFile}'; } | cat`], { cwd, stdio: ['ignore', 'pipe', 'ignore'] });
  t.teardown(() => shell.stdout!.destroy());
  return shell.stdout!;
}

t.test('a container whose stdout is a pipe writes to the restoring runc\'s pipe', async (t) => {
  const { bundle, id, images } = container(t, 'pipe');
  const codeFile = join(bundle, 'runc-code');
  const firstHello = lineMatching(runcIntoPipe(t, ['run', '-d', id], bundle, codeFile), /^hello \d+$/);
  await waitFor('the container counting', () => ((count(bundle) ?? 0) > 3 ? statePid(id) : undefined));
  writeFileSync(join(bundle, 'rootfs/tmp/hello'), '');
  t.match(await firstHello, /^hello \d+$/, 'it says hello on the pipe it was started with');

  const checkpoint = runc(['checkpoint', '--image-path', images, id], bundle);
  t.equal(checkpoint.code, 0, `runc checkpoint: ${checkpoint.out}`);
  t.match(readFileSync(join(images, 'descriptors.json'), 'utf8'), /"pipe:\[\d+\]"/, 'runc recorded the container\'s stdout as a pipe');

  rmSync(codeFile, { force: true });
  const secondHello = lineMatching(runcIntoPipe(t, ['--criu', crr, 'restore', '-d', '--image-path', images, id], bundle, codeFile), /^hello \d+$/);
  const code = await waitFor('runc restore -d to exit', () => (existsSync(codeFile) && readFileSync(codeFile, 'utf8').trim()) || undefined, 60_000);
  t.equal(code, '0', `runc restore -d${code === '0' ? '' : `: ${['restore.log'].map((n) => join(images, n)).filter(existsSync).map((p) => readFileSync(p, 'utf8')).join('')}`}`);
  writeFileSync(join(bundle, 'rootfs/tmp/hello'), '');
  t.match(await secondHello, /^hello \d+$/, 'the restored container says hello on the new runc\'s pipe');
});

/**
 * runc's console socket: takes the pty master runc sends, appends what the terminal shows to
 * `out`, and types into it what is written to `keys` (the file removed once typed).
 */
const CONSOLE = `
import os, select, socket, sys, time
path, out, keys = sys.argv[1:4]
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind(path)
server.listen(1)
conn, _ = server.accept()
_, fds, _, _ = socket.recv_fds(conn, 1024, 1)
master = fds[0]
while True:
    ready, _, _ = select.select([master], [], [], 0.05)
    if ready:
        try:
            data = os.read(master, 4096)
        except OSError:
            break
        if not data:
            break
        with open(out, 'ab') as f:
            f.write(data)
    if os.path.exists(keys):
        text = open(keys, 'rb').read()
        os.unlink(keys)
        os.write(master, text)
`;

function startConsole(t: Tap.Test, dir: string, name: string): { socket: string; type(text: string): void; shown(): string } {
  const socket = join(dir, `${name}.sock`);
  const out = join(dir, `${name}.out`);
  const keys = join(dir, `${name}.keys`);
  const receiver = spawn('/usr/bin/python3', ['-c', CONSOLE, socket, out, keys], { stdio: 'ignore' });
  const exited = new Promise((resolve) => receiver.on('exit', resolve));
  t.teardown(async () => {
    receiver.kill('SIGKILL');
    await exited;
  });
  return { socket, type: (text) => writeFileSync(keys, text), shown: () => (existsSync(out) ? readFileSync(out, 'latin1') : '') };
}

t.test('a container with a terminal gets a new one, its master sent to the restoring runc\'s console socket', async (t) => {
  const { bundle, id, images } = container(t, 'tty', (config) => {
    config.process.terminal = true;
    config.process.args = ['sh'];
  });
  const first = startConsole(t, bundle, 'console1');
  await waitFor('the console socket', () => (existsSync(first.socket) ? true : undefined));
  const run = spawnSync(RUNC, ['run', '-d', '--console-socket', first.socket, id], { cwd: bundle, stdio: 'ignore' });
  t.equal(run.status, 0, 'runc run -d with a terminal');
  first.type('X=before-$((6*7)); echo ready-$X\n');
  await waitFor('the shell on the first terminal', () => (first.shown().includes('ready-before-42') ? true : undefined));

  const checkpoint = runc(['checkpoint', '--image-path', images, id], bundle);
  t.equal(checkpoint.code, 0, `runc checkpoint of a container with a terminal: ${checkpoint.out}`);

  const second = startConsole(t, bundle, 'console2');
  await waitFor('the second console socket', () => (existsSync(second.socket) ? true : undefined));
  const restored = runc(['restore', '-d', '--console-socket', second.socket, '--image-path', images, id], bundle);
  t.equal(restored.code, 0, `runc restore -d --console-socket: ${restored.out}`);
  const pid = statePid(id)!;
  t.match(readlinkSync(`/proc/${pid}/fd/0`), /^\/dev\/pts\/\d+$/, 'its stdin is a terminal again');
  second.type('echo after-$X\n');
  await waitFor('the restored shell on the new terminal', () => (second.shown().includes('after-before-42') ? true : undefined));
  t.pass('the restored shell kept its variable and answers on the terminal runc passed on');
});

t.test('a container that joined a network namespace of its runtime\'s (CNI\'s way) is restored into it', async (t) => {
  const netns = `crr-test-${process.pid}`;
  t.equal(spawnSync('ip', ['netns', 'add', netns]).status, 0, 'ip netns add');
  t.teardown(() => void spawnSync('ip', ['netns', 'del', netns]));
  const { bundle, id, images } = container(t, 'net', (config) => {
    for (const ns of config.linux.namespaces) if (ns.type === 'network') ns.path = `/run/netns/${netns}`;
  });
  t.equal(spawnSync(RUNC, ['run', '-d', id], { cwd: bundle, stdio: 'ignore' }).status, 0, 'runc run -d');
  await waitFor('the container counting', () => ((count(bundle) ?? 0) > 3 ? true : undefined));
  const checkpoint = runc(['checkpoint', '--image-path', images, id], bundle);
  t.equal(checkpoint.code, 0, `runc checkpoint (the namespace left out as external extRootNetNS): ${checkpoint.out}`);
  const restored = runc(['restore', '-d', '--image-path', images, id], bundle);
  t.equal(restored.code, 0, `runc restore -d (the namespace given back by inherit_fd): ${restored.out}`);
  const pid = statePid(id)!;
  t.equal(readlinkSync(`/proc/${pid}/ns/net`), `net:[${statSync(`/run/netns/${netns}`).ino}]`, 'the restored init is in the runtime\'s network namespace');
});

t.test('a paused container (its freezer cgroup frozen) is checkpointed, stays paused with --leave-running, and comes back running', async (t) => {
  const { bundle, id, images } = container(t, 'paused');
  t.equal(spawnSync(RUNC, ['run', '-d', id], { cwd: bundle, stdio: 'ignore' }).status, 0, 'runc run -d');
  await waitFor('the container counting', () => ((count(bundle) ?? 0) > 3 ? true : undefined));
  t.equal(spawnSync(RUNC, ['pause', id]).status, 0, 'runc pause');
  const paused = count(bundle);
  const running = runc(['checkpoint', '--leave-running', '--image-path', join(bundle, 'running'), id], bundle);
  t.equal(running.code, 0, `runc checkpoint --leave-running of a paused container (a frozen task stops for no PTRACE_INTERRUPT until thawed): ${running.out}`);
  t.equal(JSON.parse(spawnSync(RUNC, ['state', id], { encoding: 'utf8' }).stdout).status, 'paused', 'still paused');
  await new Promise((resolve) => setTimeout(resolve, 300));
  t.equal(count(bundle), paused, 'and not counting');
  const checkpoint = runc(['checkpoint', '--image-path', images, id], bundle);
  t.equal(checkpoint.code, 0, `runc checkpoint of the paused container: ${checkpoint.out}`);
  const restored = runc(['restore', '-d', '--image-path', images, id], bundle);
  t.equal(restored.code, 0, `runc restore -d: ${restored.out}`);
  await waitFor('counting again', () => ((count(bundle) ?? 0) > (paused ?? 0) + 3 ? true : undefined));
  t.pass('the restored container runs');
});
