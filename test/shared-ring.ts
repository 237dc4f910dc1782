// The busy tree (issue 6): 50 processes pass numbered messages flat out around a ring of pipes,
// stream and seqpacket socketpairs (test/programs/ring.c), and the ring is dumped and restored
// mid-flight three times in a row (twice at its own PIDs, then in a fresh PID namespace). After
// each restore every member checks that its in-link gave it exactly the next message every time
// (nothing lost, duplicated, reordered or damaged) and that messages still flow, and the root
// gathers the 50 answers. Every process is killed and reaped by PID on teardown.
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dump } from '../src/dump/index.js';
import { openCheckpoint } from '../src/images/index.js';
import { restore } from '../src/restore/index.js';
import { killTree, requestCheck, startProgram, waitPidGone } from './lib/programs.js';

const MEMBERS = 50;
const CHECK_MS = 40_000;

t.test('ring: self-check passes, every break fails', async (t) => {
  const p = await startProgram(t, 'ring', ['12']);
  t.same(await requestCheck(p.pid, p.resultFile, CHECK_MS), { pass: true, text: 'PASS' });
  t.same(await requestCheck(p.pid, p.resultFile, CHECK_MS), { pass: true, text: 'PASS' }, 'a second round passes too');
  for (const kind of ['drop', 'dup']) {
    const b = await startProgram(t, 'ring', ['12'], { env: { CRR_SELFTEST_BREAK: kind } });
    const r = await requestCheck(b.pid, b.resultFile, CHECK_MS);
    t.notOk(r.pass, `break ${kind} fails`);
    t.match(r.text, /member 8: link 7 gave message \d+, wanted \d+/, `break ${kind} names the link: ${r.text}`);
  }
});

t.test('ring of 50: dumped and restored mid-flight 3 times, no message lost, duplicated or reordered', async (t) => {
  const p = await startProgram(t, 'ring', [String(MEMBERS)]);
  const pids = p.tree();
  t.equal(pids.length, MEMBERS, `${MEMBERS} processes`);
  t.teardown(() => killTree(pids));
  t.same(await requestCheck(p.pid, p.resultFile, CHECK_MS), { pass: true, text: 'PASS' }, 'passes before any dump');
  let previous: Awaited<ReturnType<typeof restore>> | undefined;
  for (const cycle of [1, 2, 3]) {
    const imagesDir = mkdtempSync(join(tmpdir(), `crr-ring-${cycle}-`));
    t.teardown(() => rmSync(imagesDir, { recursive: true, force: true }));
    const dumped = await dump({ pid: p.pid, imagesDir });
    t.equal(dumped.pids.length, MEMBERS, `dump ${cycle}: every member`);
    // The dump killed the tree; a restored one is reaped by its launcher (a subreaper) in kill().
    if (previous) await previous.kill();
    for (const pid of dumped.pids) await waitPidGone(pid);
    if (cycle === 1) {
      const checkpoint = openCheckpoint(imagesDir);
      const queued = [...checkpoint.image('pipes-data.img').entries()].reduce((n, e) => n + Number(e.decode()['bytes']), 0);
      const packets = checkpoint.has('sk-queues.img') ? [...checkpoint.image('sk-queues.img').entries()].length : 0;
      t.ok(queued % 16 === 0, `dump ${cycle}: pipes hold whole messages (${queued} bytes)`);
      t.ok(queued + packets > 0, `dump ${cycle}: messages were in flight (${queued} pipe bytes, ${packets} socket packets)`);
    }
    const inNamespace = cycle === 3;
    const result = await restore({ imagesDir, pidNamespace: inNamespace });
    t.teardown(() => result.kill()); // SIGKILLs and reaps every restored task by PID
    previous = result;
    t.equal(result.tasks.length, MEMBERS, `restore ${cycle}: ${MEMBERS} tasks`);
    const r = await requestCheck(result.rootHostPid, p.resultFile, CHECK_MS).catch((e: Error) => ({ pass: false, text: e.message }));
    t.same(r, { pass: true, text: 'PASS' }, `restore ${cycle}${inNamespace ? ' (fresh PID namespace)' : ''}: every member saw every message in order`);
    if (!r.pass) break;
  }
});
