// `crr restore` and `crr plan` through the CLI dispatcher, in-process: criu's option names,
// unsupported options refused by name, --dry-run prints a readable plan and touches nothing,
// -o and --pidfile land in the images dir like criu's, exit status of the root without -d,
// -d leaves the tree running. Every restored process is killed and reaped by PID.
import t from 'tap';
import { existsSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { main } from '../src/cli/main.js';
import { parseRestoreArgs } from '../src/cli/commands/restore.js';
import { alive, copyFixture, procIds } from './lib/restore-images.js';
import { dumpProgram } from './lib/program-roundtrip.js';
import { requestCheck, startProgram, waitFor, waitPidGone } from './lib/programs.js';

const bin = fileURLToPath(new URL('../bin/crr.js', import.meta.url));

/** Runs `crr ARGS` in this process; returns its exit code and what it wrote. */
async function crr(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const out = process.stdout.write.bind(process.stdout);
  const err = process.stderr.write.bind(process.stderr);
  process.stdout.write = ((chunk: string | Uint8Array) => ((stdout += String(chunk)), true)) as typeof process.stdout.write;
  process.stderr.write = ((chunk: string | Uint8Array) => ((stderr += String(chunk)), true)) as typeof process.stderr.write;
  try {
    const code = await main(args);
    return { code, stdout, stderr };
  } finally {
    process.stdout.write = out;
    process.stderr.write = err;
  }
}

t.test('criu option names parse', async (t) => {
  const args = parseRestoreArgs(['-D', '/x', '-d', '--pidfile', 'p', '-o', 'log', '-vvv', '--shell-job', '--no-default-config', '-W', '/w']);
  t.match(args, { imagesDir: '/x', detached: true, pidfile: 'p', logFile: 'log', verbosity: 5, shellJob: true, workDir: '/w' });
  t.match(parseRestoreArgs(['--images-dir=/y', '--restore-detached', '--verbosity=4']), { imagesDir: '/y', detached: true, verbosity: 4 });
  t.match(parseRestoreArgs(['-D', '/y', '--tcp-close']), { tcpClose: true }, '--tcp-close');
  t.match(parseRestoreArgs(['-D', '/y']), { tcpClose: false });
  t.match(parseRestoreArgs(['-D', '/y', '--lazy-pages']), { lazyPages: true }, '--lazy-pages');
  t.equal(parseRestoreArgs(['-D', '/z', '-v1']).verbosity, 1);
  t.equal(parseRestoreArgs(['-D', '/z', '--root', '/ctr']).rootDir, '/ctr', "--root: criu's option for a container's rootfs");
  t.equal(parseRestoreArgs(['-D', '/z', '-r', '/ctr']).rootDir, '/ctr', '-r, its short form');
  t.same(parseRestoreArgs(['-D', '/z', '--external', 'mnt[data]:/v1', '--ext-mount-map', 'logs:/v2']).externalMounts, { data: '/v1', logs: '/v2' }, "external mounts: criu's two spellings");
  t.throws(() => parseRestoreArgs(['-D', '/z', '--external', 'net[1]:k']), /expected mnt\[KEY\]:PATH/);
  t.same(parseRestoreArgs(['-D', '/z', '--inherit-fd', 'fd[3]:extnet']).externalNamespaces, { extnet: `/proc/${process.pid}/fd/3` }, "--inherit-fd: crr's fd, which the joining helper opens through /proc");
  t.same(parseRestoreArgs(['-D', '/z', '--cgroup-root', '/ctr', '--cgroup-root', 'name=systemd:/s', '--cgroup-root', ':/v2']).cgroupRoots, [{ path: '/ctr' }, { controller: 'name=systemd', path: '/s' }, { controller: '', path: '/v2' }], '--cgroup-root [CONTROLLER:]PATH');
  t.throws(() => parseRestoreArgs(['-D', '/z', '--cgroup-root', 'memory:rel']), /expected \[CONTROLLER:\]\/PATH/);
  t.same(parseRestoreArgs(['-D', '/z', '--inherit-fd', 'fd[1]:pipe:[4242]']).inheritedFds, { 'pipe:[4242]': 1 }, '--inherit-fd of a pipe: crr\'s fd stands for it');
});

t.test('unsupported and missing options are usage errors naming them', async (t) => {
  let r = await crr(['restore', '-D', '/tmp', '--auto-dedup']);
  t.equal(r.code, 2);
  t.match(r.stderr, /unsupported option '--auto-dedup'/);
  r = await crr(['restore', '-D', '/tmp', '--inherit-fd', 'fd3:pipe']);
  t.equal(r.code, 2);
  t.match(r.stderr, /--inherit-fd 'fd3:pipe': expected fd\[N\]:KEY/);
  r = await crr(['restore']);
  t.equal(r.code, 2);
  t.equal(r.stderr.trim(), 'crr restore: -D/--images-dir DIR is required', 'the command is named once');
  r = await crr(['plan', '-D', '/tmp', '--format', 'svg']);
  t.equal(r.code, 2);
  t.match(r.stderr, /--format must be one of/);
});

t.test('-d with --pid-namespace is refused at plan time for a root that was not its namespace\'s pid 1', async (t) => {
  const dir = copyFixture(t, 'sh-loop');
  const r = await crr(['restore', '-D', dir, '--dry-run', '-d', '--pid-namespace']);
  t.equal(r.code, 1);
  t.match(r.stderr, /stage plan, task \d+, resource task-tree: a detached restore into a fresh PID namespace needs a root that was its namespace's pid 1/);
});

t.test('--inherit-fd for anything but a network namespace the dump left out is refused, naming the key', async (t) => {
  const dir = copyFixture(t, 'sh-loop');
  const r = await crr(['restore', '-D', dir, '--dry-run', '--pid-namespace', '--inherit-fd', 'fd[0]:tty:[123]']);
  t.not(r.code, 0);
  t.match(r.stderr, /'tty:\[123\]' names no namespace the dump left out \(crr takes external network namespaces and pipes, pipe:\[ID\], only\)/);
});

t.test('--dry-run prints a readable plan and touches nothing', async (t) => {
  const dir = copyFixture(t, 'sh-loop');
  const before = readdirSync(dir).map((f) => `${f}:${statSync(join(dir, f)).mtimeMs}`).sort();
  const r = await crr(['restore', '-D', dir, '--dry-run', '--pid-namespace', '--pidfile', 'pid', '-o', 'restore.log']);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /fork/);
  t.match(r.stdout, /task-tree/);
  t.match(r.stdout, /17319 \(parent crr, session 17319, group 17319\)/);
  t.match(r.stdout, /17393 \(parent 17319/);
  t.match(r.stdout, /cwd \/tmp\/crr-fixture/);
  t.match(r.stdout, /fd 251: PIPE/);
  t.match(r.stdout, /nothing was touched/);
  const after = readdirSync(dir).filter((f) => f !== 'restore.log');
  t.same(after.map((f) => `${f}:${statSync(join(dir, f)).mtimeMs}`).sort(), before, 'the images dir is unchanged but for the log');
  t.notOk(existsSync(join(dir, 'pid')), 'no pidfile');
});

t.test('crr plan prints text and json', async (t) => {
  const dir = copyFixture(t, 'pipe');
  const text = await crr(['plan', '-D', dir]);
  t.equal(text.code, 0, text.stderr);
  t.match(text.stdout, /barrier/);
  const json = await crr(['plan', '-D', dir, '--format', 'json']);
  t.equal(json.code, 0);
  const plan = JSON.parse(json.stdout) as { tasks: unknown[] };
  t.equal(plan.tasks.length, 3);
});

t.test('without -d crr waits for the root and exits with its status; -o and --pidfile go into the images dir', async (t) => {
  const dir = copyFixture(t, 'sleep');
  // Not through crr(): capturing stdout for that long would swallow tap's own output. -o sends the log to a file.
  const running = main(['restore', '-D', dir, '--pid-namespace', '--pidfile', 'restore.pid', '-o', 'restore.log', '-v4']);
  const pidfile = join(dir, 'restore.pid');
  const host = await waitFor('the pidfile', () => (existsSync(pidfile) ? Number(readFileSync(pidfile, 'utf8')) || undefined : undefined));
  t.ok(host > 1, `pidfile holds a pid (${host})`);
  t.teardown(() => {
    try {
      process.kill(host, 'SIGKILL');
    } catch {
      // already gone
    }
  });
  t.equal(procIds(host).pid, 17288, 'the pidfile names the root');
  process.kill(host, 'SIGTERM');
  t.equal(await running, 128 + 15, 'exit status 128+SIGTERM');
  t.match(readFileSync(join(dir, 'restore.log'), 'utf8'), /restored 1 task\(s\), root pid/);
  await waitFor('the root to be reaped', () => (alive(host) ? undefined : true));
});

/**
 * At the test's end: SIGKILL a detached tree's root and `more` (PIDs above 0 only: kill(-1) would
 * be everything), then wait, bounded, until the root is reaped by this VM's init, which reaps
 * slowly (KERNEL-NOTES 11).
 */
function killDetachedAtEnd(t: Tap.Test, root: number, ...more: number[]): void {
  t.teardown(async () => {
    for (const pid of [root, ...more].filter((p) => Number.isInteger(p) && p > 0)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    if (root > 0) await waitFor('the detached root to be reaped', () => (alive(root) ? undefined : true), 90_000);
  });
}

t.test('-d leaves the tree running and exits 0', async (t) => {
  // A process of this test's own, dumped by crr: its PID was free a moment ago. (A fixture's
  // PID, restored in the caller's namespace, may belong to any long-lived process here: on a
  // machine that has forked past it, a test runner held 17288 for minutes.)
  const prog = await startProgram(t, 'syscall-wait', ['nanosleep']);
  const dir = await dumpProgram(t, prog);
  const r = await crr(['restore', '-D', dir, '-d', '--pidfile', '/tmp/crr-restore-cli-detached.pid']);
  const host = Number(readFileSync('/tmp/crr-restore-cli-detached.pid', 'utf8'));
  killDetachedAtEnd(t, host);
  t.equal(r.code, 0, r.stderr);
  t.equal(host, prog.pid, 'back at its PID');
  await sleep(300);
  t.ok(alive(host), 'still running after crr returned');
  t.match(readFileSync(`/proc/${host}/stat`, 'utf8'), /\) S /, 'sleeping');
  t.not(procIds(host).ppidHost, process.pid, 'not our child');
});

t.test('--lazy-pages -d: the tree runs, --json names the lazy-pages server, which exits once every page is in', async (t) => {
  const prog = await startProgram(t, 'mem-pattern');
  const dir = await dumpProgram(t, prog);
  const r = await crr(['restore', '-D', dir, '-d', '--lazy-pages', '--json']);
  const out = JSON.parse(r.stdout || '{}') as { rootHostPid?: number; lazyPagesPid?: number };
  const host = out.rootHostPid ?? 0;
  killDetachedAtEnd(t, host, out.lazyPagesPid ?? 0);
  t.equal(r.code, 0, r.stderr);
  t.equal(host, prog.pid, 'back at its PID');
  t.ok(out.lazyPagesPid, `--json names the server (${out.lazyPagesPid})`);
  t.equal((await requestCheck(host, prog.resultFile)).text, 'PASS', 'mem-pattern checks every byte and protection');
  await waitFor('the lazy-pages server to exit', () => (alive(out.lazyPagesPid!) ? undefined : true), 30_000);
  t.notOk(alive(out.lazyPagesPid!), 'the server is gone');
});

t.test('--lazy-pages -d: crr\'s stdout and stderr close when it exits, the server writing to lazy-pages.log in the work dir', async (t) => {
  const prog = await startProgram(t, 'mem-pattern');
  const dir = await dumpProgram(t, prog);
  // The server's background copy waits, so it is still running when crr has exited.
  const child = spawn(process.execPath, [bin, 'restore', '-D', dir, '-d', '--lazy-pages', '--json'], {
    env: { ...process.env, CRR_LAZY_BACKGROUND_DELAY_MS: '600000' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (b: Buffer) => (stdout += b));
  child.stderr.on('data', (b: Buffer) => (stderr += b));
  // 'close': the process exited and both pipes reached their end (nobody else holds them).
  const timeout = new AbortController();
  const closed = await Promise.race([
    once(child, 'close').then(([code]) => code as number),
    sleep(60_000, 'timeout' as const, { signal: timeout.signal }).catch(() => 'aborted' as const),
  ]).finally(() => timeout.abort());
  if (closed === 'timeout') child.kill('SIGKILL');
  const out = JSON.parse(stdout || '{}') as { rootHostPid?: number; lazyPagesPid?: number };
  killDetachedAtEnd(t, out.rootHostPid ?? 0, out.lazyPagesPid ?? 0);
  t.equal(closed, 0, `crr exited 0 and its pipes closed: ${stderr}`);
  t.ok(out.lazyPagesPid && alive(out.lazyPagesPid), 'the lazy-pages server still runs');
  t.ok(existsSync(join(dir, 'lazy-pages.log')), 'its log is lazy-pages.log in the work dir (the images dir)');
  t.equal((await requestCheck(out.rootHostPid ?? 0, prog.resultFile)).text, 'PASS', 'the tree runs, its pages served at first touch');
});

t.test('--action-script runs at every action with criu\'s environment; a script that fails fails the dump', async (t) => {
  const prog = await startProgram(t, 'counter');
  const log = join(prog.dir, 'actions.log');
  const script = join(prog.dir, 'action.sh');
  writeFileSync(script, `#!/bin/sh\necho "$CRTOOLS_SCRIPT_ACTION \${CRTOOLS_INIT_PID:-none} $CRTOOLS_IMAGE_DIR" >> ${log}\n[ "$CRTOOLS_SCRIPT_ACTION" = "\${CRR_TEST_FAIL_AT:-}" ] && exit 3\n[ "$CRTOOLS_SCRIPT_ACTION" = post-resume ] && kill -9 "$CRTOOLS_INIT_PID"\nexit 0\n`, { mode: 0o755 });
  const dir = join(prog.dir, 'ck');
  process.env['CRR_TEST_FAIL_AT'] = 'post-dump';
  let r = await crr(['dump', '-t', String(prog.pid), '-D', dir, '--action-script', script]).finally(() => delete process.env['CRR_TEST_FAIL_AT']);
  t.equal(r.code, 1);
  t.match(r.stderr, new RegExp(`action script ${script} \\(post-dump\\) exited 3`));
  t.ok(alive(prog.pid) && !existsSync(join(dir, 'inventory.img')), 'the tree runs on and no checkpoint is left');
  t.equal(readFileSync(log, 'utf8'), `pre-dump none ${dir}\nnetwork-lock none ${dir}\npost-dump none ${dir}\n`);

  writeFileSync(log, '');
  r = await crr(['dump', '-t', String(prog.pid), '-D', dir, '--action-script', script]);
  t.equal(r.code, 0, r.stderr);
  t.equal(readFileSync(log, 'utf8'), `pre-dump none ${dir}\nnetwork-lock none ${dir}\npost-dump none ${dir}\n`, 'the dump\'s actions in criu\'s order');
  await waitPidGone(prog.pid);

  writeFileSync(log, '');
  r = await crr(['restore', '-D', dir, '--pid-namespace', '--action-script', script]);
  t.equal(r.code, 128 + 9, 'the script killed the root at post-resume, and crr exits with its status');
  const lines = readFileSync(log, 'utf8').trim().split('\n').map((line) => line.split(' '));
  t.same(lines.map(([action]) => action), ['pre-restore', 'setup-namespaces', 'post-setup-namespaces', 'post-restore', 'network-unlock', 'pre-resume', 'post-resume'], 'the restore\'s actions in criu\'s order');
  const rootPid = lines[1]![1];
  t.match(rootPid, /^\d+$/, 'setup-namespaces names the root');
  t.same(lines.map(([, pid]) => pid), ['none', ...Array(6).fill(rootPid)], 'CRTOOLS_INIT_PID from setup-namespaces on');
  t.ok(lines.every(([, , images]) => images === dir), 'CRTOOLS_IMAGE_DIR');
});
