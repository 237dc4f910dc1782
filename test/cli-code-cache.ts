// The CLI runs dist-cjs/ (the CommonJS copy of dist/) with a V8 code cache: the first command
// writes it, later ones use it without rewriting it, a module whose file changed or a damaged
// file is compiled afresh and replaced, entries of files that are gone are dropped,
// CRR_NO_CODE_CACHE=1 writes nothing, and `crr restore` has saved it by the time it says
// "restored". Every restored process is killed and reaped by PID.
import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { codeCacheFile, encodeCodeCache, readCodeCache } from '../src/cli/code-cache.js';
import { alive, copyFixture } from './lib/restore-images.js';
import { waitFor } from './lib/programs.js';
import { SHARED } from './lib/shared-dir.js';

const crr = fileURLToPath(new URL('../bin/crr.js', import.meta.url));
const PIPE = SHARED + 'fixtures/criu-4.2/pipe';

function cacheHome(t: { teardown(fn: () => void): void }): NodeJS.ProcessEnv {
  const home = mkdtempSync(join(tmpdir(), 'crr-code-cache-'));
  t.teardown(() => rmSync(home, { recursive: true, force: true }));
  return { ...process.env, XDG_CACHE_HOME: home, CRR_NO_CODE_CACHE: undefined };
}

function show(env: NodeJS.ProcessEnv) {
  return spawnSync(process.execPath, [crr, 'show', PIPE], { encoding: 'utf8', env });
}

const entryFor = (file: string, module: string) => [...readCodeCache(file)].find(([name]) => name.endsWith(module));

t.test('the first command writes the cache; the next uses it and leaves it as it is', async (t) => {
  const env = cacheHome(t);
  const file = codeCacheFile(env);
  const first = show(env);
  t.equal(first.status, 0, first.stderr);
  t.ok(existsSync(file), 'cache written');
  t.ok(entryFor(file, '/dist-cjs/cli/commands/show.js'), 'it holds the CommonJS copy of the show command');
  t.ok(entryFor(file, '/dist-cjs/images/reader.js'), 'and the modules that command loaded');
  const bytes = readFileSync(file);
  const written = statSync(file).mtimeMs;

  const second = show(env);
  t.equal(second.status, 0, second.stderr);
  t.equal(second.stdout, first.stdout, 'same output from cached code');
  t.equal(statSync(file).mtimeMs, written, 'every module found usable cached data: nothing rewritten');
  t.same(readFileSync(file), bytes);
});

t.test('a module whose file changed since the cache was written is compiled afresh', async (t) => {
  const env = cacheHome(t);
  const file = codeCacheFile(env);
  const first = show(env);
  t.equal(first.status, 0, first.stderr);
  const [name, entry] = entryFor(file, '/dist-cjs/cli/commands/show.js')!;
  // The same data under another size and time: as after an edit that kept the file's length,
  // which V8's own check would not notice.
  const entries = readCodeCache(file);
  entries.set(name, { stamp: '1:0', data: entry.data });
  writeFileSync(file, encodeCodeCache(entries));

  const second = show(env);
  t.equal(second.status, 0, second.stderr);
  t.equal(second.stdout, first.stdout);
  t.equal(entryFor(file, '/dist-cjs/cli/commands/show.js')![1].stamp, entry.stamp, 'the entry is replaced by one for the file as it is');
});

t.test('entries of files that are gone or changed are dropped when the cache is next written', async (t) => {
  const env = cacheHome(t);
  const file = codeCacheFile(env);
  t.equal(show(env).status, 0);
  const entries = readCodeCache(file);
  const [, some] = [...entries][0]!;
  entries.set('/nonexistent/checkout/dist-cjs/cli/main.js', some);
  const [showJs, showEntry] = entryFor(file, '/dist-cjs/cli/commands/show.js')!;
  entries.set(showJs, { stamp: '1:0', data: showEntry.data }); // makes this run write the file
  writeFileSync(file, encodeCodeCache(entries));

  t.equal(show(env).status, 0);
  const names = [...readCodeCache(file).keys()];
  t.notOk(names.includes('/nonexistent/checkout/dist-cjs/cli/main.js'), 'the entry of a file that is gone is dropped');
  t.ok(names.includes(showJs), 'the rest stay');
});

t.test('a damaged cache file is ignored and replaced', async (t) => {
  const env = cacheHome(t);
  const file = codeCacheFile(env);
  t.equal(show(env).status, 0);
  writeFileSync(file, Buffer.from('\xff\xff\xff\x7fnot a cache'));
  const r = show(env);
  t.equal(r.status, 0, r.stderr);
  t.equal(r.stderr, '');
  t.ok(entryFor(file, '/dist-cjs/cli/commands/show.js'), 'a readable cache again');
});

t.test('CRR_NO_CODE_CACHE=1 neither reads nor writes a cache', async (t) => {
  const env = { ...cacheHome(t), CRR_NO_CODE_CACHE: '1' };
  const r = show(env);
  t.equal(r.status, 0, r.stderr);
  t.notOk(existsSync(codeCacheFile(env)));
});

t.test('crr restore has saved the cache when it says "restored", while it still waits for the tree', async (t) => {
  const env = cacheHome(t);
  const file = codeCacheFile(env);
  const dir = copyFixture(t, 'sleep');
  const child = spawn(process.execPath, [crr, 'restore', '-D', dir, '--pid-namespace', '--pidfile', 'restore.pid'], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let root = 0;
  t.teardown(async () => {
    for (const pid of [root, child.pid!]) {
      try {
        if (pid > 0) process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    await exited;
    if (root > 0) await waitFor('the restored root to be reaped', () => (alive(root) ? undefined : true));
  });
  root = await waitFor('the "restored" line', () => Number(/restored 1 task\(s\), root pid (\d+)/.exec(stderr)?.[1]) || undefined, 60_000);
  t.equal(child.exitCode, null, 'crr still waits for the tree');
  t.ok(entryFor(file, '/dist-cjs/restore/index.js'), 'the restore modules are in the cache');
  t.ok(entryFor(file, '/dist-cjs/machines/restore.js'));
  process.kill(root, 'SIGKILL');
  t.equal(await exited, 128 + 9, 'crr exits with the killed root\'s status');
});
