// Upstream CRIU fixtures restored by restore() inside a fresh PID namespace (their PIDs may be
// busy here): every task with its PID, parent, session and group, its fds, cwd and pipe; then
// killed and reaped by PID. Until the address-space kinds are registered the restore ends at
// the barrier (tasks parked and seized); with them, each fixture must run on as the README says.
import t from 'tap';
import { mkdirSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { restore, type RestoreResult } from '../src/restore/index.js';
import { registry } from '../src/resources/registry.js';
import { alive, copyFixture, procIds } from './lib/restore-images.js';
import { pyCounts } from './lib/restore-images.js';

const full = registry.some((kind) => kind.stage === 'resume');

async function restoreFixture(t: Tap.Test, name: string): Promise<RestoreResult> {
  const dir = copyFixture(t, name);
  const result = await restore({ imagesDir: dir, pidNamespace: true });
  t.teardown(() => result.kill()); // safety net when an assertion throws first
  return result;
}

/** Kills the restored tree and checks that nothing of it is left. */
async function finish(t: Tap.Test, result: RestoreResult): Promise<void> {
  await result.kill();
  for (const host of result.hostPids.values()) t.notOk(alive(host), `host pid ${host} is gone after kill`);
}

function checkTree(t: Tap.Test, result: RestoreResult): void {
  for (const task of result.plan.tasks) {
    const host = result.hostPids.get(task.pid)!;
    t.ok(host > 0, `task ${task.pid} has a host pid`);
    const ids = procIds(host);
    t.same({ pid: ids.pid, pgid: ids.pgid, sid: ids.sid }, { pid: task.pid, pgid: task.pgid, sid: task.sid }, `task ${task.pid} ids`);
    const parentHost = result.hostPids.get(task.ppid);
    if (parentHost !== undefined) t.equal(ids.ppidHost, parentHost, `task ${task.pid}'s parent is task ${task.ppid}`);
    if (!full) {
      t.equal(ids.state, 't', `task ${task.pid} is parked in a tracing stop`);
      t.ok(ids.tracer > 0, `task ${task.pid} is seized`);
    }
  }
}

const fdLink = (host: number, fd: number) => readlinkSync(`/proc/${host}/fd/${fd}`);

t.test('sleep', async (t) => {
  const result = await restoreFixture(t, 'sleep');
  t.equal(result.rootPid, 17288);
  checkTree(t, result);
  const host = result.rootHostPid;
  t.same([0, 1, 2].map((fd) => fdLink(host, fd)), ['/dev/null', '/dev/null', '/dev/null'], 'stdio on /dev/null');
  t.equal(readlinkSync(`/proc/${host}/cwd`), '/');
  t.match(fdLink(host, 251), /^pipe:/, 'fd 251 is a pipe');
  if (full) {
    // Just resumed, it may still be on its way back into clock_nanosleep: poll briefly.
    const state = () => readFileSync(`/proc/${host}/stat`, 'utf8').split(') ')[1]!.slice(0, 1);
    for (let i = 0; i < 50 && state() !== 'S'; i++) await new Promise((r) => setTimeout(r, 20));
    t.equal(state(), 'S', 'sleeping');
  }
  await finish(t, result);
});

t.test('sh-loop', async (t) => {
  mkdirSync('/tmp/crr-fixture', { recursive: true });
  const result = await restoreFixture(t, 'sh-loop');
  t.equal(result.tasks.length, 2);
  checkTree(t, result);
  for (const host of result.hostPids.values()) {
    t.equal(readlinkSync(`/proc/${host}/cwd`), '/tmp/crr-fixture', 'cwd');
    t.equal(readFileSync(`/proc/${host}/status`, 'utf8').match(/^Umask:\s*(\d+)/m)?.[1], '0022', 'umask');
  }
  const [sh, sleep] = [...result.hostPids.values()];
  t.equal(fdLink(sh!, 251), fdLink(sleep!, 251), 'the shared pipe at fd 251 is one pipe');
  t.equal(readFileSync(`/proc/${sh}/fdinfo/251`, 'utf8').match(/^flags:\s*(\d+)/m)?.[1]?.slice(-1), '1', 'write end (O_WRONLY)');
  if (full) {
    // Other tests may run the same shell loop on the same file: watch for our values and children.
    const seen = new Set<string>();
    const deadline = Date.now() + 2600;
    while (Date.now() < deadline) {
      seen.add(readFileSync('/tmp/crr-fixture/counter', 'utf8').trim());
      await new Promise((r) => setTimeout(r, 50));
    }
    t.ok(seen.has('4') && seen.has('5'), `the counter goes on from 4 (saw ${[...seen].join(', ')})`);
    const children = readFileSync(`/proc/${sh}/task/${sh}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
    t.ok(children.length === 1 && children[0] !== sleep, 'the loop has forked a new sleep since the restore');
  }
  await finish(t, result);
});

t.test('py-threads', async (t) => {
  mkdirSync('/tmp/crr-fixture', { recursive: true });
  const result = await restoreFixture(t, 'py-threads');
  checkTree(t, result);
  t.same(result.tasks[0]!.threads.length, 4, 'four threads in the plan');
  if (full) {
    const host = result.rootHostPid;
    const tids = readdirSync(`/proc/${host}/task`).map((tid) => procIds(Number(tid)).pid).sort();
    t.same(tids, [...result.tasks[0]!.threads].sort(), 'four threads with their original TIDs');
    await new Promise((r) => setTimeout(r, 600));
    const first = await pyCounts();
    t.ok(first.every((n) => n >= 29), `counts went on from 29 29 29: ${first.join(' ')}`);
    await new Promise((r) => setTimeout(r, 600));
    const second = await pyCounts();
    t.ok(second.every((n, i) => n > first[i]!), `counts keep growing: ${second.join(' ')}`);
  }
  await finish(t, result);
});

t.test('pipe: both ends of one pipe in sleep and cat', async (t) => {
  const result = await restoreFixture(t, 'pipe');
  t.equal(result.tasks.length, 3);
  checkTree(t, result);
  const [, sleep, cat] = result.plan.tasks.map((task) => result.hostPids.get(task.pid)!);
  t.match(fdLink(sleep!, 1), /^pipe:\[\d+\]$/);
  t.equal(fdLink(sleep!, 1), fdLink(cat!, 0), "sleep's stdout and cat's stdin are one pipe");
  await finish(t, result);
});
