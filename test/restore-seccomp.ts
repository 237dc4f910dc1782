// seccomp and no_new_privs across a dump and restore: a filter chain (two stacked filters, with
// no_new_privs, in two threads) and strict mode (a child that may only read and write). The
// images hold what CRIU writes (seccomp.img filters linked by prev, thread cores naming their
// newest filter); the restored programs find their filters and strict mode in force.
import t from 'tap';
import { join } from 'node:path';
import { readImage } from '../src/images/reader.js';
import { SeccompFilters } from '../src/dump/seccomp.js';
import { filterChain } from '../src/resources/seccomp.js';
import { requestCheck, startProgram } from './lib/programs.js';
import { dumpProgram, restoreProgram } from './lib/program-roundtrip.js';

const img = (dir: string, name: string) => readImage(join(dir, name)).all() as any[];

t.test('filter table: chains share their common filters, prev links lead back oldest first', async (t) => {
  const table = new SeccompFilters();
  const f = (n: number) => ({ filter: Buffer.alloc(8, n), flags: 0 });
  const a = table.add([f(1), f(2)]);
  const b = table.add([f(1), f(2)]);
  const c = table.add([f(1), f(3)]);
  t.equal(a, b, 'the same chain is stored once');
  t.not(a, c);
  const filters = (table.image().seccomp_filters as any[]).map((e) => ({ filter: Buffer.from(e.filter), prev: e.prev, flags: 0 }));
  t.equal(filters.length, 3, 'three distinct filters');
  t.same(filterChain(filters, c).map((x) => x.filter[0]), [1, 3], 'chain of c, oldest first');
  t.throws(() => filterChain([{ filter: Buffer.alloc(8), prev: 0, flags: 0 }], 0), /loops/);
});

t.test('the self-check notices a changed filter chain and a dead strict child', async (t) => {
  for (const [mode, kind] of [['filter', 'filter'], ['strict', 'child']] as const) {
    const prog = await startProgram(t, 'seccomp', [mode], { env: { CRR_SELFTEST_BREAK: kind } });
    const r = await requestCheck(prog.pid, prog.resultFile);
    t.notOk(r.pass, `${mode}, break ${kind}: ${r.text}`);
  }
  for (const mode of ['filter', 'strict']) {
    const prog = await startProgram(t, 'seccomp', [mode]);
    const r = await requestCheck(prog.pid, prog.resultFile);
    t.ok(r.pass, `${mode} passes undamaged: ${r.text}`);
  }
});

t.test('filter mode and no_new_privs survive dump and restore', async (t) => {
  const prog = await startProgram(t, 'seccomp', ['filter']);
  const dir = await dumpProgram(t, prog);
  const threads = img(dir, 'pstree.img')[0].threads as number[];
  t.equal(threads.length, 2, 'two threads');
  const filters = img(dir, 'seccomp.img')[0].seccomp_filters as any[];
  t.equal(filters.length, 2, 'seccomp.img: the two filters once, although two threads carry them');
  for (const tid of threads) {
    const tc = img(dir, `core-${tid}.img`)[0].thread_core;
    t.equal(tc.seccomp_mode === 'filter' || tc.seccomp_mode === 2, true, `thread ${tid}: filter mode`);
    t.ok(tc.creds.no_new_privs, `thread ${tid}: no_new_privs`);
    const chain = filterChain(filters.map((f) => ({ filter: Buffer.from(f.filter), prev: f.prev, flags: 0 })), tc.seccomp_filter);
    t.same(chain.map((f) => f.filter.length / 8), [6, 6], `thread ${tid}: a chain of two 6-instruction filters`);
  }
  const rt = await restoreProgram(t, prog, dir);
  const r = await rt.check();
  t.equal(r.text.trim(), 'PASS', 'the restored threads are filtered as before');
});

t.test('strict mode survives dump and restore', async (t) => {
  const prog = await startProgram(t, 'seccomp', ['strict']);
  const dir = await dumpProgram(t, prog);
  const pstree = img(dir, 'pstree.img');
  t.equal(pstree.length, 2, 'parent and strict child');
  const child = pstree.find((e) => e.ppid !== 0)!;
  const tc = img(dir, `core-${child.pid}.img`)[0].thread_core;
  t.ok(tc.seccomp_mode === 'strict' || tc.seccomp_mode === 1, 'the child core says strict');
  const rt = await restoreProgram(t, prog, dir);
  const r = await rt.check();
  t.equal(r.text.trim(), 'PASS', 'the restored child is still in strict mode');
});

t.test('a dump with --leave-running leaves filters and strict mode in force', async (t) => {
  const { mkdtempSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { dump } = await import('../src/dump/index.js');
  for (const mode of ['filter', 'strict']) {
    const prog = await startProgram(t, 'seccomp', [mode]);
    const dir = mkdtempSync(join(tmpdir(), 'crr-seccomp-running-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    await dump({ pid: prog.pid, imagesDir: dir, leaveRunning: true });
    const r = await requestCheck(prog.pid, prog.resultFile);
    t.equal(r.text.trim(), 'PASS', `${mode}: the program survived the injected syscalls and is still confined`);
  }
});
