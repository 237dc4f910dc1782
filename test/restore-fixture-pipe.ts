// The upstream `pipe` fixture (sh -c 'sleep | cat': three tasks) through the shared-fds stage:
// restored in a fresh PID namespace, sleep's stdout and cat's stdin are the two ends of one pipe
// (same pipe inode, read end in cat, write end in sleep), fd 251 is one write-only description in
// all three tasks, and `crr plan --format json` names sleep as the creator and cat as the receiver.
import t from 'tap';
import { readFileSync, readlinkSync } from 'node:fs';
import { buildPlan } from '../src/plan/plan.js';
import { renderPlan } from '../src/plan/render.js';
import { registry } from '../src/resources/registry.js';
import { restore } from '../src/restore/index.js';
import { loadCheckpoint } from '../src/restore/load.js';
import { alive, copyFixture, fixturesDir } from './lib/restore-images.js';

const fdLink = (host: number, fd: number) => readlinkSync(`/proc/${host}/fd/${fd}`);
const fdFlags = (host: number, fd: number) => parseInt(/^flags:\s*(\d+)/m.exec(readFileSync(`/proc/${host}/fdinfo/${fd}`, 'utf8'))![1]!, 8);
const [SH, SLEEP, CAT] = [17446, 17448, 17449];

t.test('crr plan --format json: one creator and one receiver of the sleep|cat pipe', async (t) => {
  // What `crr plan -D DIR --format json` prints, from the same functions the command calls.
  const { tasks, checkpoint, images } = await loadCheckpoint(`${fixturesDir}/pipe`);
  const out = renderPlan(buildPlan(registry, tasks, { checkpoint, images }), 'json');
  const plan = JSON.parse(out) as { sharedObjects: Array<{ kind: string; id: string; creator: number; receivers: number[] }> };
  const pipes = plan.sharedObjects.filter((o) => o.kind === 'pipe');
  t.same(pipes.find((o) => o.id === '1092893'), { kind: 'pipe', id: '1092893', creator: SLEEP, receivers: [CAT] });
  t.same(pipes.find((o) => o.id === '1091022'), { kind: 'pipe', id: '1091022', creator: SH, receivers: [SLEEP, CAT] });
});

t.test('restore: one pipe between sleep and cat, one description at fd 251', async (t) => {
  const dir = copyFixture(t, 'pipe');
  const result = await restore({ imagesDir: dir, pidNamespace: true });
  t.teardown(() => result.kill());
  const host = (pid: number) => result.hostPids.get(pid)!;
  t.match(fdLink(host(SLEEP), 1), /^pipe:\[\d+\]$/, "sleep's stdout is a pipe");
  t.equal(fdLink(host(SLEEP), 1), fdLink(host(CAT), 0), "sleep's stdout and cat's stdin are one pipe");
  t.equal(fdFlags(host(SLEEP), 1) & 3, 1, 'write end in sleep');
  t.equal(fdFlags(host(CAT), 0) & 3, 0, 'read end in cat');
  const shared = [SH, SLEEP, CAT].map((pid) => fdLink(host(pid), 251));
  t.equal(new Set(shared).size, 1, `fd 251 is one pipe in all three tasks (${shared.join(', ')})`);
  t.not(shared[0], fdLink(host(SLEEP), 1), 'and not the sleep|cat pipe');
  for (const pid of [SH, SLEEP, CAT]) t.equal(fdFlags(host(pid), 251) & 3, 1, `fd 251 of ${pid} is write-only`);
  const hosts = [...result.hostPids.values()];
  await result.kill();
  for (const h of hosts) t.notOk(alive(h), `host pid ${h} is gone after kill`);
});
