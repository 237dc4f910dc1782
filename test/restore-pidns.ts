// A tree in a PID namespace of its own, from the namespace's init down (`unshare --pid --fork
// --mount-proc setsid counter`): the dump numbers every task as that namespace does (the root is
// pid 1 in pstree.img and its image names), and the restore makes the root the fresh
// namespace's init again; the counter carries on and passes its own check. Also as a container:
// in user, mount, IPC, UTS and cgroup namespaces of its own too, and with the network namespace
// either its own (made again) or its runtime's (left out of the dump, joined at restore).
import t from 'tap';
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, readlinkSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { dump } from '../src/dump/index.js';
import { openCheckpoint } from '../src/images/index.js';
import { restore } from '../src/restore/index.js';
import { makeNetns } from './lib/netns.js';
import { buildPrograms, killTree, programPath, requestCheck, waitPidGone } from './lib/programs.js';

/**
 * Starts `argv` as the init of a new PID namespace (unshare --fork --mount-proc, then setsid;
 * `more` unshare options; `via` a command that execs unshare, such as nsenter); its host PID
 * once `resultFile` says READY.
 */
async function startInPidNamespace(t: { teardown(fn: () => unknown): void }, argv: string[], resultFile: string, more: string[] = [], via: string[] = []): Promise<number> {
  buildPrograms();
  const [command, ...args] = [...via, 'unshare', '--pid', '--fork', '--mount-proc', ...more, 'setsid', ...argv] as [string, ...string[]];
  const unshare = spawn(command, args, { stdio: 'ignore', detached: true });
  unshare.unref();
  const tree = (): number[] => {
    try {
      const pids = readFileSync(`/proc/${unshare.pid}/task/${unshare.pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
      return pids.flatMap((p) => [p, ...readFileSync(`/proc/${p}/task/${p}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number)]);
    } catch {
      return [];
    }
  };
  const seen = new Set<number>();
  t.teardown(() => killTree([...seen, ...tree(), unshare.pid!]));
  for (let i = 0; i < 500 && !(existsSync(resultFile) && readFileSync(resultFile, 'utf8').startsWith('READY')); i++) await sleep(10);
  for (const pid of tree()) seen.add(pid);
  return tree()[0]!;
}

t.test("a PID namespace's tree is dumped with the namespace's PIDs and comes back with its root as pid 1", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'crr-pidns-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const resultFile = join(dir, 'result');
  const root = await startInPidNamespace(t, [programPath('counter'), resultFile], resultFile);
  t.match(readFileSync(`/proc/${root}/status`, 'utf8'), /^NSpid:\s+\d+\s+1$/m, 'the counter is pid 1 of its namespace');

  const imagesDir = join(dir, 'images');
  await dump({ pid: root, imagesDir });
  await waitPidGone(root);
  const checkpoint = openCheckpoint(imagesDir);
  t.same(checkpoint.tasks.map((task) => [task.pid, task.ppid, task.sid]), [[1, 0, 1]], 'pstree: pid 1, its own session');
  t.ok(checkpoint.has('core-1.img') && checkpoint.has('mm-1.img'), 'images named by the namespace PID');

  const result = await restore({ imagesDir, pidNamespace: true });
  t.teardown(() => result.kill());
  t.match(readFileSync(`/proc/${result.rootHostPid}/status`, 'utf8'), /^NSpid:\s+\d+\s+1$/m, 'restored as pid 1 of a fresh namespace');
  t.same(await requestCheck(result.rootHostPid, resultFile), { pass: true, text: 'PASS' }, 'the counter carries on from where it was');
});

t.test('a shell as the namespace init with the counter as its child', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'crr-pidns-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const resultFile = join(dir, 'result');
  const root = await startInPidNamespace(t, ['/bin/sh', '-c', `${programPath('counter')} ${resultFile} & wait`], resultFile);
  const imagesDir = join(dir, 'images');
  await dump({ pid: root, imagesDir });
  await waitPidGone(root);
  const tasks = openCheckpoint(imagesDir).tasks.map((task) => [task.pid, task.ppid, task.pgid, task.sid]);
  t.same(tasks, [[1, 0, 1, 1], [2, 1, 1, 1]], 'pstree: the shell 1 and the counter 2, one session and group');
  const result = await restore({ imagesDir, pidNamespace: true });
  t.teardown(() => result.kill());
  const counter = result.hostPids.get(2)!;
  t.match(readFileSync(`/proc/${counter}/status`, 'utf8'), /^NSpid:\s+\d+\s+2$/m, 'the counter is pid 2 again');
  t.same(await requestCheck(counter, resultFile), { pass: true, text: 'PASS' }, 'and carries on');
});

