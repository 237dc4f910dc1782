// Tests of the self-checking test programs themselves, with no dump involved: each one, left
// alone, must PASS its own check; with each CRR_SELFTEST_BREAK kind it must FAIL, naming what
// differed. This is what makes a PASS after a restore mean something.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { killTree, processTree, requestCheck, startProgram, waitPidGone } from './lib/programs.js';

interface ProgramCase {
  name: string;
  args: string[];
  breaks: Record<string, RegExp>;
}

const cases: ProgramCase[] = [
  {
    name: 'mem-pattern',
    args: [],
    breaks: {
      content: /anonymous pattern differs/,
      maps: /maps differs/,
      file: /file mapping page 3 \(clean\)/,
      heap: /heap block differs/,
      shared: /shared anonymous region differs/,
    },
  },
  { name: 'threads', args: [], breaks: { ymm: /ymm registers/, tls: /TLS value/, tid: /thread 0 tid/, sched: /thread 0 scheduling policy 0 priority 0 nice 6, expected 0 0 1/ } },
  { name: 'threads', args: ['16'], breaks: { ymm: /ymm registers/ } },
  { name: 'syscall-wait', args: ['read'], breaks: { result: /read returned/ } },
  { name: 'syscall-wait', args: ['nanosleep', '1'], breaks: { result: /nanosleep ended after/ } },
  { name: 'syscall-wait', args: ['futex'], breaks: { result: /futex word is 2/ } },
  { name: 'syscall-wait', args: ['waitpid'], breaks: { result: /child status/ } },
  {
    name: 'fds',
    args: [],
    breaks: {
      offset: /fd 7 offset 101/,
      flags: /fd 513 status flags/,
      cloexec: /fd 513 FD_CLOEXEC/,
      'extra-fd': /unexpected fd 300/,
      shared: /not one file description/,
    },
  },
  {
    name: 'sigstate',
    args: [],
    breaks: {
      mask: /blocked signal mask/,
      action: /signal 1 action/,
      rlimit: /rlimit 7 is 300/,
      umask: /umask 022/,
      cwd: /cwd is/,
      comm: /comm 'renamed'/,
      altstack: /sigaltstack/,
      personality: /personality/,
    },
  },
  { name: 'tree', args: [], breaks: { pgid: /F1 \(pid \d+\)/, sid: /E4 \(pid \d+\)/, zombie: /zombie/ } },
  { name: 'counter', args: [], breaks: { memory: /counter in memory is/ } },
  { name: 'procfd', args: [], breaks: { other: /fd 31 is not C's status/ } },
  { name: 'mlock', args: [], breaks: { unlock: /the locked region is not locked/ } },
  { name: 'hugepages', args: [], breaks: { content: /pattern differs/, advice: /no longer advised/ } },
  { name: 'inetsk', args: [], breaks: { port: /fd 20 \(T4\): address differs/, option: /fd 20 \(T4\): SO_REUSEADDR is 0, was 1/, buflock: /fd 25 \(TC\): SO_BUF_LOCK is 1, was 0/ } },
  { name: 'lazy-ops', args: [], breaks: { content: /forked child found region A wrong/ } },
];

function parentOf(pid: number): number {
  const m = /^PPid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : -1;
}

for (const c of cases) {
  const label = [c.name, ...c.args].join(' ');
  t.test(`${label}: passes its own check when left alone`, async (t) => {
    const p = await startProgram(t, c.name, c.args);
    t.not(parentOf(p.pid), process.pid, 'not a child of the test process');
    const r = await requestCheck(p.pid, p.resultFile);
    t.equal(r.text, 'PASS', 'check result');
  });
  for (const [kind, detail] of Object.entries(c.breaks)) {
    t.test(`${label}: fails with CRR_SELFTEST_BREAK=${kind}`, async (t) => {
      const p = await startProgram(t, c.name, c.args, { env: { CRR_SELFTEST_BREAK: kind } });
      const r = await requestCheck(p.pid, p.resultFile);
      t.equal(r.pass, false, 'reports FAIL');
      t.match(r.text, /^FAIL /);
      t.match(r.text, detail, 'names what differed');
    });
  }
}

t.test('an unknown break kind is refused at start', async (t) => {
  await t.rejects(startProgram(t, 'fds', [], { env: { CRR_SELFTEST_BREAK: 'no-such-kind' } }), /unknown CRR_SELFTEST_BREAK/);
});

t.test('tree: 20 processes, a zombie, and teardown helpers leave nothing', async (t) => {
  const p = await startProgram(t, 'tree');
  const pids = p.tree();
  t.equal(pids.length, 20, 'the whole tree is visible from the root');
  const states = pids.map((pid) => readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '')[0]);
  t.equal(states.filter((s) => s === 'Z').length, 1, 'exactly one zombie');
  const sessions = new Set(pids.map((pid) => readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ')[3]));
  t.equal(sessions.size, 3, 'three sessions');
  await killTree(pids);
  for (const pid of pids) t.notOk(processTree(pid).length, `pid ${pid} is gone`);
});

t.test('waitPidGone rejects for a process that stays', async (t) => {
  const p = await startProgram(t, 'counter');
  await t.rejects(waitPidGone(p.pid, 100), /still exists/);
});

t.test('counter: keeps counting while it waits', async (t) => {
  const p = await startProgram(t, 'counter');
  await new Promise((resolve) => setTimeout(resolve, 2200));
  const lines = readFileSync(`${p.resultFile}.out`, 'utf8').trim().split('\n');
  t.ok(lines.length >= 2, `wrote ${lines.length} lines`);
  t.same(lines, lines.map((_, i) => String(i + 1)), 'lines are 1..N');
  const r = await requestCheck(p.pid, p.resultFile);
  t.equal(r.text, 'PASS');
});
