// `crr show DIR`: the checkpoint summary names every task with its comm and shows the pipe that
// links sleep's stdout to cat's stdin; `--json` carries the same facts for scripts.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { summariseCheckpoint } from '../src/cli/commands/show.js';
import { SHARED } from './lib/shared-dir.js';

const crr = fileURLToPath(new URL('../bin/crr.js', import.meta.url));
const PIPE = SHARED + 'fixtures/criu-4.2/pipe';

t.test('crr show DIR on the pipe fixture names its three tasks and the pipe', async (t) => {
  const r = spawnSync(process.execPath, [crr, 'show', PIPE], { encoding: 'utf8' });
  t.equal(r.status, 0, r.stderr);
  t.equal(r.stderr, '');
  const rows = r.stdout.split('\n');
  const row = (pid: number) => rows.find((l) => l.startsWith(`${pid} `)) ?? '';
  t.match(row(17446), /^17446\s+0\s+17446\s+17446\s+17446\s+24\s+.*sh$/);
  t.match(row(17448), /^17448\s+17446\s+17446\s+17446\s+17448\s+\d+\s+.*sleep$/);
  t.match(row(17449), /^17449\s+17446\s+17446\s+17446\s+17449\s+\d+\s+.*cat$/);
  t.match(r.stdout, /task 17448 \(sleep\) fds:\n(?:.*\n)*?\s+1\s+PIPE\s+pipe:\[1092893\]/);
  t.match(r.stdout, /task 17449 \(cat\) fds:\n\s+0\s+PIPE\s+pipe:\[1092893\]/);
  t.match(r.stdout, /\/dev\/null/);
});

t.test('--json summary: tree, memory, fds', async (t) => {
  const r = spawnSync(process.execPath, [crr, 'show', PIPE, '--json'], { encoding: 'utf8' });
  t.equal(r.status, 0, r.stderr);
  const summary = JSON.parse(r.stdout);
  t.same(
    summary.tasks.map((x: { pid: number; ppid: number; comm: string }) => [x.pid, x.ppid, x.comm]),
    [
      [17446, 0, 'sh'],
      [17448, 17446, 'sleep'],
      [17449, 17446, 'cat'],
    ],
  );
  const sleep = summary.tasks[1];
  const cat = summary.tasks[2];
  const sleepOut = sleep.fds.find((f: { fd: number }) => f.fd === 1);
  const catIn = cat.fds.find((f: { fd: number }) => f.fd === 0);
  t.equal(sleepOut.type, 'PIPE');
  t.equal(catIn.type, 'PIPE');
  t.equal(sleepOut.what, catIn.what, 'both ends of one pipe');
  t.not(sleepOut.fileId, catIn.fileId, 'two open file descriptions (read and write end)');
  t.equal(summary.tasks[0].dumpedBytes, 126976, 'sh: pages-1.img worth of memory');
  t.equal(summary.tasks[0].vmas, 24);
});

t.test('summariseCheckpoint on every fixture agrees with pstree', async (t) => {
  const s = summariseCheckpoint(SHARED + 'fixtures/criu-4.2/py-threads');
  t.equal(s.tasks.length, 1);
  t.same(s.tasks[0]!.threads, [17468, 17470, 17471, 17472]);
  t.equal(s.tasks[0]!.comm, 'python3');
  t.equal(s.imgVersion, 2);
});

t.test('show with no argument or a bad option is a usage error', async (t) => {
  let r = spawnSync(process.execPath, [crr, 'show'], { encoding: 'utf8' });
  t.equal(r.status, 2);
  t.match(r.stderr, /usage/);
  r = spawnSync(process.execPath, [crr, 'show', '--frob', PIPE], { encoding: 'utf8' });
  t.equal(r.status, 2);
  r = spawnSync(process.execPath, [crr, 'show', '/nonexistent/x.img'], { encoding: 'utf8' });
  t.equal(r.status, 2);
  t.match(r.stderr, /\/nonexistent\/x\.img.*ENOENT/);
});
