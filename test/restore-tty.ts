// Pseudo-terminals across a dump and restore. A shell job's terminal (--shell-job): the terminal
// program runs on pty A (its master held here), is dumped, and comes back on pty B, the terminal
// handed to the restore, with the non-canonical, no-echo mode it had set; a byte written on B's
// master reaches it and its answer comes out there; without --shell-job both the dump and the
// restore refuse. A pair in the tree (program ptypair): back at its index, the child's
// controlling terminal with its foreground group, answering a line without echo. Bytes queued in
// a pair either way: back once, after a restore and after a dump that leaves the tree running.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { closeSync, constants as C, cpSync, mkdirSync, mkdtempSync, openSync, readFileSync, readlinkSync, readSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { native } from '../src/actors/native.js';
import { summariseCheckpoint } from '../src/cli/commands/show.js';
import { dump } from '../src/dump/index.js';
import { openCheckpoint } from '../src/images/index.js';
import { restore } from '../src/restore/index.js';
import { dumpProgram, restoreProgram } from './lib/program-roundtrip.js';
import { killTree, requestCheck, startProgram, waitFor, waitPidGone } from './lib/programs.js';
import { safe } from './lib/detached.js';
import { startPython, type PythonProgram } from './lib/python-program.js';
import { rewriteImage } from './lib/restore-images.js';

const TIOCSPTLCK = 0x40045431;
const TIOCGPTN = 0x80045430;
const ECHO = 0o10;
const ICANON = 0o2;

/** A new pty: its master (non-blocking, held here) and its slave's path. */
function openPty(t: { teardown(fn: () => unknown): void }): { master: number; path: string } {
  const master = openSync('/dev/ptmx', C.O_RDWR | C.O_NOCTTY | C.O_NONBLOCK);
  t.teardown(() => closeSync(master));
  native.ioctlBuffer(master, TIOCSPTLCK, Buffer.alloc(4)); // unlock the slave
  return { master, path: `/dev/pts/${native.ioctlBuffer(master, TIOCGPTN, Buffer.alloc(4)).readInt32LE(0)}` };
}

/** What the master has to read within `ms` (the slave's output). */
async function readMaster(master: number, ms = 5000): Promise<string> {
  const buf = Buffer.alloc(4096);
  let out = '';
  for (const end = Date.now() + ms; Date.now() < end && !out.includes('\n'); ) {
    try {
      out += buf.toString('latin1', 0, readSync(master, buf));
    } catch (err) {
      if ((err as { code?: string }).code !== 'EAGAIN') throw err;
      await sleep(20);
    }
  }
  return out;
}

t.test('the self-check notices a terminal that echoes again', async (t) => {
  const pty = openPty(t);
  const prog = await startProgram(t, 'terminal', [pty.path], { env: { CRR_SELFTEST_BREAK: 'echo' } });
  writeSync(pty.master, 'x');
  const r = await requestCheck(prog.pid, prog.resultFile);
  t.notOk(r.pass, r.text);
});

t.test("a shell job's terminal comes back as the restorer's terminal, in the program's mode", async (t) => {
  const original = openPty(t);
  const prog = await startProgram(t, 'terminal', [original.path]);
  const imagesDir = mkdtempSync(join(tmpdir(), 'crr-tty-'));
  t.teardown(() => rmSync(imagesDir, { recursive: true, force: true }));

  await t.rejects(dump({ pid: prog.pid, imagesDir }), { message: new RegExp(`fd 0 .*a terminal \\(${original.path}\\) whose master is not in the tree: dump with --shell-job`) }, 'refused without --shell-job');
  const pids = prog.tree();
  await dump({ pid: prog.pid, imagesDir, shellJob: true });
  for (const pid of pids) await waitPidGone(pid);

  const checkpoint = openCheckpoint(imagesDir);
  const [info] = [...checkpoint.image('tty-info.img').entries()].map((e) => e.decode());
  const termios = info!['termios'] as Record<string, number>;
  t.equal(Number((info!['pty'] as Record<string, number>)['index']), Number(original.path.split('/').pop()), 'tty-info: the pty index');
  t.equal(termios['c_lflag']! & (ECHO | ICANON), 0, 'tty-info: the termios the program set (no ECHO, no ICANON)');
  t.equal(new Set(checkpoint.fdinfo(checkpoint.ids(prog.pid).files_id).map((f) => f.id)).size, 1, 'fds 0-2: one description');

  await t.rejects(restore({ imagesDir, pidNamespace: true }), { stage: 'plan', resource: 'tty', message: /restore it as a shell job \(--shell-job\)/ }, 'the restore refuses without --shell-job');
  const replacement = openPty(t);
  const slave = openSync(replacement.path, C.O_RDWR | C.O_NOCTTY);
  t.teardown(() => closeSync(slave));
  const rt = await restoreProgram(t, prog, imagesDir, { shellJob: true, terminalFd: slave });
  writeSync(replacement.master, 'x');
  t.same(await rt.check(), { pass: true, text: 'PASS' }, "fds 0-2 are the restorer's terminal, in the program's mode, and read what its master wrote");
  t.match(await readMaster(replacement.master), /pong/, "the program's answer comes out on the restorer's terminal");
});

