// The fd-level addon calls (native/addon/fds.cc): socketpairs, fd passing with SCM_RIGHTS,
// pidfd_open / pidfd_getfd / pidfd_send_signal, and errors with errno names. Checks for leaked
// fds in this process; the one process started is killed and reaped by PID.
import t from 'tap';
import { spawn } from 'node:child_process';
import { closeSync, fstatSync, mkdtempSync, openSync, readFileSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { native } from '../src/actors/native.js';

const SIGKILL = 9;
const O_CLOEXEC = 0o2000000;

function fdFlags(fd: number): number {
  const match = /^flags:\s+(\d+)$/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'));
  return match ? parseInt(match[1]!, 8) : -1;
}

function openFds(): number[] {
  return readdirSync('/proc/self/fd').map(Number);
}

function closeAll(fds: number[]): void {
  for (const fd of fds) native.close(fd);
}

function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (error) {
    return error;
  }
  return undefined;
}

const dir = mkdtempSync(join(tmpdir(), 'crr-fds-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

t.test('socketpair of each type, close-on-exec by default', async (t) => {
  for (const type of ['seqpacket', 'stream', 'dgram'] as const) {
    const pair = native.socketpair(type);
    t.equal(pair.length, 2);
    t.not(pair[0], pair[1]);
    for (const fd of pair) {
      t.match(readlinkSync(`/proc/self/fd/${fd}`), /^socket:\[\d+\]$/, `${type} fd ${fd} is a socket`);
      t.ok(fdFlags(fd) & O_CLOEXEC, `${type} fd ${fd} is close-on-exec`);
    }
    closeAll(pair);
  }
  const [a, b] = native.socketpair('stream', false);
  t.match(readlinkSync(`/proc/self/fd/${a}`), /^socket:/);
  t.equal(fdFlags(a) & O_CLOEXEC, 0, 'cloexec false leaves it inheritable');
  closeAll([a, b]);
  t.throws(() => native.socketpair('raw' as 'stream'), TypeError);
});

t.test('sendFds/recvFds move fds and data across a socketpair', async (t) => {
  const before = openFds().length;
  const file = join(dir, 'passed');
  writeFileSync(file, 'payload');
  const fileFd = openSync(file, 'r');
  const [a, b] = native.socketpair('seqpacket');
  t.equal(native.sendFds(a, [fileFd, a], Buffer.from('hello')), 5);
  const got = native.recvFds(b, 4);
  t.equal(got.data.toString(), 'hello');
  t.equal(got.fds.length, 2);
  t.not(got.fds[0], fileFd, 'a new fd number in this process');
  t.equal(fstatSync(got.fds[0]!).ino, fstatSync(fileFd).ino, 'the same open file');
  t.equal(readlinkSync(`/proc/self/fd/${got.fds[1]}`), readlinkSync(`/proc/self/fd/${a}`), 'the same socket');
  t.ok(fdFlags(got.fds[0]!) & O_CLOEXEC, 'received fds are close-on-exec');
  closeAll(got.fds);

  t.equal(native.sendFds(a, []), 1, 'no fds: one filler byte');
  t.same(native.recvFds(b, 0).fds, []);

  native.sendFds(a, [fileFd, fileFd, fileFd]);
  t.match(thrown(() => native.recvFds(b, 1)), { code: 'EMSGSIZE', syscall: 'recvmsg' }, 'too many fds is an error');
  t.match(thrown(() => native.recvFds(b, 1, 64, true)), { code: 'EAGAIN', errno: 11, syscall: 'recvmsg' });
  closeAll([a, b]);
  closeSync(fileFd);
  t.equal(openFds().length, before, 'no fd leaked, even on the EMSGSIZE path');
});

function readFdinfo(fd: number): string {
  return readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
}

t.test('pidfd_open, pidfd_getfd of another process, pidfd_send_signal', async (t) => {
  const file = join(dir, 'held');
  writeFileSync(file, 'held by the child');
  const fileFd = openSync(file, 'r');
  const child = spawn('sleep', ['60'], { stdio: ['ignore', 'ignore', 'ignore', fileFd] });
  closeSync(fileFd);
  const exited = new Promise<NodeJS.Signals | null>((resolve) => child.once('exit', (_code, sig) => resolve(sig)));
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  });
  await new Promise((resolve) => child.once('spawn', resolve));
  const pidfd = native.pidfdOpen(child.pid!);
  t.match(readFdinfo(pidfd), new RegExp(`^Pid:\\s+${child.pid}$`, 'm'));
  t.equal(native.pidfdPid(pidfd), child.pid, 'PIDFD_GET_INFO gives the PID fdinfo shows');
  const copy = native.pidfdGetfd(pidfd, 3);
  t.equal(readlinkSync(`/proc/self/fd/${copy}`), file, "a copy of the child's fd 3");
  t.equal(readFileSync(`/proc/self/fd/${copy}`, 'utf8'), 'held by the child');
  native.close(copy);
  t.match(thrown(() => native.pidfdGetfd(pidfd, 77)), { code: 'EBADF', errno: 9, syscall: 'pidfd_getfd' });
  native.pidfdSendSignal(pidfd, SIGKILL);
  t.equal(await exited, 'SIGKILL', 'the signal went through the pidfd');
  t.match(thrown(() => native.pidfdSendSignal(pidfd, SIGKILL)), { code: 'ESRCH', syscall: 'pidfd_send_signal' });
  t.match(thrown(() => native.pidfdPid(pidfd)), { code: 'ESRCH', syscall: 'ioctl(PIDFD_GET_INFO)' }, 'reaped: no PID');
  native.close(pidfd);
  t.match(thrown(() => native.pidfdOpen(child.pid!)), { code: 'ESRCH', syscall: 'pidfd_open' }, 'reaped: gone');
  t.match(thrown(() => native.close(pidfd)), { code: 'EBADF', syscall: 'close' });
  t.throws(() => native.pidfdOpen('1' as unknown as number), TypeError);
});
