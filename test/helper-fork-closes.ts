// A fork costs its parent helper one round trip: the parent's copies of each child's channel end
// and pidfd sit above the task fd range until crr's next request to that parent, which closes
// them first (close ops in front of it, invisible to the caller); a parent sharing its fd table
// closes them at once. The client also knows each helper's process group without asking, and
// fds can ride on a request packet (recv_fds without a socket of its own). Every
// helper is killed and reaped by PID (destroy) in teardown.
import t from 'tap';
import { closeSync, openSync, readdirSync, readlinkSync } from 'node:fs';
import { HelperBatchError } from '../src/actors/helper-errors.js';
import { spawnHelper, type HelperChannel } from '../src/actors/helper.js';
import { NativeError } from '../src/errors.js';

const CLONE_NEWPID = 0x20000000;
const CLONE_FILES = 0x400;
const CHANNEL_FD_BASE = 1000;
const F_GETFD = 1;

const fdsOf = (hostPid: number) => readdirSync(`/proc/${hostPid}/fd`).map(Number).sort((a, b) => a - b);

async function nsInit(t: { teardown(fn: () => unknown): void }): Promise<HelperChannel> {
  const root = await spawnHelper();
  t.teardown(() => root.destroy());
  await root.identified;
  return root.fork({ flags: CLONE_NEWPID });
}

t.test('children\'s fds stay high in the parent until its next request closes them', async (t) => {
  const init = await nsInit(t);
  await init.getpid(); // its own start-up done, the launcher's copies of it closed
  const parent = await init.fork({ pid: 300 });
  await parent.getpid();
  const before = fdsOf(parent.hostPid);
  t.same(before.filter((fd) => fd < CHANNEL_FD_BASE), [], 'a fresh helper holds only its channel');
  const kids = [await parent.fork({ pid: 301 }), await parent.fork({ pid: 302 })];
  const held = fdsOf(parent.hostPid);
  t.equal(held.length, before.length + 2, 'the second child\'s channel end and pidfd still open (the first\'s went with the second fork)');
  t.same(held.filter((fd) => fd < CHANNEL_FD_BASE), [], 'none on a number a task fd could want');
  for (const kid of kids) t.equal((await kid.getpid()).pid, kid.pid, `child ${kid.pid} answers on crr's copy of its channel`);
  const self = await parent.getpid();
  t.equal(self.pid, 300, 'the next request answers as if sent alone');
  t.same(fdsOf(parent.hostPid), before, 'and the parent closed both children\'s fds before it');
});

t.test('a batch after a fork gets only its own results and its own failure index', async (t) => {
  const init = await nsInit(t);
  const parent = await init.fork({ pid: 400 });
  await parent.fork({ pid: 401 });
  const values = await parent.batch([{ op: 'umask', mask: 0o22 }, { op: 'umask', mask: 0o27 }]);
  t.same(values, [values[0], 0o22], 'two results for two ops');
  await parent.fork({ pid: 402 });
  const failed = await parent.batch([{ op: 'umask', mask: 0o22 }, { op: 'close', fd: 77 }]).catch((e: unknown) => e);
  t.ok(failed instanceof HelperBatchError, 'a HelperBatchError');
  t.equal((failed as HelperBatchError).index, 1, 'index of the caller\'s failed op');
  t.same((failed as HelperBatchError).results, [0o27], 'results of the caller\'s ops before it');
  await parent.fork({ pid: 403 });
  const single = await parent.request('close', { fd: 78 }).catch((e: unknown) => e);
  t.ok(single instanceof NativeError && !(single instanceof HelperBatchError), 'a single op fails as a plain NativeError');
  t.equal((single as NativeError).code, 'EBADF');
});

t.test('a parent sharing its fd table closes its children\'s fds at once', async (t) => {
  const init = await nsInit(t);
  const owner = await init.fork({ pid: 500 });
  await owner.getpid();
  const base = fdsOf(owner.hostPid).length;
  const sharer = await owner.fork({ pid: 501, flags: CLONE_FILES });
  t.equal(fdsOf(owner.hostPid).length, base + 1, 'the table holds the sharer\'s channel, nothing of crr\'s');
  await sharer.fork({ pid: 502 });
  t.equal(fdsOf(owner.hostPid).length, base + 1, 'a fork by the sharer leaves nothing in the table either');
});

t.test('the process group is known without asking, and matches the kernel\'s', async (t) => {
  const init = await nsInit(t);
  t.equal(init.pgid, undefined, 'a new PID namespace\'s init cannot name its inherited group');
  const leader = await init.fork({ pid: 600 });
  t.equal(leader.pgid, undefined, 'inherited from the init: unknown');
  await leader.setsid();
  t.equal(leader.pgid, 600, 'setsid: its own group');
  const member = await leader.fork({ pid: 601 });
  t.equal(member.pgid, 600, 'a child starts in its parent\'s group');
  t.equal((await member.getpid()).pgid, 600, 'as the kernel says');
  await member.setpgid(0);
  t.equal(member.pgid, 601);
  t.equal((await member.getpid()).pgid, 601, 'as the kernel says after setpgid(0, 0)');
  const other = await leader.fork({ pid: 602 });
  await other.setpgid(601);
  t.equal(other.pgid, 601);
  t.equal((await other.getpid()).pgid, 601, 'as the kernel says after joining another group');
  const failed = await other.setpgid(12345).catch((e: unknown) => e);
  t.ok(failed instanceof NativeError, 'joining a group that does not exist fails');
  t.equal(other.pgid, 601, 'and leaves the known group as it was');
});

t.test('recv_fds takes fds sent with the request on the channel; unclaimed ones are closed', async (t) => {
  const init = await nsInit(t);
  const task = await init.fork({ pid: 700 });
  await task.getpid();
  const before = fdsOf(task.hostPid);
  const ours = openSync('/etc/hostname', 'r');
  t.teardown(() => closeSync(ours));
  t.equal(await task.requestWithFds('recv_fds', { fds: [7, 9], cloexec: [1, 0] }, [ours, ours]), 2);
  t.equal(readlinkSync(`/proc/${task.hostPid}/fd/7`), '/etc/hostname', 'landed at 7');
  t.equal(readlinkSync(`/proc/${task.hostPid}/fd/9`), '/etc/hostname', 'landed at 9');
  t.equal(await task.request('fcntl', { fd: 7, cmd: F_GETFD }), 1, '7 close-on-exec as asked');
  t.equal(await task.request('fcntl', { fd: 9, cmd: F_GETFD }), 0, '9 not');
  t.same(fdsOf(task.hostPid), [7, 9, ...before].sort((a, b) => a - b), 'nothing else left behind');
  const wrong = await task.requestWithFds('recv_fds', { fds: [11] }, [ours, ours]).catch((e: unknown) => e);
  t.equal((wrong as NativeError).code, 'EPROTO', 'two fds for one target');
  await task.requestWithFds('getpid', {}, [ours]);
  t.same(fdsOf(task.hostPid), [7, 9, ...before].sort((a, b) => a - b), 'fds no op took were closed');
});
