// Real programs across a dump and restore, each in a fresh PID namespace, checked from outside as
// a user would check them: a tmux server with a shell on its pty, answering a new tmux client over
// its unix socket with the shell's state kept; vim in tmux, saving what was typed before the dump; a JVM with its 18 threads, its counter going on
// from where it was and its garbage collector running after the restore; Redis with its keys;
// nginx's master and workers serving, then stopping gracefully; a Node.js HTTP server; a static Go
// HTTP server (goroutines, timers, collector, async preemption); memcached with a client connected
// across the dump; SQLite in WAL mode with a write transaction open across the dump; a Python
// multiprocessing pool; headless Chromium, its page's timer running on and a new tab opened. The
// JVM, Redis, Node.js, Go, the Python pool and Chromium again with lazy pages: they run on while their memory comes in, and the server
// ends once every page is. (PostgreSQL has a file of its own: test/restore-postgres.ts.)
import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'node:http';
import { connect } from 'node:net';
import { fileURLToPath } from 'node:url';
import { dump } from '../src/dump/index.js';
import { restore } from '../src/restore/index.js';
import { startDetached, safe } from './lib/detached.js';
import { killTree, processTree, waitFor, waitPidGone } from './lib/programs.js';
import { freePort } from './lib/ports.js';

function tempDir(t: { teardown(fn: () => unknown): void }, name: string): string {
  const dir = mkdtempSync(join(tmpdir(), `crr-${name}-`));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Dumps the tree at `root` (killing it) and waits until its PIDs are free; the images' directory. */
async function dumpTree(root: number, dir: string): Promise<string> {
  const tree = processTree(root);
  const imagesDir = join(dir, 'images');
  await dump({ pid: root, imagesDir });
  for (const pid of tree) await waitPidGone(pid);
  return imagesDir;
}

/** Restores a checkpoint in a fresh PID namespace, killed when the test ends (with its lazy-pages server, if any). */
async function restoreTree(t: { teardown(fn: () => unknown): void }, imagesDir: string, options: { lazyPages?: boolean } = {}) {
  const result = await restore({ imagesDir, pidNamespace: true, ...options });
  t.teardown(() => result.kill());
  return result;
}

/** The lazy variant of a test: its restore took lazy pages, and the server brought every page in. */
async function lazyPagesDone(t: Tap.Test, result: Awaited<ReturnType<typeof restoreTree>>): Promise<void> {
  t.ok(result.lazyPages, 'a lazy-pages server served its memory');
  t.equal(await result.lazyPages?.exited, 0, 'which exits 0 once every page is in, the program running on');
}

t.test('tmux: the server and its shell, reached by a new client', async (t) => {
  const dir = tempDir(t, 'tmux');
  const sock = join(dir, 'sock');
  const tmux = (...args: string[]) => spawnSync('tmux', ['-S', sock, ...args], { encoding: 'utf8', timeout: 10_000 });
  const screen = () => tmux('capture-pane', '-p', '-t', 's1').stdout;
  t.equal(tmux('new-session', '-d', '-s', 's1', '-x', '80', '-y', '24', 'bash --norc --noprofile').status, 0, 'tmux new-session');
  const server = Number(tmux('display-message', '-p', '-t', 's1', '#{pid}').stdout.trim());
  t.teardown(() => killTree(processTree(server)).catch(() => undefined));
  tmux('send-keys', '-t', 's1', 'X=restored-shell; echo before-$X', 'Enter');
  await waitFor('the shell to answer', () => (screen().includes('before-restored-shell') ? true : undefined));

  const tree = processTree(server);
  const result = await restoreTree(t, await dumpTree(server, dir));
  t.equal(result.tasks.length, tree.length, `the server and its shell (${tree.length} processes)`);
  t.equal(tmux('send-keys', '-t', 's1', 'echo after-$X', 'Enter').status, 0, 'a new client reaches the restored server');
  await waitFor('the restored shell to answer', () => (screen().includes('after-restored-shell') ? true : undefined));
  t.match(screen(), /before-restored-shell[\s\S]*after-restored-shell/, "the pane's earlier lines are there, and the shell kept its variable");
});

t.test('vim in tmux: the text typed before the dump is saved after the restore', async (t) => {
  const dir = tempDir(t, 'vim');
  const sock = join(dir, 'sock');
  const file = join(dir, 'notes.txt');
  const tmux = (...args: string[]) => spawnSync('tmux', ['-S', sock, ...args], { encoding: 'utf8', timeout: 10_000 });
  const screen = () => tmux('capture-pane', '-p', '-t', 'v').stdout;
  t.equal(tmux('new-session', '-d', '-s', 'v', '-x', '80', '-y', '24', `vim -u NONE -N ${file}`).status, 0, 'vim started in tmux');
  const server = Number(tmux('display-message', '-p', '-t', 'v', '#{pid}').stdout.trim());
  t.teardown(() => killTree(processTree(server)).catch(() => undefined));
  tmux('send-keys', '-t', 'v', 'ityped before the dump', 'Escape');
  await waitFor('vim to show the text', () => (screen().includes('typed before the dump') ? true : undefined));

  await restoreTree(t, await dumpTree(server, dir));
  tmux('send-keys', '-t', 'v', 'otyped after the restore', 'Escape', ':wq', 'Enter');
  await waitFor('vim to write the file', () => (existsSync(file) && readFileSync(file, 'utf8').includes('after') ? true : undefined));
  t.equal(readFileSync(file, 'utf8'), 'typed before the dump\ntyped after the restore\n', "the buffer held both lines: vim's state came back");
});

const COUNTER = `
import java.lang.management.*;
import java.nio.file.*;
import java.util.*;
import java.util.concurrent.*;
import java.util.concurrent.atomic.*;
public class Counter {
  public static void main(String[] args) throws Exception {
    AtomicLong n = new AtomicLong();
    ExecutorService pool = Executors.newFixedThreadPool(4);
    for (int i = 0; i < 4; i++) pool.submit(() -> { while (true) { n.incrementAndGet(); Thread.sleep(1); } });
    List<byte[]> kept = new ArrayList<>();
    while (true) {
      kept.add(new byte[1 << 20]);
      if (kept.size() > 16) kept.remove(0);
      long gcs = 0;
      for (GarbageCollectorMXBean gc : ManagementFactory.getGarbageCollectorMXBeans()) gcs += gc.getCollectionCount();
      Files.writeString(Paths.get(args[0] + ".tmp"), n.get() + " " + gcs + "\\n");
      Files.move(Paths.get(args[0] + ".tmp"), Paths.get(args[0]), StandardCopyOption.ATOMIC_MOVE);
      Thread.sleep(20);
    }
  }
}
`;

for (const lazyPages of [false, true]) t.test(`a JVM: its threads, its counter and its garbage collector${lazyPages ? ' (lazy pages)' : ''}`, async (t) => {
  const dir = tempDir(t, 'jvm');
  writeFileSync(join(dir, 'Counter.java'), COUNTER);
  const javac = spawnSync('javac', ['-d', dir, join(dir, 'Counter.java')], { encoding: 'utf8' });
  t.equal(javac.status, 0, `javac: ${javac.stderr}`);
  const out = join(dir, 'out');
  const read = () => {
    const [count, gcs] = safe(out).trim().split(' ').map(Number);
    return count === undefined || gcs === undefined || Number.isNaN(gcs) ? undefined : { count, gcs };
  };
  const jvm = await startDetached(['java', '-Xmx48m', '-XX:+UseSerialGC', '-cp', dir, 'Counter', out]);
  t.teardown(() => killTree([jvm]).catch(() => undefined));
  await waitFor('the JVM to count and collect', () => {
    const r = read();
    return r && r.count > 0 && r.gcs > 0 ? r : undefined;
  });
  const threads = readdirSync(`/proc/${jvm}/task`).length;

  const imagesDir = await dumpTree(jvm, dir);
  const atDump = read()!;
  const result = await restoreTree(t, imagesDir, { lazyPages });
  const restored = result.hostPids.get(jvm)!;
  t.equal(readdirSync(`/proc/${restored}/task`).length, threads, `all ${threads} threads back`);
  const later = await waitFor('the restored JVM to count on and collect again', () => {
    const r = read();
    return r && r.count > atDump.count && r.gcs > atDump.gcs ? r : undefined;
  }).catch((err: Error) => {
    // Once in CI the restored JVM did not count on (never again in 14 runs here): say where its threads are.
    throw new Error(`${err.message}; at the dump ${JSON.stringify(atDump)}, now ${JSON.stringify(read())}; threads: ${threadStates(restored)}`);
  });
  t.ok(later.count > atDump.count, `its counter went on from ${atDump.count} to ${later.count}, not from 0`);
  t.ok(later.gcs > atDump.gcs, `its collector ran again (${atDump.gcs} to ${later.gcs} collections)`);
  t.match(readFileSync(`/proc/${restored}/status`, 'utf8'), /State:\s+S/, 'and it is running (sleeping between steps), not stopped or dead');
  if (lazyPages) await lazyPagesDone(t, result);
});

/** Each thread of `pid`: its state, the kernel function it waits in and its syscall line. */
function threadStates(pid: number): string {
  return readdirSync(`/proc/${pid}/task`)
    .map((tid) => {
      const at = (file: string) => safe(`/proc/${pid}/task/${tid}/${file}`).trim();
      return `${tid} ${at('stat').replace(/^.*\) /, '').split(' ')[0]} ${at('wchan')} [${at('syscall').split(' ').slice(0, 2).join(' ')}]`;
    })
    .join(', ');
}

/** Retries `probe` (an error counts as not yet) every 50 ms for up to 10 s. */
async function until(what: string, probe: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (await probe().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** One request over a fresh TCP connection to 127.0.0.1:`port` (it must make the server close): the whole answer. */
async function ask(port: number, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = connect(port, '127.0.0.1', () => socket.write(request));
    socket.on('data', (d) => chunks.push(d));
    socket.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    socket.on('error', reject);
    socket.setTimeout(10_000, () => socket.destroy(new Error(`no answer from port ${port}`)));
  });
}

for (const lazyPages of [false, true]) t.test(`Redis: its keys and its threads, serving new clients${lazyPages ? ' (lazy pages)' : ''}`, async (t) => {
  const dir = tempDir(t, 'redis');
  const port = await freePort();
  const redis = await startDetached(['redis-server', '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir]);
  t.teardown(() => killTree([redis]).catch(() => undefined));
  const cmd = (...words: string[]) => ask(port, `${words.join(' ')}\r\nQUIT\r\n`);
  await until('Redis to answer', async () => (await cmd('PING')).startsWith('+PONG'));
  t.match(await cmd('SET', 'kept', 'before-the-dump'), /^\+OK/, 'a key set');
  t.match(await cmd('RPUSH', 'list', 'a', 'b', 'c'), /^:3/, 'a list made');
  const threads = readdirSync(`/proc/${redis}/task`).length;

  const result = await restoreTree(t, await dumpTree(redis, dir), { lazyPages });
  t.equal(readdirSync(`/proc/${result.hostPids.get(redis)!}/task`).length, threads, `its ${threads} threads back`);
  t.match(await cmd('GET', 'kept'), /^\$15\r\nbefore-the-dump/, 'the key is there');
  t.match(await cmd('LRANGE', 'list', '0', '-1'), /^\*3\r\n\$1\r\na\r\n\$1\r\nb\r\n\$1\r\nc/, 'so is the list');
  t.match(await cmd('INCR', 'counter'), /^:1/, 'and it takes new writes');
  if (lazyPages) await lazyPagesDone(t, result);
});

t.test('nginx: a master and two workers serving, then a graceful stop', async (t) => {
  const dir = tempDir(t, 'nginx');
  const port = await freePort();
  chmodSync(dir, 0o755); // nginx's workers run as nobody
  mkdirSync(join(dir, 'html'));
  writeFileSync(join(dir, 'html', 'index.html'), 'served by a restored nginx\n');
  const temps = ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((k) => `${k}_temp_path ${dir}/${k};`).join(' ');
  writeFileSync(
    join(dir, 'nginx.conf'),
    `daemon off; worker_processes 2; pid ${dir}/nginx.pid; error_log ${dir}/error.log;\n` +
      `events { worker_connections 64; }\n` +
      `http { access_log ${dir}/access.log; ${temps} server { listen 127.0.0.1:${port}; root ${dir}/html; } }\n`,
  );
  const master = await startDetached(['nginx', '-c', join(dir, 'nginx.conf')]);
  t.teardown(() => killTree(processTree(master)).catch(() => undefined));
  const get = () => ask(port, 'GET / HTTP/1.0\r\n\r\n');
  await until('nginx to serve', async () => (await get()).includes('restored nginx'));
  t.match(await get(), /200 OK[\s\S]*served by a restored nginx/, 'it serves before the dump');
  const tree = processTree(master);
  t.equal(tree.length, 3, 'a master and two workers');

  const result = await restoreTree(t, await dumpTree(master, dir));
  t.equal(result.tasks.length, 3, 'all three restored');
  for (let i = 0; i < 4; i++) t.match(await get(), /200 OK[\s\S]*served by a restored nginx/, `request ${i + 1} served after the restore`);
  process.kill(result.rootHostPid, 'SIGQUIT');
  t.same(await result.wait(), { exitCode: 0, signal: null }, 'a graceful stop: the master exits 0 once its workers are done');
  t.equal(readFileSync(join(dir, 'access.log'), 'utf8').split('\n').filter(Boolean).length, 6, 'every request is in its access log');
});

for (const lazyPages of [false, true]) t.test(`Node.js: an HTTP server with its libuv thread pool${lazyPages ? ' (lazy pages)' : ''}`, async (t) => {
  const dir = tempDir(t, 'node');
  const port = await freePort();
  writeFileSync(
    join(dir, 'server.js'),
    [
      "const fs = require('fs');",
      'let hits = 0;',
      "require('http').createServer((req, res) => { hits++; fs.readFile(__filename, (err, src) => res.end(`hits ${hits}, read ${err ? err.code : src.length} bytes\\n`)); })",
      `  .listen(${port}, '127.0.0.1');`,
    ].join('\n'),
  );
  const node = await startDetached([process.execPath, join(dir, 'server.js')]);
  t.teardown(() => killTree([node]).catch(() => undefined));
  const get = () => ask(port, 'GET / HTTP/1.0\r\n\r\n');
  await until('node to serve', async () => (await get()).includes('hits 1,'));
  t.match(await get(), /hits 2, read \d+ bytes/, 'it serves before the dump, reading a file on its thread pool');
  const threads = readdirSync(`/proc/${node}/task`).length;

  const result = await restoreTree(t, await dumpTree(node, dir), { lazyPages });
  t.equal(readdirSync(`/proc/${result.hostPids.get(node)!}/task`).length, threads, `its ${threads} threads back`);
  t.match(await get(), /hits 3, read \d+ bytes/, 'the count goes on; the thread pool reads files again');
  if (lazyPages) await lazyPagesDone(t, result);
});

const GO_SERVER = fileURLToPath(new URL('programs/go/server.go', import.meta.url));

for (const lazyPages of [false, true]) t.test(`Go: a static HTTP server, its goroutines, timers, collector and async preemption${lazyPages ? ' (lazy pages)' : ''}`, async (t) => {
  const dir = tempDir(t, 'go');
  const bin = join(dir, 'server');
  // A cache of its own that outlives the test: the standard library is compiled once per machine.
  const env = { ...process.env, CGO_ENABLED: '0', GOCACHE: join(tmpdir(), 'crr-go-cache'), GOPATH: join(dir, 'gopath'), GO111MODULE: 'off' };
  const built = spawnSync('go', ['build', '-o', bin, GO_SERVER], { encoding: 'utf8', env, timeout: 300_000 });
  t.equal(built.status, 0, `go build: ${built.stderr ?? built.error}`);
  const port = await freePort();
  const server = await startDetached([bin, String(port)]);
  t.teardown(() => killTree([server]).catch(() => undefined));
  const get = (path: string) => ask(port, `GET ${path} HTTP/1.0\r\n\r\n`);
  const ticks = async () => Number(/ticks (\d+)/.exec(await get('/ticks'))?.[1] ?? NaN);
  await until('the Go server to tick', async () => (await ticks()) > 10);
  t.match(await get('/spin'), /ticks while spinning [1-9]/, 'before the dump, its ticker runs while every P spins (async preemption)');
  const threads = readdirSync(`/proc/${server}/task`).length;

  const imagesDir = await dumpTree(server, dir);
  const result = await restoreTree(t, imagesDir, { lazyPages });
  t.equal(readdirSync(`/proc/${result.hostPids.get(server)!}/task`).length, threads, `its ${threads} threads back`);
  const first = await ticks();
  await new Promise((r) => setTimeout(r, 200));
  t.ok((await ticks()) > first, `its ticker goes on (${first} ticks right after the restore)`);
  t.match(await get('/parked'), /parked 100 of 100 intact/, '100 parked goroutines wake, each with its 64 KiB buffer intact');
  t.match(await get('/spin'), /ticks while spinning [1-9]/, 'async preemption still works: SIGURG reaches spinning threads');
  t.match(await get('/gc'), /collections [1-9]/, 'the collector runs');
  if (lazyPages) await lazyPagesDone(t, result);
});

t.test('memcached: its items and worker threads, and a client connected across the dump', async (t) => {
  const dir = tempDir(t, 'memcached');
  const port = await freePort();
  const mc = await startDetached(['memcached', '-l', '127.0.0.1', '-p', String(port), '-U', '0', '-t', '4', '-u', 'nobody']);
  t.teardown(() => killTree([mc]).catch(() => undefined));
  const cmd = (line: string) => ask(port, `${line}\r\nquit\r\n`);
  await until('memcached to answer', async () => (await cmd('version')).startsWith('VERSION'));
  t.match(await cmd('set kept 7 0 15\r\nbefore-the-dump'), /^STORED/, 'an item set');
  // A client that stays connected: its TCP connection goes through the dump (tcpEstablished).
  const client = connect(port, '127.0.0.1');
  t.teardown(() => client.destroy());
  let replies = '';
  client.on('data', (d) => (replies += d));
  await new Promise((r, j) => client.once('connect', r).once('error', j));
  const say = async (line: string, until: RegExp) => {
    replies = '';
    client.write(`${line}\r\n`);
    return waitFor(`memcached's answer to ${line}`, () => (until.test(replies) ? replies : undefined));
  };
  t.match(await say('incr hits 1', /NOT_FOUND|\d+/), /NOT_FOUND/, 'the connected client talks to it');
  await say('set hits 0 0 1\r\n0', /STORED/);
  const threads = readdirSync(`/proc/${mc}/task`).length;

  const imagesDir = join(dir, 'images');
  const tree = processTree(mc);
  await dump({ pid: mc, imagesDir, tcpEstablished: true });
  for (const pid of tree) await waitPidGone(pid);
  const result = await restoreTree(t, imagesDir);
  t.equal(readdirSync(`/proc/${result.hostPids.get(mc)!}/task`).length, threads, `its ${threads} threads back`);
  t.match(await say('incr hits 1', /\d+\r\n/), /^1\r\n/, 'the client connected before the dump goes on on the same connection');
  t.match(await cmd('get kept'), /^VALUE kept 7 15\r\nbefore-the-dump\r\nEND/, 'the item is there, with its flags');
  t.match(await cmd('set new 0 0 5\r\nafter'), /^STORED/, 'a new client stores an item');
  t.match(await cmd('stats'), /STAT threads 4\r\n[\s\S]*STAT curr_items 3\r\n/, 'its 4 worker threads, 3 items');
});

t.test('SQLite in WAL mode: a write transaction open across the dump, committed after the restore', async (t) => {
  const dir = tempDir(t, 'sqlite');
  const script = [
    'import os, sqlite3, sys, time',
    'd = sys.argv[1]',
    "db = sqlite3.connect(os.path.join(d, 'db'), isolation_level=None)",
    "db.execute('pragma journal_mode=wal')",
    "db.execute('create table t (x)')",
    "db.execute('begin')",
    "db.execute('insert into t values (1)')",
    "open(os.path.join(d, 'ready'), 'w').close()",
    "while not os.path.exists(os.path.join(d, 'go')): time.sleep(0.02)",
    "db.execute('insert into t values (2)')",
    "db.execute('commit')",
    "open(os.path.join(d, 'result'), 'w').write(str(db.execute('select sum(x) from t').fetchone()[0]))",
    'time.sleep(1000)',
  ].join('\n');
  const py = await startDetached(['/usr/bin/python3', '-c', script, dir]);
  t.teardown(() => killTree([py]).catch(() => undefined));
  await waitFor('the transaction to be open', () => (existsSync(join(dir, 'ready')) ? true : undefined));
  t.ok(readFileSync(`/proc/${py}/maps`, 'latin1').includes(join(dir, 'db-shm')), 'its WAL index (db-shm) is mapped shared');

  await restoreTree(t, await dumpTree(py, dir));
  const sqlite = (query: string) => spawnSync('sqlite3', [join(dir, 'db'), query], { encoding: 'utf8' }).stdout.trim();
  t.equal(sqlite('select count(*) from t'), '0', 'another connection does not see the uncommitted row');
  writeFileSync(join(dir, 'go'), '');
  t.equal(await waitFor('the commit', () => safe(join(dir, 'result')) || undefined), '3', 'the restored connection commits both rows');
  t.equal(sqlite('select sum(x) from t'), '3', 'which another connection then sees');
});

for (const lazyPages of [false, true]) t.test(`Python multiprocessing: a pool of forked workers, its pipes, its semaphores in /dev/shm${lazyPages ? ' (lazy pages)' : ''}`, async (t) => {
  const dir = tempDir(t, 'multiprocessing');
  const script = [
    'import multiprocessing as mp, os, sys, time',
    'def square(x):',
    '    time.sleep(0.005)',
    '    return x * x',
    "if __name__ == '__main__':",
    '    d = sys.argv[1]',
    "    mp.set_start_method('fork')",
    '    lock = mp.Lock()',
    '    with mp.Pool(3) as pool:',
    "        open(os.path.join(d, 'ready'), 'w').write(str(sum(pool.map(square, range(50)))))",
    "        while not os.path.exists(os.path.join(d, 'go')): time.sleep(0.02)",
    '        with lock:',
    "            open(os.path.join(d, 'result'), 'w').write(str(sum(pool.map(square, range(200)))))",
    '        time.sleep(1000)',
  ].join('\n');
  writeFileSync(join(dir, 'pool.py'), script);
  const py = await startDetached(['/usr/bin/python3', join(dir, 'pool.py'), dir]);
  t.teardown(() => killTree(processTree(py)).catch(() => undefined));
  t.equal(await waitFor('the pool to work', () => safe(join(dir, 'ready')) || undefined), '40425', 'the pool works before the dump');
  const tree = processTree(py);
  t.equal(tree.length, 4, 'a parent and three workers');

  const result = await restoreTree(t, await dumpTree(py, dir), { lazyPages });
  t.equal(result.tasks.length, 4, 'all four restored');
  writeFileSync(join(dir, 'go'), '');
  t.equal(await waitFor('the pool after the restore', () => safe(join(dir, 'result')) || undefined), '2646700', 'the restored pool maps again, under its lock');
  if (lazyPages) await lazyPagesDone(t, result);
});

for (const lazyPages of [false, true]) t.test(`headless Chromium in a PID namespace: its page runs on, and it opens a new tab${lazyPages ? ' (lazy pages)' : ''}`, async (t) => {
  const dir = tempDir(t, 'chromium');
  const port = await freePort();
  writeFileSync(join(dir, 'page.html'), '<title>n0</title><script>let n = 0; setInterval(() => { document.title = "n" + ++n; }, 50);</script>');
  // Its crash handler daemonizes (a double fork): in a PID namespace it is the init's child, in the tree.
  const unshare = spawn(
    'unshare',
    ['--pid', '--fork', '--mount-proc', 'setsid', 'chromium', '--headless=new', '--no-sandbox', '--disable-gpu', `--remote-debugging-port=${port}`, `--user-data-dir=${join(dir, 'profile')}`, `file://${join(dir, 'page.html')}`],
    { stdio: 'ignore' },
  );
  const unshareExited = new Promise((resolve) => unshare.once('exit', resolve));
  let tree: number[] = [];
  // Whatever it has by then: a test failing before `tree` is known must not leave the browser behind.
  t.teardown(async () => {
    await killTree([...new Set([...processTree(unshare.pid!), ...tree, unshare.pid!])]).catch(() => undefined);
    await unshareExited;
  });
  // DevTools' HTTP server keeps connections open: a request of its own per call, closed at its answer's end.
  const devtools = (method: string, path: string) =>
    new Promise<string>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, method, path, agent: false, timeout: 5000 }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => {
          req.destroy();
          resolve(body);
        });
      });
      req.on('error', reject);
      req.on('timeout', () => req.destroy(new Error('no answer from DevTools')));
      req.end();
    });
  const pages = async () => JSON.parse(await devtools('GET', '/json')) as Array<{ title: string; url: string }>;
  const count = async () => {
    const page = (await pages()).find((p) => /^n\d+$/.test(p.title) && p.url.endsWith('page.html'));
    return page ? Number(page.title.slice(1)) : -1;
  };
  await until('the page to count', async () => (await count()) > 5);
  const root = processTree(unshare.pid!)[1]!;
  tree = processTree(root);
  t.ok(tree.length >= 8, `the browser, its zygotes, renderers, utility processes and crash handlers: ${tree.length} processes`);

  const before = await count();
  const imagesDir = await dumpTree(root, dir);
  await unshareExited;
  const result = await restoreTree(t, imagesDir, { lazyPages });
  t.equal(result.tasks.length, tree.length, 'every process restored');
  const restored = await count();
  t.ok(restored >= before, `the page's counter goes on from where it was (${before} before the dump, ${restored} after), not from 0`);
  await until('the page to count on', async () => (await count()) > restored + 5);
  t.pass('and its timer keeps running');
  await devtools('PUT', `/json/new?file://${join(dir, 'page.html')}`);
  await until('a new tab to count', async () => (await pages()).filter((p) => /^n\d+$/.test(p.title)).length >= 2);
  t.pass('a new tab (a new renderer from the restored zygote) runs the page too');
  if (lazyPages) await lazyPagesDone(t, result);
});
