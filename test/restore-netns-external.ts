// A container's network namespace, left out of the dump (criu's --external net[INODE]:KEY) and
// given back at restore (externalNamespaces, criu's --inherit-fd fd[N]:KEY): a server in a
// network namespace with a device other than lo (a veth device with an address, as a container
// has) is refused without the option; dumped with it, its images hold the key and no device;
// restored into the same namespace, it answers on that address again. Without the namespace the
// restore is refused at plan time, naming the key.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { dump } from '../src/dump/index.js';
import { CrrError, StageError } from '../src/errors.js';
import { openCheckpoint } from '../src/images/index.js';
import { summariseCheckpoint } from '../src/cli/commands/show.js';
import { restore } from '../src/restore/index.js';
import { startDetached } from './lib/detached.js';
import { makeNetns } from './lib/netns.js';
import { killTree, waitPidGone } from './lib/programs.js';

const ADDRESS = '10.231.0.1';

/** What a client inside the namespace gets from ADDRESS:port. */
function ask(netns: string, port: number): string {
  const client = `import socket; c = socket.create_connection(("${ADDRESS}", ${port}), timeout=5); print(c.recv(100).decode())`;
  const r = spawnSync('/usr/bin/nsenter', [`--net=${netns}`, '/usr/bin/python3', '-c', client], { encoding: 'utf8', timeout: 10_000 });
  return r.status === 0 ? r.stdout.trim() : `failed: ${r.stderr.trim()}`;
}

t.test("a server in a container's network namespace comes back into it, the namespace left out of the dump", async (t) => {
  const netns = makeNetns(t, ADDRESS);
  const dir = mkdtempSync(join(tmpdir(), 'crr-netns-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const portFile = join(dir, 'port');
  const server = [
    'import os, socket, sys',
    'l = socket.socket()',
    `l.bind(("${ADDRESS}", 0))`,
    'l.listen(4)',
    'open(sys.argv[1], "w").write(str(l.getsockname()[1]))',
    'while True:',
    '    c, _ = l.accept()',
    '    c.sendall(b"hello from " + str(os.stat("/proc/self/ns/net").st_ino).encode())',
    // The client closes first: a connection the server closed first would stay in TIME_WAIT on
    // the server's port, and the kernel lets no listener without SO_REUSEADDR bind beside it.
    '    c.recv(1)',
    '    c.close()',
  ].join('\n');
  // nsenter execs the program: its PID is the server's.
  const pid = await startDetached(['/usr/bin/nsenter', `--net=${netns.path}`, '/usr/bin/python3', '-c', server, portFile]);
  t.teardown(() => killTree([pid]));
  for (let i = 0; i < 250 && !(existsSync(portFile) && readFileSync(portFile, 'utf8')); i++) await sleep(20);
  const port = Number(readFileSync(portFile, 'utf8'));
  t.equal(ask(netns.path, port), `hello from ${netns.inode}`, 'the server answers in its namespace before the dump');

  const refusedDir = join(dir, 'refused');
  const refused = await dump({ pid, imagesDir: refusedDir }).catch((e: unknown) => e);
  t.type(refused, CrrError);
  t.match(String(refused), /network namespace has devices other than lo \((eth1, eth0|eth0, eth1)\)/, 'without --external the devices are refused');
  t.match(String(await dump({ pid, imagesDir: refusedDir, external: [`net[${netns.inode + 1}]:extnet`] }).catch((e: unknown) => e)), new RegExp(`--external net\\[${netns.inode + 1}\\]:extnet: the tree's network namespace is net:\\[${netns.inode}\\]`), 'a wrong inode is named');

  const imagesDir = join(dir, 'images');
  await dump({ pid, imagesDir, external: [`net[${netns.inode}]:extnet`] });
  await waitPidGone(pid);
  const checkpoint = openCheckpoint(imagesDir);
  const netnsImage = readdirSync(imagesDir).find((f) => /^netns-\d+\.img$/.test(f));
  t.ok(netnsImage, 'a netns image');
  t.equal(checkpoint.image(netnsImage!).only()['ext_key'], 'extnet', 'holding the key');
  t.notOk(readdirSync(imagesDir).some((f) => f.startsWith('netdev-')), 'and no devices');
  t.match(summariseCheckpoint(imagesDir).namespaces, [/^net: external 'extnet'/], 'crr show and plan name it');

  const missing = await restore({ imagesDir, pidNamespace: true }).catch((e: unknown) => e);
  t.type(missing, StageError);
  t.match(String(missing), /left out of the dump as external 'extnet': name the one to restore into/);

  const result = await restore({ imagesDir, pidNamespace: true, externalNamespaces: { extnet: netns.path } });
  t.teardown(() => result.kill());
  t.equal(statSync(`/proc/${result.rootHostPid}/ns/net`).ino, netns.inode, 'the restored server is in the namespace');
  t.equal(ask(netns.path, port), `hello from ${netns.inode}`, 'and answers on its address there');
});
