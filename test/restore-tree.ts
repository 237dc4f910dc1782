// Task trees restored by restore() in a fresh PID namespace, from synthetic checkpoints built
// out of the sleep fixture's process: 22 tasks over 3 sessions and 8 process groups, with a
// group led by a sibling, one led by an uncle, one led by a zombie, one whose leader exited
// long ago, a grandchild chain and a zombie with its exit status. Every PID, parent, group and
// session is read back from /proc; then the whole tree is killed and reaped by PID.
import t from 'tap';
import { spawn } from 'node:child_process';
import { readFileSync, readlinkSync } from 'node:fs';
import { restore } from '../src/restore/index.js';
import { alive, copyFixture, procIds, synthTree, type SynthTask } from './lib/restore-images.js';

const tree: SynthTask[] = [
  { pid: 100, ppid: 0, pgid: 100, sid: 100 }, // R
  { pid: 101, ppid: 100, pgid: 101, sid: 100 }, // A
  { pid: 102, ppid: 101, pgid: 101, sid: 100 }, // A1
  { pid: 103, ppid: 101, pgid: 101, sid: 100 }, // A2
  { pid: 104, ppid: 100, pgid: 104, sid: 100 }, // B leads its group
  { pid: 105, ppid: 100, pgid: 104, sid: 100 }, // C in its sibling's group
  { pid: 106, ppid: 100, pgid: 100, sid: 100 }, // F
  { pid: 107, ppid: 106, pgid: 104, sid: 100 }, // F1 in its uncle's group
  { pid: 108, ppid: 100, pgid: 108, sid: 108 }, // D: session 2
  { pid: 109, ppid: 108, pgid: 109, sid: 108 }, // D1
  { pid: 110, ppid: 109, pgid: 109, sid: 108 }, // D4
  { pid: 111, ppid: 108, pgid: 109, sid: 108 }, // D2 in its sibling's group
  { pid: 112, ppid: 108, pgid: 108, sid: 108 }, // D3
  { pid: 113, ppid: 100, pgid: 113, sid: 113 }, // E: session 3
  { pid: 114, ppid: 113, pgid: 113, sid: 113 }, // E1
  { pid: 115, ppid: 114, pgid: 115, sid: 113 }, // E2 leads a group
  { pid: 116, ppid: 115, pgid: 115, sid: 113 }, // E3
  { pid: 117, ppid: 116, pgid: 115, sid: 113 }, // E4: end of the chain
  { pid: 118, ppid: 100, pgid: 118, sid: 100, zombieStatus: 7 << 8 }, // Z: zombie group leader
  { pid: 119, ppid: 100, pgid: 118, sid: 100 }, // Y in the zombie's group
  { pid: 120, ppid: 100, pgid: 130, sid: 100 }, // G1: group whose leader 130 exited
  { pid: 121, ppid: 100, pgid: 130, sid: 100 }, // G2
];