t.test('the self-check notices a pseudo-terminal that echoes', async (t) => {
  const prog = await startProgram(t, 'ptypair', [], { env: { CRR_SELFTEST_BREAK: 'echo' } });
  const r = await requestCheck(prog.pid, prog.resultFile);
  t.notOk(r.pass, r.text);
});

t.test('a pseudo-terminal with both ends in the tree comes back at its index, with its session and mode', async (t) => {
  const prog = await startProgram(t, 'ptypair');
  const child = prog.tree().find((pid) => pid !== prog.pid);
  const imagesDir = await dumpProgram(t, prog);
  const checkpoint = openCheckpoint(imagesDir);
  const infos = [...checkpoint.image('tty-info.img').entries()].map((e) => e.decode());
  const slave = infos.find((i) => Number(i['id']) % 2 === 0)!;
  const master = infos.find((i) => Number(i['id']) % 2 === 1)!;
  t.equal(Number(master['id']), Number(slave['id']) + 1, 'tty-info: a master and its slave (ids 2N+1 and 2N)');
  const shown = summariseCheckpoint(imagesDir).tasks.flatMap((task) => task.fds.filter((fd) => fd.type === 'TTY').map((fd) => fd.what));
  t.ok(shown.includes(`pty ${Number(slave['id']) / 2} master`) && shown.includes(`pty ${Number(slave['id']) / 2} slave`), `crr show DIR: ${shown.join(', ')}`);
  t.same([Number(slave['sid']), Number(slave['pgrp'])], [child, child], "tty-info: the slave controls the child's session, the child's group in the foreground");
  const rt = await restoreProgram(t, prog, imagesDir);
  t.same(await rt.check(), { pass: true, text: 'PASS' }, 'same index, the child\'s controlling terminal and foreground group, a line answered without echo');
});

/** A python program holding a pty pair (master fd 30, slave fd 31, echo on) with a line typed at the master and output written at the slave, none of it read. */
function startQueuedPty(t: Tap.Test): Promise<PythonProgram> {
  const setUp = [
    'm, s = os.openpty()',
    'os.dup2(m, 30)',
    'os.dup2(s, 31)',
    'os.write(30, b"typed line\\n")', // the slave's echo puts "typed line\r\n" at the master
    'time.sleep(0.3)',
    'os.write(31, b"output\\n")', // output processing: "output\r\n"
    'time.sleep(0.3)',
  ];
  const check = [
    'def read(fd, n):',
    '    data = b""',
    '    while len(data) < n and select.select([fd], [], [], 5)[0]:',
    '        data += os.read(fd, n - len(data))',
    '    return data',
    'got = [os.read(31, 100) if select.select([31], [], [], 5)[0] else b"", read(30, 20)]',
    'got.append(select.select([30, 31], [], [], 0.3)[0])', // nothing more either way
    'open(result, "w").write(repr(got))',
  ];
  return startPython(t, ['select'], setUp, check, 'a pty with bytes queued both ways');
}

const QUEUED_PTY = String.raw`[b'typed line\n', b'typed line\r\noutput\r\n', []]`;

t.test('bytes queued in a pseudo-terminal either way come back once (tty-data.img): no second echo, no second output processing', async (t) => {
  const { prog, go, result } = await startQueuedPty(t);
  const imagesDir = await dumpProgram(t, prog);
  const data = [...openCheckpoint(imagesDir).image('tty-data.img').entries()].map((e) => e.decode());
  t.same(data.map((d) => [Number(d['tty_id']) % 2, Buffer.from(d['data'] as Uint8Array).toString('latin1')]).sort(),
    [[0, 'typed line\n'], [1, 'typed line\r\noutput\r\n']], "tty-data: the slave's line (even id) and the master's bytes (odd id)");
  await restoreProgram(t, prog, imagesDir);
  go();
  t.equal(await result(), QUEUED_PTY);
});

