// runc (Debian's 1.1.5) checkpoints and restores a container with crr as its criu (`runc --criu
// bin/crr.js`, which runs `crr swrk 3`: src/service/swrk.ts). The container is a busybox shell
// counting into a file of its rootfs, in runc's namespaces (PID, mount with its masked paths and
// cgroup binds, network with lo, IPC, UTS) and cgroups. A checkpoint leaves runc's container
// gone; `runc restore -d` brings it back running, counting on from where it was; checkpointed
// again, a foreground `runc restore` has the restored init as its child and exits with its
// exit status when the container ends.
import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { killTree, processTree, waitFor, waitPidGone } from './lib/programs.js';

const crr = fileURLToPath(new URL('../bin/crr.js', import.meta.url));
const RUNC = '/usr/sbin/runc';
const BUSYBOX = '/bin/busybox';

function runc(args: string[], cwd: string): { code: number | null; out: string } {
  const r = spawnSync(RUNC, ['--criu', crr, ...args], { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 120_000 });
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

function statePid(id: string, cwd: string): number | undefined {
  const r = spawnSync(RUNC, ['state', id], { cwd, encoding: 'utf8' });
  if (r.status !== 0) return undefined;
  const state = JSON.parse(r.stdout) as { pid: number; status: string };
  return state.status === 'running' ? state.pid : undefined;
}

/** The counter the container writes, or undefined between its writes. */
function count(bundle: string): number | undefined {
  const text = existsSync(join(bundle, 'rootfs/tmp/count')) ? readFileSync(join(bundle, 'rootfs/tmp/count'), 'utf8').trim() : '';
  return /^\d+$/.test(text) ? Number(text) : undefined;
}

/** A bundle whose container counts into /tmp/count until /tmp/stop exists, then exits 7. */
function makeBundle(t: Tap.Test): string {
  const bundle = mkdtempSync(join(tmpdir(), 'crr-runc-'));
  t.teardown(() => rmSync(bundle, { recursive: true, force: true }));
  for (const dir of ['bin', 'proc', 'sys', 'dev', 'tmp']) mkdirSync(join(bundle, 'rootfs', dir), { recursive: true });
  copyFileSync(BUSYBOX, join(bundle, 'rootfs/bin/busybox'));
  for (const applet of ['sh', 'sleep', 'cat']) symlinkSync('busybox', join(bundle, 'rootfs/bin', applet));
  const spec = spawnSync(RUNC, ['spec'], { cwd: bundle, encoding: 'utf8' });
  if (spec.status !== 0) throw new Error(`runc spec: ${spec.stderr}`);
  const config = JSON.parse(readFileSync(join(bundle, 'config.json'), 'utf8'));
  config.process.terminal = false;
  config.process.args = ['sh', '-c', 'i=0; while [ ! -f /tmp/stop ]; do i=$((i+1)); echo $i > /tmp/count; sleep 0.05; done; exit 7'];
  config.root.readonly = false;
  writeFileSync(join(bundle, 'config.json'), JSON.stringify(config));
  return bundle;
}

t.test('runc checkpoint and restore with crr as its criu', async (t) => {
  t.ok(existsSync(RUNC) && existsSync(BUSYBOX), 'runc and busybox-static are installed (scripts/setup.sh)');
  const bundle = makeBundle(t);
  const id = `crr-test-${process.pid}`;
  const images = join(bundle, 'checkpoint');
  t.teardown(async () => {
    // Whatever runc still knows of, then anything left of the container's tree, by PID.
    const pid = statePid(id, bundle);
    const left = pid ? processTree(pid) : [];
    spawnSync(RUNC, ['delete', '-f', id], { cwd: bundle, stdio: 'ignore' });
    await killTree(left);
  });

  const run = spawnSync(RUNC, ['run', '-d', id], { cwd: bundle, stdio: 'ignore' });
  t.equal(run.status, 0, 'runc run -d');
  const first = await waitFor('the container counting', () => ((count(bundle) ?? 0) > 5 ? statePid(id, bundle) : undefined));

  const checkpoint = runc(['checkpoint', '--image-path', images, id], bundle);
  t.equal(checkpoint.code, 0, `runc checkpoint: ${checkpoint.out}`);
  t.equal(statePid(id, bundle), undefined, 'runc destroyed the container after the checkpoint');
  await waitPidGone(first);
  const reached = await waitFor('the last count', () => count(bundle));
  t.ok(existsSync(join(images, 'inventory.img')) && existsSync(join(images, 'descriptors.json')), 'crr\'s images beside runc\'s descriptors.json');
  t.match(readFileSync(join(images, 'dump.log'), 'utf8'), /notify post-dump/, 'runc got its post-dump notification');

  const restored = runc(['restore', '-d', '--image-path', images, id], bundle);
  t.equal(restored.code, 0, `runc restore -d: ${restored.out}`);
  const pid = statePid(id, bundle);
  t.ok(pid, 'runc knows the restored container as running');
  t.match(readFileSync(`/proc/${pid}/status`, 'utf8'), /NSpid:\s+\d+\s+1\n/, 'its init is pid 1 of its PID namespace');
  for (const ns of ['net', 'uts', 'ipc', 'mnt']) t.not(readlinkSync(`/proc/${pid}/ns/${ns}`), readlinkSync(`/proc/self/ns/${ns}`), `in a ${ns} namespace of its own`);
  // Read at once: a counter that started again from 1 would show a number below the last one.
  const resumedAt = await waitFor('a count after the restore', () => count(bundle));
  t.ok(resumedAt >= reached, `it counts on from ${reached} (${resumedAt} right after the restore), not from 1`);
  await waitFor('counting on', () => ((count(bundle) ?? 0) > resumedAt + 5 ? true : undefined));

  // Again, from the restored container, and back in the foreground: runc waits for its init.
  rmSync(images, { recursive: true, force: true });
  const again = runc(['checkpoint', '--image-path', images, id], bundle);
  t.equal(again.code, 0, `runc checkpoint of the restored container: ${again.out}`);
  await waitPidGone(pid!);
  const foreground = spawn(RUNC, ['--criu', crr, 'restore', '--image-path', images, id], { cwd: bundle, stdio: 'ignore' });
  const exited = new Promise<number | null>((resolve) => foreground.on('exit', (code) => resolve(code)));
  t.teardown(async () => {
    if (foreground.exitCode === null) foreground.kill('SIGKILL');
    await exited;
  });
  const init = await waitFor('the foreground restore', () => statePid(id, bundle));
  t.match(readFileSync(`/proc/${init}/status`, 'utf8'), new RegExp(`PPid:\\s+${foreground.pid}\\n`), 'the restored init is runc\'s child');
  writeFileSync(join(bundle, 'rootfs/tmp/stop'), '');
  t.equal(await exited, 7, 'runc exits with the restored init\'s exit status');
});
