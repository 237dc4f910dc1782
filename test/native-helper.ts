// The per-task helper through its TypeScript client: exact PIDs in a private PID namespace,
// sessions and groups, fds at exact numbers, errno names on failures, timeouts, and the
// PDEATHSIG chain when the orchestrator is SIGKILLed. Every helper is killed and reaped by PID.
import t from 'tap';
import { spawn } from 'node:child_process';
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { NativeError } from '../src/errors.js';
import { HelperBatchError, HelperGoneError, HelperTimeoutError } from '../src/actors/helper-errors.js';
import { spawnHelper, type HelperChannel } from '../src/actors/helper.js';

const CLONE_NEWPID = 0x20000000;
const O_RDONLY = 0;
const O_CLOEXEC = 0o2000000;
const F_GETFD = 1;
const SOCK_STREAM = 1;
const RLIMIT_NOFILE = 7;

function statusField(hostPid: number, field: string): number[] {
  const line = readFileSync(`/proc/${hostPid}/status`, 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`${field}:`));
  return line ? line.slice(field.length + 1).trim().split(/\s+/).map(Number) : [];
}

/** The global PID of the process that has `nsPid` in the PID namespace of `nsMember`. */
function globalPidIn(nsMember: number, nsPid: number): number[] {
  const ns = readlinkSync(`/proc/${nsMember}/ns/pid`);
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const nspids = statusField(Number(entry), 'NSpid');
      if (nspids.at(-1) === nsPid && readlinkSync(`/proc/${entry}/ns/pid`) === ns) found.push(Number(entry));
    } catch {
      // the process went away while we looked
    }
  }
  return found;
}

function fdsOf(hostPid: number): number[] {
  return readdirSync(`/proc/${hostPid}/fd`).map(Number).sort((a, b) => a - b);
}

async function rootHelper(t: { teardown(fn: () => unknown): void }): Promise<HelperChannel> {
  const root = await spawnHelper();
  t.teardown(() => root.destroy());
  await root.identified;
  return root;
}

t.test('a helper forked in crr\'s own PID namespace: its host PID is the PID clone3 returned', async (t) => {
  const root = await rootHelper(t);
  t.ok(root.inCrrPidNamespace, 'the first helper is in crr\'s namespace');
  const child = await root.fork();
  t.ok(child.inCrrPidNamespace, 'so is a child forked without CLONE_NEWPID');
  t.equal(child.hostPid, child.pid);
  t.same(statusField(child.hostPid, 'NSpid'), [child.hostPid], 'one namespace level: the host\'s');
  t.same(statusField(child.hostPid, 'PPid'), [root.hostPid], 'and it is the root helper\'s child');
  const init = await root.fork({ pid: 1, flags: CLONE_NEWPID });
  t.notOk(init.inCrrPidNamespace, 'a CLONE_NEWPID child is not');
  t.not(init.hostPid, init.pid, 'its host PID comes from its pidfd');
  const inside = await init.fork({ pid: 500 });
  t.notOk(inside.inCrrPidNamespace, 'nor what it forks');
  t.same(statusField(inside.hostPid, 'NSpid'), [inside.hostPid, 500]);
});

t.test('forks exact PIDs inside a private PID namespace', async (t) => {
  const root = await rootHelper(t);
  const init = await root.fork({ pid: 1, flags: CLONE_NEWPID });
  t.equal(init.pid, 1, 'the first task of a new PID namespace is pid 1 there');
  t.equal(statusField(init.hostPid, 'NSpid').join(' '), `${init.hostPid} 1`);
  const task = await init.fork({ pid: 500 });
  t.equal(task.pid, 500);
  t.same(globalPidIn(init.hostPid, 500), [task.hostPid], '/proc NSpid maps ns pid 500 to the hostPid');
  const self = await task.getpid();
  t.equal(self.pid, 500);
  t.equal(self.ppid, 1);
  t.equal(self.rseq, 'off', 'glibc rseq is off in forked helpers too');
  t.equal(readFileSync(`/proc/${task.hostPid}/environ`, 'utf8').includes('glibc.pthread.rseq=0'), true);
  t.same(fdsOf(task.hostPid).length, 1, 'a forked helper keeps only its channel');
  t.ok(fdsOf(task.hostPid)[0]! >= 1000, 'the channel sits at a high fd');
  const again = await init.fork({ pid: 501 });
  t.equal(again.pid, 501);
  t.equal((await again.getpid()).ppid, 1);
});