t.test('dumped with --leave-running, the bytes read out of a pseudo-terminal are put back', async (t) => {
  const { prog, go, result } = await startQueuedPty(t);
  const imagesDir = mkdtempSync(join(tmpdir(), 'crr-tty-'));
  t.teardown(() => rmSync(imagesDir, { recursive: true, force: true }));
  await dump({ pid: prog.pid, imagesDir, leaveRunning: true });
  go();
  t.equal(await result(), QUEUED_PTY);
});

t.test('bytes queued at a master whose slave is closed come back: crr opens the slave to put them back', async (t) => {
  const setUp = ['m, s = os.openpty()', 'os.dup2(m, 30)', 'os.write(s, b"written before the dump\\n")', 'os.close(s)', 'time.sleep(0.2)'];
  const check = ['open(result, "w").write(repr(os.read(30, 100) if select.select([30], [], [], 5)[0] else b"nothing"))'];
  const { prog, go, result } = await startPython(t, ['select'], setUp, check, 'a pty master with output queued, no slave open');
  const imagesDir = await dumpProgram(t, prog);
  t.same([...openCheckpoint(imagesDir).image('tty-data.img').entries()].map((e) => Number(e.decode()['tty_id']) % 2), [1], "tty-data: the master's bytes");
  await restoreProgram(t, prog, imagesDir);
  go();
  t.equal(await result(), String.raw`b'written before the dump\r\n'`);
});

