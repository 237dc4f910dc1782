// `node bin/crr.js dump` end to end: --json prints a summary on stdout, stats-dump is written
// (STATS magic, criu's fields), a bad pid exits 3 with one stderr line. Rebuilds dist first
// when it is older than src/dump (tests otherwise run from src).
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startProgram, requestCheck } from './lib/programs.js';
import { readImage } from '../src/images/reader.js';
import { ensureBuilt } from './lib/built.js';

const root = new URL('../', import.meta.url).pathname;

t.before(() => ensureBuilt('dist/dump/index.js', 'src/dump'));

t.test('crr dump --json --leave-running on a running program', async (t) => {
  const prog = await startProgram(t, 'counter');
  const dir = mkdtempSync(join(tmpdir(), 'crr-dump-cli-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const r = spawnSync('node', [join(root, 'bin/crr.js'), 'dump', '-t', String(prog.pid), '-D', dir, '--leave-running', '--json'], { encoding: 'utf8' });
  t.equal(r.status, 0, `exit 0 ${r.stderr}`);
  const summary = JSON.parse(r.stdout);
  t.same(summary.pids, [prog.pid], 'summary: pids');
  t.ok(summary.images.includes('inventory.img') && summary.images.includes('stats-dump'), 'summary: images');
  t.ok(summary.stats.pages_written > 0 && summary.stats.pages_written <= summary.stats.pages_scanned, 'summary: page counts');
  const stats = readImage(join(dir, 'stats-dump')).all() as any[];
  t.equal(stats.length, 1, 'stats-dump: one entry');
  const d = stats[0].dump;
  t.equal(d.pages_written, BigInt(summary.stats.pages_written), 'stats-dump pages_written agrees with the summary');
  t.equal(d.pages_scanned, BigInt(summary.stats.pages_scanned), 'stats-dump pages_scanned agrees');
  t.ok(d.freezing_time > 0 && d.frozen_time > 0, 'times in microseconds');
  t.same([readFileSync(join(dir, 'stats-dump')).readUInt32LE(0), readFileSync(join(dir, 'stats-dump')).readUInt32LE(4)], [0x55105940, 0x57093306], 'service head then the STATS magic');
  const check = await requestCheck(prog.pid, prog.resultFile);
  t.ok(check.pass, `program passes after the dump: ${check.text}`);
});

t.test('crr dump of no such pid: exit 3, one line on stderr, no images', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'crr-dump-cli-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const r = spawnSync('node', [join(root, 'bin/crr.js'), 'dump', '-t', '999999', '-D', dir], { encoding: 'utf8' });
  t.equal(r.status, 3);
  t.match(r.stderr.trim(), /^[^\n]*pid 999999: no such process[^\n]*$/);
  t.same(readdirSync(dir), []);
});
