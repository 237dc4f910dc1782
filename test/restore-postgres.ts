// A real server across a dump and restore: Debian's PostgreSQL 15, run as a container runs it (its
// postmaster pid 1 of a PID namespace with IPC and mount namespaces of its own, as user postgres):
// shared memory of three kinds (an anonymous shared mapping, a SysV segment, POSIX shm in
// /dev/shm), each process's signalfd and epoll latch, a logger process on a pipe, a unix and a TCP
// listener. A client outside the tree (psql) holds a TCP connection across it (--tcp-established)
// and goes on with its session; new connections, writes and a checkpoint work on the restored
// server, and it shuts down cleanly.
import t from 'tap';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chownSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dump } from '../src/dump/index.js';
import { openCheckpoint } from '../src/images/index.js';
import { restore } from '../src/restore/index.js';
import { killTree, processTree, waitFor, waitPidGone } from './lib/programs.js';

const BIN = '/usr/lib/postgresql/15/bin';
const USER = ['setpriv', '--reuid=postgres', '--regid=postgres', '--init-groups'];

function idOf(flag: '-u' | '-g'): number {
  const r = spawnSync('id', [flag, 'postgres'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`no user postgres (scripts/setup.sh installs postgresql): ${r.stderr}`);
  return Number(r.stdout.trim());
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** psql over the unix socket in `dir`: its output, or an Error with its stderr. */
function sql(dir: string, port: number, ...commands: string[]): string {
  const r = spawnSync('psql', ['-h', dir, '-p', String(port), '-U', 'postgres', '-At', ...commands.flatMap((c) => ['-c', c])], { encoding: 'utf8', timeout: 20_000 });
  if (r.status !== 0) throw new Error(`psql ${commands.join('; ')}: ${r.stderr}`);
  return r.stdout.trim();
}

/** A psql session kept open over TCP: send one query, read its one line of output. */
function client(port: number): { child: ChildProcess; ask(query: string): Promise<string> } {
  const child = spawn('psql', ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-At'], { stdio: ['pipe', 'pipe', 'pipe'] });
  const lines: string[] = [];
  let buffered = '';
  const onData = (chunk: Buffer) => {
    buffered += chunk.toString('utf8');
    const parts = buffered.split('\n');
    buffered = parts.pop()!;
    lines.push(...parts);
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  return {
    child,
    async ask(query) {
      child.stdin!.write(`${query}\n`);
      return waitFor(`psql's answer to ${query}`, () => lines.shift(), 20_000);
    },
  };
}

t.test('PostgreSQL in namespaces of its own, with a client connected over TCP', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'crr-postgres-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  chownSync(dir, idOf('-u'), idOf('-g'));
  const data = join(dir, 'data');
  const init = spawnSync(USER[0]!, [...USER.slice(1), `${BIN}/initdb`, '-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync', '--no-instructions'], { encoding: 'utf8' });
  t.equal(init.status, 0, `initdb: ${init.stderr}`);
  const port = await freePort();

  // unshare stays outside the tree as the PID namespace's parent; the postmaster is its pid 1.
  const unshare = spawn(
    'unshare',
    ['--ipc', '--pid', '--mount-proc', '--fork', 'setsid', ...USER, `${BIN}/postgres`, '-D', data, '-k', dir, '-c', 'listen_addresses=127.0.0.1', '-c', `port=${port}`, '-c', 'logging_collector=on'],
    { stdio: 'ignore' },
  );
  const unshareExited = new Promise((resolve) => unshare.once('exit', resolve));
  let tree: number[] = [];
  t.teardown(async () => {
    await killTree([...tree, unshare.pid!]).catch(() => undefined);
    await unshareExited;
  });
  await waitFor('the server to answer', () => {
    try {
      return sql(dir, port, 'select 1') === '1' || undefined;
    } catch {
      return undefined;
    }
  });
  const postmaster = processTree(unshare.pid!)[1]!;
  sql(dir, port, 'create table t (n int, word text)', "insert into t select n, 'w' || n from generate_series(1, 50000) n");

  const session = client(port);
  t.teardown(() => {
    session.child.kill('SIGKILL');
  });
  t.equal(await session.ask("select 'before', count(*), sum(n) from t;"), 'before|50000|1250025000', 'the client asks before the dump');
  tree = processTree(postmaster);
  t.ok(tree.length >= 6, `postmaster, its workers, the logger and the client's backend: ${tree.length} processes`);

  const imagesDir = join(dir, 'images');
  await dump({ pid: postmaster, imagesDir, tcpEstablished: true });
  for (const pid of tree) await waitPidGone(pid);
  await unshareExited;
  const checkpoint = openCheckpoint(imagesDir);
  const images = [...checkpoint.imageFiles.keys()];
  t.ok(images.some((n) => n.startsWith('ipcns-shm')), 'the SysV segment is in the images');
  t.ok(images.some((n) => n.startsWith('pagemap-shmem-')), 'so is the anonymous shared memory');

  const result = await restore({ imagesDir, pidNamespace: true });
  t.teardown(() => result.kill());
  t.equal(result.tasks.length, tree.length, 'every process restored');
  t.equal(await session.ask("select 'after', count(*), sum(n) from t;"), 'after|50000|1250025000', "the client's connection goes on");
  t.equal(await session.ask("insert into t values (50001, 'kept');"), 'INSERT 0 1', 'it writes');
  t.equal(await session.ask('select word from t where n = 50001;'), 'kept', 'and reads what it wrote');
  t.equal(sql(dir, port, 'checkpoint', 'select count(*) from t'), 'CHECKPOINT\n50001', 'a new connection sees it; a checkpoint runs');

  // A fast shutdown: every process of the restored server exits by itself.
  process.kill(result.rootHostPid, 'SIGINT');
  t.same(await result.wait(), { exitCode: 0, signal: null }, 'the postmaster exits 0');
  for (const pid of result.hostPids.values()) await waitPidGone(pid, 20_000);
  const logs = readdirSync(join(data, 'log')).map((f) => readFileSync(join(data, 'log', f), 'utf8')).join('');
  t.match(logs, /database system is shut down/, 'the server says it shut down cleanly');
});