t.test('setsid and setpgid, checked from inside and in /proc', async (t) => {
  const root = await rootHelper(t);
  const init = await root.fork({ pid: 1, flags: CLONE_NEWPID });
  const leader = await init.fork({ pid: 500 });
  t.equal(await leader.request('setsid'), 500, 'setsid returns the new session id');
  const member = await leader.fork({ pid: 510 });
  await member.request('setpgid', { pid: 0, pgid: 0 });
  let self = await member.getpid();
  t.same([self.pid, self.pgid, self.sid], [510, 510, 500], 'own group inside the leader session');
  t.equal(statusField(member.hostPid, 'NSpgid').at(-1), 510);
  await member.request('setpgid', { pid: 0, pgid: 500 });
  self = await member.getpid();
  t.same([self.pgid, self.sid], [500, 500], 'joined the leader group');
  t.equal(statusField(member.hostPid, 'NSpgid').at(-1), 500, 'NSpgid in /proc agrees');
  t.equal(statusField(member.hostPid, 'NSsid').at(-1), 500, 'NSsid in /proc agrees');
  const stat = readFileSync(`/proc/${member.hostPid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  t.equal(Number(fields[2]), leader.hostPid, 'host /proc stat shows the host pgid');
});

t.test('fds land at the requested numbers', async (t) => {
  const root = await rootHelper(t);
  const init = await root.fork({ pid: 1, flags: CLONE_NEWPID });
  const task = await init.fork({ pid: 500 });
  // fork() resolves without waiting for the child's start-up (which drops its inherited fds);
  // its first answer comes after it.
  await task.getpid();
  const channelBefore = fdsOf(task.hostPid)[0]!;
  t.equal(await task.request('open', { path: '/etc/hostname', flags: O_RDONLY, fd: 5 }), 5);
  t.equal(readlinkSync(`/proc/${task.hostPid}/fd/5`), '/etc/hostname');
  t.equal(await task.request('lseek', { fd: 5, offset: 3, whence: 0 }), 3);
  t.match(readFileSync(`/proc/${task.hostPid}/fdinfo/5`, 'utf8'), /^pos:\s+3$/m);
  t.same(await task.request('pipe', { fds: [9, 8] }), [9, 8], 'a pipe with its ends in swapped order');
  const readEnd = readlinkSync(`/proc/${task.hostPid}/fd/9`);
  t.match(readEnd, /^pipe:\[\d+\]$/);
  t.equal(readlinkSync(`/proc/${task.hostPid}/fd/8`), readEnd, 'both ends are one pipe');
  t.match(readFileSync(`/proc/${task.hostPid}/fdinfo/9`, 'utf8'), /^flags:\s+0+$/m, '9 is the read end');
  t.same(await task.request('socketpair', { type: SOCK_STREAM | 0o2000000, fds: [21, 20] }), [21, 20]);
  t.equal(await task.request('fcntl', { fd: 21, cmd: F_GETFD }), 1, 'SOCK_CLOEXEC survived the move');
  t.equal(await task.request('open', { path: '/etc/hostname', flags: O_CLOEXEC, fd: channelBefore }), channelBefore);
  t.equal(readlinkSync(`/proc/${task.hostPid}/fd/${channelBefore}`), '/etc/hostname', 'a task fd can take the channel number');
  t.equal((await task.getpid()).pid, 500, 'the channel moved and still works');
  t.equal(await task.request('dup2', { oldfd: 5, newfd: 0 }), 0);
  t.equal(readlinkSync(`/proc/${task.hostPid}/fd/0`), '/etc/hostname');
  const values = await task.batch([
    { op: 'close', fd: 8 },
    { op: 'open', path: '/', flags: O_RDONLY, fd: 3 },
    { op: 'fchdir', fd: 3 },
    { op: 'umask', mask: 0o27 },
    { op: 'umask', mask: 0o22 },
  ]);
  t.same(values.slice(1, 2), [3]);
  t.equal(values[4], 0o27, 'umask returns the previous mask');
  t.equal(readlinkSync(`/proc/${task.hostPid}/cwd`), '/');
  const listed = fdsOf(task.hostPid);
  t.same(listed.filter((fd) => fd < 1000), [0, 3, 5, 9, 20, 21, channelBefore].filter((fd) => fd < 1000));
});

t.test('state ops: rt_sigaction, sigprocmask, prlimit, prctl, map_scratch', async (t) => {
  const root = await rootHelper(t);
  const task = await root.fork();
  const mask = 1n << 63n; // signal 64: needs all 64 bits
  await task.request('rt_sigaction', { sig: 10, handler: 0x7f00_1234_5678, flags: 0x04000000, restorer: 0x7f00_0000_1000, mask });
  const got = await task.request<{ handler: number; flags: number; restorer: number; mask: bigint }>('rt_sigaction', { sig: 10 });
  t.same(got, { handler: 0x7f00_1234_5678, flags: 0x04000000, restorer: 0x7f00_0000_1000, mask }, 'the action reads back as given');
  await task.request('sigprocmask', { how: 2, set: (1n << 9n) | (1n << 63n) });
  t.equal(await task.request('sigprocmask', {}), (1n << 9n) | (1n << 63n));
  t.equal(readFileSync(`/proc/${task.hostPid}/status`, 'utf8').match(/^SigBlk:\s+(\w+)$/m)?.[1], '8000000000000200');
  const before = await task.request<{ cur: number; max: number }>('prlimit', { resource: RLIMIT_NOFILE });
  await task.request('setrlimit', { resource: RLIMIT_NOFILE, cur: 100, max: before.max });
  t.match(readFileSync(`/proc/${task.hostPid}/limits`, 'utf8'), /Max open files\s+100\s/);
  const err = await task.request('setrlimit', { resource: RLIMIT_NOFILE, cur: 100, max: -1 }).catch((e: unknown) => e);
  t.match(err, { code: 'EPERM', syscall: 'prlimit64' }, 'raising a hard limit needs CAP_SYS_RESOURCE');
  await task.request('prctl', { option: 4, a2: 0 }); // PR_SET_DUMPABLE
  t.equal(await task.request('prctl', { option: 3 }), 0, 'PR_GET_DUMPABLE reads it back');
  await task.request('prctl', { option: 4, a2: 1 });
  const code = Buffer.from([0x0f, 0x05, 0xcc]);
  const addr = 0x5000_0000_0000;
  t.equal(await task.request('map_scratch', { addr, size: 4096, code }), addr);
  t.match(readFileSync(`/proc/${task.hostPid}/maps`, 'utf8'), /^500000000000-500000001000 rwxp /m);
  const busy = await task.request('map_scratch', { addr, size: 4096, code }).catch((e: unknown) => e);
  t.match(busy, { code: 'EEXIST', syscall: 'mmap' }, 'MAP_FIXED_NOREPLACE refuses a used address');
});

t.test('errors carry errno names, batches stop at the first failure', async (t) => {
  const root = await rootHelper(t);
  const init = await root.fork({ pid: 1, flags: CLONE_NEWPID });
  const task = await init.fork({ pid: 500 });
  const busy = await init.fork({ pid: 500 }).catch((e: unknown) => e);
  t.type(busy, NativeError);
  t.match(busy, { code: 'EEXIST', errno: 17, syscall: 'clone3', pid: 1 }, 'a busy PID is EEXIST');
  t.match(await task.request('kill', { pid: 4000, sig: 0 }).catch((e) => e), { code: 'ESRCH', syscall: 'kill', pid: 500 });
  t.match(await task.request('close', { fd: 77 }).catch((e) => e), { code: 'EBADF', errno: 9, syscall: 'close' });
  t.match(await task.request('open', { path: '/no/such/file', flags: 0 }).catch((e) => e), { code: 'ENOENT', syscall: 'open' });
  t.match(await task.request('waitpid', { pid: -1 }).catch((e) => e), { code: 'ECHILD', syscall: 'wait4' });
  await task.request('setsid');
  t.match(await task.request('setsid').catch((e) => e), { code: 'EPERM', syscall: 'setsid' }, 'a session leader cannot setsid again');
  t.match(await task.request('frobnicate').catch((e) => e), { code: 'EINVAL', syscall: 'request' });
  t.match(await task.request('open', { flags: 0 }).catch((e) => e), { code: 'EINVAL', syscall: 'request' }, 'missing argument');
  const batch = await task
    .batch([{ op: 'getpid' }, { op: 'umask', mask: 0o22 }, { op: 'close', fd: 78 }, { op: 'umask', mask: 0o77 }])
    .catch((e: unknown) => e);
  t.type(batch, HelperBatchError);
  t.match(batch, { code: 'EBADF', index: 2 });
  t.equal((batch as HelperBatchError).results.length, 2, 'results of the ops before the failure');
  t.equal(await task.request('umask', { mask: 0o22 }), 0o22, 'ops after the failure did not run');
  const huge = await task.request('map_scratch', { addr: 0x4000_0000_0000, size: 1 << 20, code: Buffer.alloc(300_000) }).catch((e) => e);
  t.match(huge, { code: 'E2BIG', syscall: 'map_scratch' }, 'an oversized request is refused before it is sent');
  const bigAnswer = await task.batch(Array.from({ length: 2000 }, () => ({ op: 'getpid' }))).catch((e) => e);
  t.match(bigAnswer, { code: 'E2BIG', syscall: 'answer' }, 'an answer over the packet limit is an error');
  t.equal((await task.getpid()).pid, 500, 'the channel survives both');
  // 40 requests of 100 KB each at once: far more than the channel holds (about 208 KiB), so most
  // wait in crr until it drains; each umask answers the one before it, so order shows.
  const masks = Array.from({ length: 40 }, (_, k) => (k * 7) & 0o777);
  const answers = await Promise.all(masks.map((mask) => task.request('umask', { mask, pad: Buffer.alloc(100_000) })));
  t.same(answers, [0o22, ...masks.slice(0, -1)], 'requests the full channel held back went later, in order');
});

t.test('a parked helper does not answer: typed timeout; it sleeps, never stops', async (t) => {
  const root = await rootHelper(t);
  const task = await root.fork();
  await task.park();
  const started = Date.now();
  const err = await task.getpid({ timeoutMs: 300 }).catch((e: unknown) => e);
  t.type(err, HelperTimeoutError);
  t.match(err, { code: 'ETIMEDOUT', syscall: 'getpid', pid: task.pid });
  t.ok(Date.now() - started >= 290, 'waited for the timeout');
  const state = readFileSync(`/proc/${task.hostPid}/stat`, 'utf8').split(') ')[1]!.split(' ')[0];
  t.equal(state, 'S', 'blocked in pause(), not stopped');
  const blocked = /^SigBlk:\s+([0-9a-f]+)$/m.exec(readFileSync(`/proc/${task.hostPid}/status`, 'utf8'))?.[1];
  t.equal(blocked, 'fffffffffffbfeef', 'every signal blocked but SIGTRAP (and SIGKILL, SIGSTOP, which cannot be): the stub runs next (kernel notes trap 9)');
  task.kill();
  await task.exited;
  const gone = await task.getpid().catch((e: unknown) => e);
  t.type(gone, HelperGoneError, 'requests after the helper died fail at once');
  task.unref();
  task.ref();
  task.close();
  t.type(await task.getpid().catch((e: unknown) => e), HelperGoneError, 'ref, unref and close of a closed channel change nothing');
  await root.request('waitpid', { pid: task.pidInParent });
});

t.test('exit recreates a zombie that the parent reaps with its status', async (t) => {
  const root = await rootHelper(t);
  const task = await root.fork();
  await task.request('exit', { status: 3 });
  await task.exited;
  const reaped = await root.request<{ pid: number; exitCode: number | null }>('waitpid', { pid: task.pidInParent });
  t.same(reaped, { pid: task.pidInParent, status: 3 << 8, exitCode: 3, signal: null });
});

// The orchestrator is a separate Node process that forks helpers and prints their host PIDs.
const orchestratorScript = `
import { spawnHelper } from ${JSON.stringify(fileURLToPath(new URL('../src/actors/helper.js', import.meta.url)))};
const root = await spawnHelper();
await root.identified;
const init = await root.fork({ pid: 1, flags: ${CLONE_NEWPID} });
const a = await init.fork({ pid: 500 });
const b = await a.fork({ pid: 600 });
const c = await root.fork();
// Parked helpers never read their channel, so only PDEATHSIG can end them.
await b.park();
await c.park();
console.log(JSON.stringify([root, init, a, b, c].map((h) => h.hostPid)));
setInterval(() => {}, 1000);
`;

function startTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

t.test('crash safety: SIGKILL of the orchestrator leaves no helper alive', async (t) => {
  const repo = fileURLToPath(new URL('..', import.meta.url));
  const child = spawn(process.execPath, ['--import', '@tapjs/typescript/import', '--input-type=module', '-e', orchestratorScript], {
    cwd: repo,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let pids: number[] = [];
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await new Promise((resolve) => child.once('exit', resolve));
    }
  });
  let out = '';
  child.stdout.setEncoding('utf8');
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (d: string) => {
      out += d;
      if (out.includes('\n')) resolve();
    });
    child.once('exit', () => reject(new Error(`orchestrator exited early: ${out}`)));
  });
  pids = JSON.parse(out.trim()) as number[];
  t.equal(pids.length, 5);
  const starts = pids.map(startTime);
  t.ok(starts.every((s) => s !== undefined), 'every helper was running');
  child.kill('SIGKILL');
  await new Promise((resolve) => child.once('exit', resolve));
  // Dead at once (PDEATHSIG chain); init may take a while to reap the zombies (kernel notes 11).
  const alive = () => pids.filter((pid, i) => startTime(pid) === starts[i] && !/\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8')));
  const deadline = Date.now() + 5000;
  while (alive().length > 0 && Date.now() < deadline) await sleep(20);
  t.same(alive(), [], 'no helper is still running');
  const reapDeadline = Date.now() + 20000;
  const present = () => pids.filter((pid, i) => startTime(pid) === starts[i]);
  while (present().length > 0 && Date.now() < reapDeadline) await sleep(50);
  t.same(present(), [], 'and every one was reaped');
});
