// Cgroup membership across a dump and restore: the counter program moved into cgroups of its own
// (pids v1 with pids.max 77, memory v1 with a 64 MiB limit, a v2 one) is dumped; the directories
// are removed; the restore makes them again with those limits and puts the task back in them.
import t from 'tap';
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { cgroupMounts, parseCgroupFile } from '../src/cgroup-fs.js';
import { openCheckpoint } from '../src/images/index.js';
import { underNewRoot } from '../src/resources/cgroups.js';
import { dumpProgram, restoreProgram } from './lib/program-roundtrip.js';
import { startProgram } from './lib/programs.js';

const mounts = cgroupMounts();
const own = parseCgroupFile(readFileSync('/proc/self/cgroup', 'latin1'));
const MIB64 = String(64 << 20);

/** A hierarchy's path for this test, under crr's own cgroup there, and where it is mounted. */
function testCgroup(name: string): { name: string; path: string; dir: string } | undefined {
  const mount = mounts.get(name);
  const base = own.find((m) => m.name === name)?.path;
  if (mount === undefined || base === undefined) return undefined;
  const path = `${base.replace(/\/$/, '')}/crr-test-${process.pid}`;
  return { name, path, dir: `${mount}${path}` };
}

/** rmdir once the cgroup is empty (its tasks are being reaped). */
async function removeWhenEmpty(dir: string): Promise<void> {
  for (let i = 0; i < 200 && existsSync(dir); i++) {
    try {
      rmdirSync(dir);
    } catch {
      await sleep(20);
    }
  }
}

t.test('a task in cgroups of its own comes back in them; missing ones are made with their limits', async (t) => {
  const groups = ['pids', 'memory', ''].map(testCgroup).filter((g) => g !== undefined);
  t.ok(groups.length >= 2, `cgroup hierarchies to use: ${groups.map((g) => g.name || 'v2').join(', ')}`);
  for (const g of groups) {
    mkdirSync(g.dir);
    t.teardown(() => removeWhenEmpty(g.dir));
  }
  const pids = groups.find((g) => g.name === 'pids');
  const memory = groups.find((g) => g.name === 'memory');
  if (pids) writeFileSync(`${pids.dir}/pids.max`, '77');
  if (memory) writeFileSync(`${memory.dir}/memory.limit_in_bytes`, MIB64);

  const prog = await startProgram(t, 'counter');
  for (const g of groups) writeFileSync(`${g.dir}/cgroup.procs`, String(prog.pid));
  const imagesDir = await dumpProgram(t, prog);
  const image = openCheckpoint(imagesDir).image('cgroup.img').only() as { sets: Array<{ id: number; ctls: Array<{ name: string; path: string }> }> };
  const core = openCheckpoint(imagesDir).image(`core-${prog.pid}.img`).only() as { tc: { cg_set: number } };
  const set = image.sets.find((s) => s.id === core.tc.cg_set)!;
  t.not(core.tc.cg_set, 1, "the task's cgroup set is not crr's");
  for (const g of groups) t.ok(set.ctls.some((m) => m.name === g.name && m.path === g.path), `cgroup.img: ${g.name || 'v2'}:${g.path}`);

  for (const g of groups) await removeWhenEmpty(g.dir);
  t.ok(groups.every((g) => !existsSync(g.dir)), 'the directories are gone before the restore');
  const rt = await restoreProgram(t, prog, imagesDir);
  const now = parseCgroupFile(readFileSync(`/proc/${rt.result.rootHostPid}/cgroup`, 'latin1'));
  for (const g of groups) t.ok(now.some((m) => m.name === g.name && m.path === g.path), `restored into ${g.name || 'v2'}:${g.path}`);
  if (pids) t.equal(readFileSync(`${pids.dir}/pids.max`, 'latin1').trim(), '77', 'the made pids cgroup has its pids.max');
  if (memory) t.equal(readFileSync(`${memory.dir}/memory.limit_in_bytes`, 'latin1').trim(), MIB64, 'the made memory cgroup has its limit');
  t.same(await rt.check(), { pass: true, text: 'PASS' }, 'the program carries on');
  await rt.result.kill();
});

t.test('new cgroup roots (criu --cgroup-root): a path below the root task\'s goes below the new root', async (t) => {
  const rootTask = [{ name: 'memory', path: '/ctr-a' }, { name: 'pids', path: '/' }, { name: '', path: '/ctr-a' }];
  const roots = [{ controller: 'memory', path: '/ctr-b' }, { path: '/all/' }];
  t.same(underNewRoot({ name: 'memory', path: '/ctr-a' }, rootTask, roots), { name: 'memory', path: '/ctr-b' }, 'the root task\'s own cgroup');
  t.same(underNewRoot({ name: 'memory', path: '/ctr-a/worker' }, rootTask, roots), { name: 'memory', path: '/ctr-b/worker' }, 'one below it');
  t.same(underNewRoot({ name: 'memory', path: '/ctr-ab' }, rootTask, roots), { name: 'memory', path: '/ctr-ab' }, 'a sibling whose name starts the same stays');
  t.same(underNewRoot({ name: 'pids', path: '/x' }, rootTask, roots), { name: 'pids', path: '/all/x' }, 'a root task at / puts everything below the new root; a root without a controller is every hierarchy\'s');
  t.same(underNewRoot({ name: '', path: '/ctr-a' }, rootTask, [{ controller: '', path: '/v2' }]), { name: '', path: '/v2' }, 'v2 by its empty name');
  t.same(underNewRoot({ name: 'cpu', path: '/ctr-a' }, rootTask, roots), { name: 'cpu', path: '/ctr-a' }, 'a hierarchy the root task has no cgroup of stays');
});
