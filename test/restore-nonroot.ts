// A tree that runs as a user other than root (as most jobs do): the counter started as uid
// 65534, gid 65534 with no groups and no capabilities, dumped and restored in a fresh PID
// namespace, runs on as that user with the same capabilities and passes its own check.
import t from 'tap';
import { chmodSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { dump } from '../src/dump/index.js';
import { restore } from '../src/restore/index.js';
import { safe, startDetached } from './lib/detached.js';
import { buildPrograms, programPath, requestCheck, waitPidGone } from './lib/programs.js';

const credLines = (pid: number) => readFileSync(`/proc/${pid}/status`, 'latin1').split('\n').filter((l) => /^(Uid|Gid|Groups|Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs):/.test(l));

t.test('a tree running as uid 65534 is restored as that user and runs on', async (t) => {
  buildPrograms();
  const dir = mkdtempSync(join(tmpdir(), 'crr-nonroot-'));
  chmodSync(dir, 0o777); // the counter writes its files there as uid 65534
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const resultFile = join(dir, 'result');
  const pid = await startDetached(['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', programPath('counter'), resultFile, join(dir, 'out')]);
  t.teardown(async () => {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
    await waitPidGone(pid);
  });
  for (let i = 0; i < 200 && !safe(resultFile).startsWith('READY'); i++) await sleep(20);
  const before = credLines(pid);
  t.match(before.join('\n'), /^Uid:\t65534\t65534\t65534\t65534\nGid:\t65534\t65534\t65534\t65534\nGroups:\s*\n[^]*CapEff:\t0000000000000000/, 'running as uid 65534 without capabilities');
  const images = join(dir, 'images');
  await dump({ pid, imagesDir: images });
  await waitPidGone(pid);
  const result = await restore({ imagesDir: images, pidNamespace: true });
  t.teardown(() => result.kill());
  t.same(credLines(result.rootHostPid), before, 'uids, gids, groups and capabilities as before');
  t.same(await requestCheck(result.rootHostPid, resultFile), { pass: true, text: 'PASS' }, 'the counter ran on and its file holds 1..N');
});
