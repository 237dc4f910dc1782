// `crr restore -d` run as a process of its own after a crr dump of a self-checking test program
// (docs/TEST-PROGRAMS.md): crr exits, and the tree must go on without its tracer or launcher, not a
// zombie, not stopped, not traced, and pass its own check. Every process is killed by PID.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { dumpProgram } from './lib/program-roundtrip.js';
import { killTree, processTree, requestCheck, startProgram } from './lib/programs.js';

interface Case {
  name: string;
  args: string[];
  checkMs: number;
}

// The programs an earlier report found dead, zombie or silent after `crr restore -d`.
const CASES: Case[] = [
  { name: 'syscall-wait', args: ['nanosleep'], checkMs: 20_000 },
  { name: 'sigstate', args: [], checkMs: 20_000 },
  { name: 'threads', args: ['8'], checkMs: 20_000 },
  { name: 'counter', args: [], checkMs: 20_000 },
];
const only = process.env['CRR_RT_ONLY'];
const label = (c: Case) => [c.name, ...c.args].join(' ');

/** crr ARGS from src through tap's TypeScript loader, in a process of its own. */
function crrCli(args: string[]): { status: number | null; stderr: string } {
  const root = fileURLToPath(new URL('..', import.meta.url));
  const loader = new URL('../node_modules/@tapjs/typescript/dist/esm/import.mjs', import.meta.url).href;
  const script = `import { main } from ${JSON.stringify(join(root, 'src/cli/main.ts'))}; process.exitCode = await main(process.argv.slice(1));`;
  const r = spawnSync('node', [`--import=${loader}`, '--input-type=module', '-e', script, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, stderr: r.stderr };
}

for (const c of CASES) {
  if (only && !label(c).includes(only)) continue;
  t.test(`${label(c)}: crr restore -d (the CLI as its own process) leaves it running`, async (t) => {
    const prog = await startProgram(t, c.name, c.args);
    const dumpedPids = prog.tree();
    const imagesDir = await dumpProgram(t, prog);
    const pidfile = join(imagesDir, 'restored.pid');
    t.teardown(() => killTree(dumpedPids));
    const r = crrCli(['restore', '-d', '-D', imagesDir, '--pidfile', pidfile]);
    t.equal(r.status, 0, `crr restore -d exits 0 ${r.stderr.trim()}`);
    t.equal(Number(readFileSync(pidfile, 'utf8')), prog.pid, 'the pidfile names the root');
    const stat = readFileSync(`/proc/${prog.pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ');
    t.not(stat[0], 'Z', 'the root is not a zombie');
    t.not(stat[0], 't', 'the root is not in a tracing stop');
    t.equal(readFileSync(`/proc/${prog.pid}/status`, 'utf8').match(/TracerPid:\s+(\d+)/)?.[1], '0', 'nobody traces it');
    const numeric = (a: number, b: number) => a - b;
    t.same(processTree(prog.pid).sort(numeric), [...dumpedPids].sort(numeric), 'its whole tree is back at its PIDs');
    const check = await requestCheck(prog.pid, prog.resultFile, c.checkMs).catch((e: Error) => ({ pass: false, text: e.message }));
    t.equal(check.text, 'PASS', `${label(c)} checks itself after crr restore -d`);
  });
}
