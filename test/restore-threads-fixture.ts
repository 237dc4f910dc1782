// py-threads (upstream CRIU fixture): the process comes back with its four threads under their
// dumped TIDs, each running again (the counters in /tmp/crr-fixture/py-counts keep growing from
// 29 29 29), restored in a fresh PID namespace and killed and reaped by PID afterwards.
import t from 'tap';
import { mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { restore } from '../src/restore/index.js';
import { alive, copyFixture, pyCounts as counts } from './lib/restore-images.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

t.test('py-threads: four threads with the original TIDs, counters keep growing', async (t) => {
  mkdirSync('/tmp/crr-fixture', { recursive: true });
  rmSync('/tmp/crr-fixture/py-counts', { force: true }); // only the restored process writes it again
  const result = await restore({ imagesDir: copyFixture(t, 'py-threads'), pidNamespace: true });
  t.teardown(() => result.kill());
  const host = result.rootHostPid;
  const tids = readdirSync(`/proc/${host}/task`).map(Number).sort((a, b) => a - b);
  t.equal(tids.length, 4, 'four threads');
  const nsTids = tids.map((tid) => Number(readFileSync(`/proc/${host}/task/${tid}/status`, 'utf8').match(/^NSpid:.*\s(\d+)$/m)?.[1]));
  t.same(nsTids.sort((a, b) => a - b), [17468, 17470, 17471, 17472], 'TIDs as dumped');
  await sleep(600);
  const first = await counts();
  t.equal(first.length, 3);
  t.ok(first.every((n) => n > 29), `counts went on from 29: ${first.join(' ')}`);
  await sleep(800);
  const second = await counts();
  t.ok(second.every((n, i) => n > first[i]!), `and keep growing: ${second.join(' ')}`);
  for (const tid of tids) t.equal(readFileSync(`/proc/${host}/task/${tid}/comm`, 'utf8').trim(), 'python3', `thread ${tid} comm`);
  await result.kill();
  t.notOk(alive(host), 'killed and reaped');
});
