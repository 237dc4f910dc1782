// A unix datagram socket connected to a named socket outside the tree (a program logging to a
// syslog socket through Python's SysLogHandler): refused at dump unless asked for (criu's
// --ext-unix-sk), then dumped as CRIU writes it (an entry of its own for the outside socket,
// USK_EXTERN with its name) and connected again at restore, where the program's next messages
// arrive at the same outside socket. A stream connection to outside stays refused; a restore
// whose outside socket is gone fails naming it.
import t from 'tap';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dump } from '../src/dump/index.js';
import { CrrError } from '../src/errors.js';
import { readImage } from '../src/images/reader.js';
import { formatSummary, summariseCheckpoint } from '../src/cli/commands/show.js';
import { restore } from '../src/restore/index.js';
import { dumpProgram, restoreProgram } from './lib/program-roundtrip.js';
import { startPython } from './lib/python-program.js';
import { waitFor } from './lib/programs.js';

const USK_EXTERN = 1;

/** A datagram "syslog" outside the tree: every message it gets is appended to `log`, one a line. */
function startSyslog(t: Tap.Test, dir: string, type: 'dgram' | 'stream' = 'dgram'): { path: string; log: string } {
  const path = join(dir, `${type}.sock`);
  const log = join(dir, `${type}.log`);
  const script =
    type === 'dgram'
      ? ['import socket, sys', 's = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)', 's.bind(sys.argv[1])', 'while True:', '    open(sys.argv[2], "a").write(s.recv(1000).decode() + "\\n")']
      : ['import socket, sys, time', 's = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)', 's.bind(sys.argv[1])', 's.listen(1)', 'c, _ = s.accept()', 'time.sleep(1000)'];
  const server = spawn('/usr/bin/python3', ['-c', script.join('\n'), path, log], { stdio: 'ignore' });
  t.teardown(() => {
    server.kill('SIGKILL');
  });
  return { path, log };
}

function tempDir(t: Tap.Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'crr-ext-unix-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A python program in the tree that logs through SysLogHandler to `path`: "before" at set-up, "after" at its check. */
function startLogger(t: Tap.Test, path: string) {
  const setUp = [
    `h = logging.handlers.SysLogHandler(address=${JSON.stringify(path)})`,
    'log = logging.getLogger("app")',
    'log.addHandler(h)',
    'log.warning("before the dump")',
  ];
  const check = ['log.warning("after the restore")', 'open(result, "w").write("logged")'];
  return startPython(t, ['logging', 'logging.handlers'], setUp, check, 'a program logging to a syslog socket outside the tree');
}

t.test('refused without --ext-unix-sk, naming the socket and the option', async (t) => {
  const dir = tempDir(t);
  const syslog = startSyslog(t, dir);
  await waitFor('the syslog socket', () => (existsSync(syslog.path) ? true : undefined));
  const { prog } = await startLogger(t, syslog.path);
  const err = await dump({ pid: prog.pid, imagesDir: join(dir, 'images') }).catch((e) => e);
  t.type(err, CrrError);
  t.match(err.message, /unix socket .*its peer \d+ is outside the dumped tree \(external unix socket\); a datagram socket's may be dumped with --ext-unix-sk/);
});

t.test('dumped with --ext-unix-sk as CRIU writes it, connected again at restore', async (t) => {
  const dir = tempDir(t);
  const syslog = startSyslog(t, dir);
  await waitFor('the syslog socket', () => (existsSync(syslog.path) ? true : undefined));
  const { prog, go, result } = await startLogger(t, syslog.path);
  await waitFor('the first message', () => (existsSync(syslog.log) && readFileSync(syslog.log, 'utf8').includes('before the dump') ? true : undefined));

  const imagesDir = await dumpProgram(t, prog, { externalUnixSockets: true });
  const files = [...readImage(join(imagesDir, 'files.img')).entries()].map((e) => e.decode());
  const usks = files.map((f) => f['usk'] as Record<string, unknown> | undefined).filter((u) => u !== undefined);
  const outside = usks.find((u) => Number(u['uflags']) & USK_EXTERN);
  t.ok(outside, 'an entry for the outside socket');
  t.match(outside, { type: 2, state: 10, peer: 0 }, "USK_EXTERN, datagram, CRIU's listen state, no peer");
  t.equal(Buffer.from(outside!['name'] as Uint8Array).toString().replace(/\0+$/, ''), syslog.path, 'with its name');
  t.ok(usks.some((u) => Number(u['peer']) === Number(outside!['ino']) && !(Number(u['uflags']) & USK_EXTERN)), "the program's socket names it as its peer");

  t.match(formatSummary(summariseCheckpoint(imagesDir)), `UNIXSK  socket:[${[...usks].find((u) => Number(u['peer']) === Number(outside!['ino']))!['ino']}] unix -> ${syslog.path} (outside the tree; connected again at restore)`, 'crr show names the outside socket');

  await restoreProgram(t, prog, imagesDir);
  go();
  t.equal(await result(), 'logged');
  await waitFor('the message after the restore', () => (readFileSync(syslog.log, 'utf8').includes('after the restore') ? true : undefined));
  t.match(readFileSync(syslog.log, 'utf8'), /before the dump[\s\S]*after the restore/, 'the next message arrives at the same outside socket');
});

t.test('a restore whose outside socket is gone fails, naming it', async (t) => {
  const dir = tempDir(t);
  const syslog = startSyslog(t, dir);
  await waitFor('the syslog socket', () => (existsSync(syslog.path) ? true : undefined));
  const { prog } = await startLogger(t, syslog.path);
  const imagesDir = await dumpProgram(t, prog, { externalUnixSockets: true });
  rmSync(syslog.path);
  const err = await restore({ imagesDir, pidNamespace: true }).catch((e) => e);
  t.match(err, { stage: 'shared-fds', resource: 'unixsk', syscall: 'connect', code: 'ENOENT' });
  t.match(err.message, new RegExp(`to ${syslog.path.replace(/[.]/g, '\\.')}, outside the tree \\(dumped with --ext-unix-sk\\): is it there\\?`));
});

t.test('a stream connection to outside stays refused with --ext-unix-sk', async (t) => {
  const dir = tempDir(t);
  const server = startSyslog(t, dir, 'stream');
  await waitFor('the stream socket', () => (existsSync(server.path) ? true : undefined));
  const { prog } = await startPython(t, ['socket'], ['c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)', `c.connect(${JSON.stringify(server.path)})`], [], 'a program connected to a stream socket outside the tree');
  const err = await dump({ pid: prog.pid, imagesDir: join(dir, 'images'), externalUnixSockets: true }).catch((e) => e);
  t.type(err, CrrError);
  t.match(err.message, /a stream connection to outside cannot be made again \(--ext-unix-sk takes datagram sockets\)/);
});