t.test("a namespace init still in a session from outside the namespace is refused, naming the PID", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'crr-pidns-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const resultFile = join(dir, 'result');
  buildPrograms();
  const unshare = spawn('unshare', ['--pid', '--fork', '--mount-proc', programPath('counter'), resultFile], { stdio: 'ignore', detached: true });
  unshare.unref();
  for (let i = 0; i < 500 && !(existsSync(resultFile) && readFileSync(resultFile, 'utf8').startsWith('READY')); i++) await sleep(10);
  const root = Number(readFileSync(`/proc/${unshare.pid}/task/${unshare.pid}/children`, 'utf8').trim());
  t.teardown(() => killTree([root, unshare.pid!]));
  await t.rejects(dump({ pid: root, imagesDir: join(dir, 'images') }), { message: /has no number in the tree's PID namespace/ });
  t.ok((await requestCheck(root, resultFile)).pass, 'the tree runs on');
});

t.test('a tree in all the namespaces a container has (user, PID, mount, network, IPC, UTS, cgroup) comes back in new ones', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'crr-pidns-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  chmodSync(dir, 0o777);
  const resultFile = join(dir, 'result');
  const root = await startInPidNamespace(t, [programPath('counter'), resultFile], resultFile, ['--user', '--map-root-user', '--net', '--ipc', '--uts', '--cgroup']);
  const own = (host: number, kind: string) => readlinkSync(`/proc/${host}/ns/${kind}`);
  const kinds = ['user', 'pid', 'mnt', 'net', 'ipc', 'uts', 'cgroup'];
  t.ok(kinds.every((kind) => own(root, kind) !== own(process.pid, kind)), 'the counter has a namespace of every kind of its own');
  const imagesDir = join(dir, 'images');
  await dump({ pid: root, imagesDir });
  await waitPidGone(root);
  const result = await restore({ imagesDir, pidNamespace: true });
  t.teardown(() => result.kill());
  t.same(kinds.filter((kind) => own(result.rootHostPid, kind) === own(process.pid, kind)), [], "none of the restored root's namespaces is crr's");
  t.match(readFileSync(`/proc/${result.rootHostPid}/status`, 'utf8'), /^NSpid:\s+\d+\s+1$/m, 'pid 1 of its namespace');
  t.same(await requestCheck(result.rootHostPid, resultFile), { pass: true, text: 'PASS' }, 'the counter carries on');
});

t.test("a container whose network namespace its runtime made (a veth's) comes back into it: user, PID, mount, IPC, UTS, cgroup made, network given", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'crr-pidns-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  chmodSync(dir, 0o777);
  const netns = makeNetns(t, '10.233.0.1');
  const resultFile = join(dir, 'result');
  // nsenter execs unshare: the namespace is the container's from its first instruction on.
  const root = await startInPidNamespace(t, [programPath('counter'), resultFile], resultFile, ['--user', '--map-root-user', '--ipc', '--uts', '--cgroup'], ['nsenter', `--net=${netns.path}`]);
  t.equal(statSync(`/proc/${root}/ns/net`).ino, netns.inode, "the counter runs in the runtime's network namespace");
  const imagesDir = join(dir, 'images');
  await dump({ pid: root, imagesDir, external: [`net[${netns.inode}]:container-net`] });
  await waitPidGone(root);
  const result = await restore({ imagesDir, pidNamespace: true, externalNamespaces: { 'container-net': netns.path } });
  t.teardown(() => result.kill());
  t.equal(statSync(`/proc/${result.rootHostPid}/ns/net`).ino, netns.inode, 'restored into it (joined before the new user namespace was made)');
  t.not(readlinkSync(`/proc/${result.rootHostPid}/ns/user`), readlinkSync(`/proc/${process.pid}/ns/user`), 'in a user namespace of its own');
  t.same(await requestCheck(result.rootHostPid, resultFile), { pass: true, text: 'PASS' }, 'the counter carries on');
});

t.test("a daemon's double fork: its session's leader gone, it is reparented to the namespace's init; made again so", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'crr-pidns-daemon-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const resultFile = join(dir, 'result');
  // pid 1 forks a child that calls setsid and forks the daemon, then exits: the daemon's
  // session and group are the exited child's, its parent pid 1. pid 1 reaps and sleeps.
  const script = [
    'import os, sys, time',
    'if os.fork() == 0:',
    '    os.setsid()',
    '    if os.fork() == 0:',
    '        time.sleep(1000)',
    '    os._exit(0)',
    'os.wait()',
    'time.sleep(0.2)',
    'open(sys.argv[1], "w").write("READY")',
    'time.sleep(1000)',
  ].join('\n');
  const root = await startInPidNamespace(t, ['/usr/bin/python3', '-c', script, resultFile], resultFile);
  const ids = (host: number) => {
    const status = readFileSync(`/proc/${host}/status`, 'utf8');
    const last = (field: string) => Number(new RegExp(`^${field}:.*\\s(\\d+)$`, 'm').exec(status)![1]);
    return { pid: last('NSpid'), pgid: last('NSpgid'), sid: last('NSsid'), ppid: Number(/^PPid:\s+(\d+)$/m.exec(status)![1]) };
  };
  const daemonHost = Number(readFileSync(`/proc/${root}/task/${root}/children`, 'utf8').trim());
  const before = ids(daemonHost);
  t.ok(before.sid !== before.pid && before.sid !== 1 && before.pgid === before.sid, `the daemon (pid ${before.pid}) is in the session of its exited parent (${before.sid})`);
  t.equal(before.ppid, root, 'its parent is the namespace init');

  const imagesDir = join(dir, 'images');
  await dump({ pid: root, imagesDir });
  await waitPidGone(root);
  const result = await restore({ imagesDir, pidNamespace: true });
  t.teardown(() => result.kill());
  const daemon = result.hostPids.get(before.pid)!;
  t.same({ ...ids(daemon), ppid: undefined }, { ...before, ppid: undefined }, 'the same pid, group and session');
  t.equal(ids(daemon).ppid, result.rootHostPid, 'its parent is the namespace init again');
  t.equal(existsSync(`/proc/${result.rootHostPid}/task/${result.rootHostPid}/children`) && readFileSync(`/proc/${result.rootHostPid}/task/${result.rootHostPid}/children`, 'utf8').trim(), String(daemon), 'the session leader made for it is gone');
  await t.rejects(restore({ imagesDir, dryRun: true }), { stage: 'plan', message: /a session whose leader has exited: crr makes it again for one task, a child of the PID namespace init/ }, 'without a PID namespace: refused at plan time');
});
