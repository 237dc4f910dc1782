// restore({ launcher }): a launcher spawned before the restore modules loaded (the CLI does this
// to overlap its spawn with the imports) belongs to restore() from the call on: a dry run or a
// restore that fails before the plan step must not leave that helper process behind.
import t from 'tap';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { restore } from '../src/restore/index.js';
import { prestartLauncher } from '../src/restore/launcher.js';
import { copyFixture } from './lib/restore-images.js';

/** True once the process is gone (killed and reaped), false if it is still there after 2 s. */
async function gone(pid: number): Promise<boolean> {
  for (let i = 0; i < 100; i++) {
    if (!existsSync(`/proc/${pid}`)) return true;
    await sleep(20);
  }
  return false;
}

async function earlyLauncher(t: Tap.Test) {
  const early = prestartLauncher();
  const helper = await early;
  t.teardown(() => {
    try {
      process.kill(helper.hostPid, 'SIGKILL');
    } catch {
      // already gone: what the test expects
    }
  });
  t.ok(existsSync(`/proc/${helper.hostPid}`), 'the early launcher runs');
  return { early, pid: helper.hostPid };
}

t.test('a dry run destroys the launcher it was given', async (t) => {
  const dir = copyFixture(t, 'sleep');
  const { early, pid } = await earlyLauncher(t);
  // pidNamespace: the fixture's PID (17288) may be any other process's here; the check of it is not this test's.
  const result = await restore({ imagesDir: dir, dryRun: true, pidNamespace: true, launcher: early });
  t.equal(result.tasks.length, 1);
  t.ok(await gone(pid), `launcher ${pid} is gone after the dry run`);
});

t.test('a restore that fails at load destroys the launcher it was given', async (t) => {
  const dir = copyFixture(t, 'sleep');
  rmSync(join(dir, 'core-17288.img'));
  const { early, pid } = await earlyLauncher(t);
  await t.rejects(restore({ imagesDir: dir, launcher: early }));
  t.ok(await gone(pid), `launcher ${pid} is gone after the failed restore`);
});