/** Field 52 of /proc/PID/stat: a zombie's wait status. */
function exitCodeOf(hostPid: number): number {
  const stat = readFileSync(`/proc/${hostPid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ').at(-1));
}

t.test('22 tasks, 3 sessions, 8 groups, a zombie and a grandchild chain', async (t) => {
  const dir = synthTree(t, tree);
  const result = await restore({ imagesDir: dir, pidNamespace: true });
  t.teardown(() => result.kill());
  t.equal(result.tasks.length, 22);
  for (const task of tree) {
    const host = result.hostPids.get(task.pid);
    if (host === undefined) {
      t.fail(`task ${task.pid} has no host pid`);
      continue;
    }
    const ids = procIds(host);
    t.equal(ids.pid, task.pid, `pid ${task.pid}`);
    if (task.ppid) t.equal(ids.ppidHost, result.hostPids.get(task.ppid), `task ${task.pid}: parent ${task.ppid}`);
    if (task.zombieStatus !== undefined) {
      t.equal(ids.state, 'Z', `task ${task.pid} is a zombie`);
      t.equal(exitCodeOf(host), task.zombieStatus, `task ${task.pid} exited with status ${task.zombieStatus >> 8}`);
      continue;
    }
    t.same({ pgid: ids.pgid, sid: ids.sid }, { pgid: task.pgid, sid: task.sid }, `task ${task.pid}: group ${task.pgid}, session ${task.sid}`);
  }
  t.notOk(
    [...result.hostPids.values()].some((host) => procIds(host).pid === 130),
    'the placeholder for the exited leader 130 is gone',
  );
  await result.kill();
  for (const host of result.hostPids.values()) t.notOk(alive(host), `host pid ${host} gone`);
});

t.test('a process restored twice in a row from the same images', async (t) => {
  const dir = copyFixture(t, 'sleep');
  for (const round of [1, 2]) {
    const result = await restore({ imagesDir: dir, pidNamespace: true });
    t.teardown(() => result.kill());
    t.equal(procIds(result.rootHostPid).pid, 17288, `round ${round}: pid 17288`);
    await result.kill();
    t.notOk(alive(result.rootHostPid), `round ${round}: gone after kill`);
  }
});

t.test('a session left by its parent is refused at plan time, naming the task', async (t) => {
  const dir = synthTree(t, [
    { pid: 200, ppid: 0, pgid: 200, sid: 200 },
    { pid: 201, ppid: 200, pgid: 201, sid: 201 },
    { pid: 202, ppid: 201, pgid: 200, sid: 200 },
  ]);
  await t.rejects(restore({ imagesDir: dir, pidNamespace: true }), { stage: 'plan', pid: 202, resource: 'task-tree', message: /session/ });
});

t.test('a root outside its own session needs --shell-job', async (t) => {
  const dir = synthTree(t, [{ pid: 300, ppid: 0, pgid: 300, sid: 299 }]);
  await t.rejects(restore({ imagesDir: dir, pidNamespace: true }), { stage: 'plan', pid: 300, message: /--shell-job/ });
  const result = await restore({ imagesDir: dir, pidNamespace: true, shellJob: true });
  t.teardown(() => result.kill());
  t.equal(procIds(result.rootHostPid).pid, 300, 'restored with shellJob');
  await result.kill();
});

t.test("a tree whose root was its PID namespace's pid 1 comes back as the fresh namespace's init", async (t) => {
  const dir = synthTree(t, [
    { pid: 1, ppid: 0, pgid: 1, sid: 1 },
    { pid: 2, ppid: 1, pgid: 1, sid: 1 },
  ]);
  const result = await restore({ imagesDir: dir, pidNamespace: true });
  t.teardown(() => result.kill());
  const nspid = (host: number) => readFileSync(`/proc/${host}/status`, 'utf8').match(/^NSpid:\s+(.*)$/m)![1]!.trim().split(/\s+/).map(Number);
  const root = result.hostPids.get(1)!;
  const child = result.hostPids.get(2)!;
  t.equal(nspid(root).at(-1), 1, 'the root is pid 1 of its namespace');
  t.equal(nspid(child).at(-1), 2, 'its child is pid 2 there');
  t.equal(Number(readFileSync(`/proc/${child}/stat`, 'utf8').split(') ')[1]!.split(' ')[1]), root, "the child's parent is the root");
  t.equal(readFileSync(`/proc/${root}/comm`, 'utf8').trim(), 'sleep', 'the init runs the restored program');
  const timeNs = (host: number) => readlinkSync(`/proc/${host}/ns/time`);
  t.equal(timeNs(root), timeNs(child), "the root entered its children's time namespace (it unshared it itself)");
  t.not(timeNs(root), readlinkSync('/proc/self/ns/time'), "not crr's");
});

t.test('a PID in use fails the plan, naming who holds it: a zombie with the parent that has not reaped it', async (t) => {
  // `sleep 0` exits at once and stays a zombie: the shell exec'd into a sleep that never reaps it.
  const parent = spawn('sh', ['-c', 'sleep 0 & echo $!; exec sleep 30'], { stdio: ['ignore', 'pipe', 'ignore'] });
  t.teardown(() => {
    parent.kill('SIGKILL');
  });
  const zombie = Number(await new Promise<string>((resolve) => parent.stdout!.once('data', (d: Buffer) => resolve(d.toString()))));
  for (let i = 0; i < 200 && !readFileSync(`/proc/${zombie}/stat`, 'latin1').includes(') Z '); i++) await new Promise((r) => setTimeout(r, 10));
  const busy = synthTree(t, [{ pid: zombie, ppid: 0, pgid: zombie, sid: zombie }]);
  await t.rejects(restore({ imagesDir: busy, dryRun: true }), {
    stage: 'plan',
    code: 'EEXIST',
    message: new RegExp(`pid ${zombie} is in use \\(by a zombie of sleep that its parent, PID ${parent.pid}, has not reaped yet\\)`),
  });
  const live = synthTree(t, [{ pid: parent.pid!, ppid: 0, pgid: parent.pid!, sid: parent.pid! }]);
  await t.rejects(restore({ imagesDir: live, dryRun: true }), { stage: 'plan', message: new RegExp(`pid ${parent.pid} is in use \\(by sleep\\); restore elsewhere or in a fresh PID namespace`) });
});
