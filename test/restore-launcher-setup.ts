// The launcher's set-up (subreaper, the PID-namespace init, its /proc) runs while the images
// decode (src/restore/index.ts): a restore whose decoding fails after that set-up began must
// still leave neither the launcher nor the init it forked behind.
import t from 'tap';
import { existsSync, readFileSync, statSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { restore } from '../src/restore/index.js';
import { copyFixture } from './lib/restore-images.js';

function children(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return []; // gone between the listing and the read
  }
}

async function gone(pid: number): Promise<boolean> {
  for (let i = 0; i < 100; i++) {
    if (!existsSync(`/proc/${pid}`)) return true;
    await sleep(20);
  }
  return false;
}

t.test('a restore whose decoding fails kills the launcher and its namespace init', async (t) => {
  const dir = copyFixture(t, 'sleep');
  const pages = join(dir, 'pages-1.img');
  truncateSync(pages, statSync(pages).size - 4096); // the pagemap now names a page past the end
  // Node's children are the launchers; their children the namespace inits. Watched between the
  // restore's own event-loop turns, which every launcher round trip gives.
  const launchers = new Set<number>();
  const inits = new Set<number>();
  let watching = true;
  const watch = () => {
    for (const launcher of children(process.pid)) {
      launchers.add(launcher);
      for (const init of children(launcher)) inits.add(init);
    }
    if (watching) setImmediate(watch);
  };
  t.teardown(() => {
    for (const pid of [...inits, ...launchers]) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone: what the test expects
      }
    }
  });
  watch();
  await t.rejects(restore({ imagesDir: dir, pidNamespace: true }), { message: /pages/ }, 'the decoding error');
  watching = false;
  t.equal(launchers.size, 1, 'one launcher was spawned');
  t.equal(inits.size, 1, 'its namespace init was forked before the decoding failed');
  for (const pid of [...launchers, ...inits]) t.ok(await gone(pid), `helper ${pid} is gone after the failed restore`);
});