t.test('/dev/tty held at an fd comes back leading to the controlling terminal, the pair of the tree', async (t) => {
  // A session leader (the program starts in a session of its own) takes a pty of its own as its
  // controlling terminal and opens /dev/tty at fd 40 (dup'ed at 41); what it writes there comes
  // out at the master.
  const setUp = [
    'm, s = os.openpty()',
    'fcntl.ioctl(s, termios.TIOCSCTTY, 0)',
    'fd = os.open("/dev/tty", os.O_RDWR | os.O_NONBLOCK)',
    'os.dup2(fd, 40)',
    'os.dup2(40, 41, inheritable=False)',
    'os.close(fd)',
  ];
  const check = [
    'os.write(41, b"through /dev/tty\\n")',
    'out = os.read(m, 100) if select.select([m], [], [], 5)[0] else b"nothing"',
    'fl = fcntl.fcntl(40, fcntl.F_GETFL)',
    'open(result, "w").write(repr([os.readlink("/proc/self/fd/40"), os.readlink("/proc/self/fd/41"), bool(fl & os.O_NONBLOCK), os.get_inheritable(40), os.get_inheritable(41), out]))',
  ];
  const { prog, go, result } = await startPython(t, ['fcntl', 'select', 'termios'], setUp, check, 'a session leader holding /dev/tty');
  const imagesDir = await dumpProgram(t, prog);
  const fds = summariseCheckpoint(imagesDir).tasks[0]!.fds;
  t.same(fds.filter((fd) => fd.fd === 40 || fd.fd === 41).map((fd) => fd.what), ['/dev/tty', '/dev/tty'], 'crr show: fds 40 and 41 are /dev/tty');
  t.equal(fds.filter((fd) => fd.what === '/dev/tty').length, 2, 'no other /dev/tty fd');
  t.equal(fds.find((fd) => fd.fd === 40)!.fileId, fds.find((fd) => fd.fd === 41)!.fileId, 'one description');
  const info = [...openCheckpoint(imagesDir).image('tty-info.img').entries()].map((e) => e.decode()).find((e) => Number(e['id']) === 2012);
  t.match(info, { type: 4, sid: 0, pgrp: 0 }, "tty-info: CRIU's CTTY entry");
  // The same images with the pty's session taken off its slave: no controlling terminal for
  // the session, so nothing for /dev/tty to lead to.
  const noSession = mkdtempSync(join(tmpdir(), 'crr-dev-tty-'));
  t.teardown(() => rmSync(noSession, { recursive: true, force: true }));
  cpSync(imagesDir, noSession, { recursive: true });
  rewriteImage(noSession, 'tty-info.img', (entries) => entries.map((e) => (Number(e['id']) % 2 === 0 && Number(e['id']) !== 2012 ? { ...e, sid: 0, pgrp: 0 } : e)));
  await t.rejects(restore({ imagesDir: noSession, dryRun: true, pidNamespace: true }), { stage: 'plan', pid: prog.pid, resource: 'tty', message: /fd 40 is a terminal: it is \/dev\/tty, and the task's session gets no controlling terminal/ }, 'a session without its terminal: refused at plan time');
  await restoreProgram(t, prog, imagesDir);
  go();
  t.equal(await result(), String.raw`['/dev/tty', '/dev/tty', True, True, False, b'through /dev/tty\r\n']`);
});

t.test('/dev/tty of a task whose terminal was given up is refused at dump, naming the fd', async (t) => {
  // The leader gives its terminal up (TIOCNOTTY) after it opened /dev/tty: no terminal is the
  // session's any more, and nothing is left for /dev/tty to lead to at a restore.
  const setUp = [
    'm, s = os.openpty()',
    'fcntl.ioctl(s, termios.TIOCSCTTY, 0)',
    'fd = os.open("/dev/tty", os.O_RDWR)',
    'os.dup2(fd, 40)',
    'os.close(fd)',
    'signal.signal(signal.SIGHUP, signal.SIG_IGN)',
    'signal.signal(signal.SIGCONT, signal.SIG_IGN)',
    'fcntl.ioctl(s, termios.TIOCNOTTY)',
  ];
  const { prog } = await startPython(t, ['fcntl', 'signal', 'termios'], setUp, [], 'a session leader that gave its terminal up, holding /dev/tty');
  const imagesDir = mkdtempSync(join(tmpdir(), 'crr-dev-tty-'));
  t.teardown(() => rmSync(imagesDir, { recursive: true, force: true }));
  await t.rejects(dump({ pid: prog.pid, imagesDir }), { message: new RegExp(`pid ${prog.pid}: fd 40 is /dev/tty, but the task has no controlling terminal now`) }, 'the dump names the fd');
});

t.test("a shell job holding /dev/tty comes back with it leading to the restorer's terminal (crr restore --shell-job run on a terminal)", async (t) => {
  // The job: python started in the background by a shell whose controlling terminal is pty A,
  // so it is in the shell's session and /dev/tty is A. The restore: the CLI, run as a session
  // leader on pty B (its controlling terminal), keeps the job in its own session, where /dev/tty
  // is B.
  const dir = mkdtempSync(join(tmpdir(), 'crr-tty-job-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const [jobPid, crrPid, go, result] = ['job.pid', 'crr.pid', 'go', 'result'].map((f) => join(dir, f)) as [string, string, string, string];
  const py = [
    'import os, sys, time',
    'fd = os.open("/dev/tty", os.O_RDWR)',
    'os.dup2(fd, 40)',
    'os.close(fd)',
    'while not os.path.exists(sys.argv[1]):',
    '    time.sleep(0.02)',
    'os.write(40, b"through /dev/tty\\n")',
    'open(sys.argv[2], "w").write(os.readlink("/proc/self/fd/40"))',
    'time.sleep(1000)',
  ].join('\n');
  const a = openPty(t);
  spawnSync('setsid', ['-f', 'sh', '-c', 'exec <"$0" >"$0" 2>&1; python3 -c "$1" "$2" "$3" & echo $! > "$4"; wait', a.path, py, go, result, jobPid]);
  const pid = await waitFor('the job to start', () => Number(safe(jobPid).trim()) || undefined, 5000);
  const shell = Number(readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ')[1]);
  t.teardown(() => killTree([pid, shell]));
  await waitFor('/dev/tty open at fd 40', () => (readlinkOr(`/proc/${pid}/fd/40`) === '/dev/tty' ? true : undefined), 5000);
  const imagesDir = join(dir, 'images');
  mkdirSync(imagesDir);
  await dump({ pid, imagesDir, shellJob: true });
  await waitPidGone(pid);

  const b = openPty(t);
  const crr = fileURLToPath(new URL('../bin/crr.js', import.meta.url));
  spawnSync('setsid', ['-f', 'sh', '-c', 'echo $$ > "$0"; exec <"$1" >"$2" 2>&1; exec "$3" "$4" restore --shell-job -D "$5"', crrPid, b.path, join(dir, 'crr.log'), process.execPath, crr, imagesDir]);
  const cli = await waitFor('crr restore to start', () => Number(safe(crrPid).trim()) || undefined, 5000);
  t.teardown(() => killTree([pid, cli]));
  await waitFor('the job restored', () => (readlinkOr(`/proc/${pid}/fd/40`) === '/dev/tty' ? true : undefined), 20_000);
  writeFileSync(go, '');
  t.equal(await waitFor('the result', () => safe(result) || undefined, 10_000), '/dev/tty', 'fd 40 is /dev/tty');
  t.match(await readMaster(b.master), /through \/dev\/tty/, "what it wrote to /dev/tty came out on the restorer's terminal");
});

function readlinkOr(path: string): string | undefined {
  try {
    return readlinkSync(path);
  } catch {
    return undefined;
  }
}
