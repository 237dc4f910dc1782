// A python program for state no C test program holds: it runs its set-up lines, says it is ready,
// waits for its go file, runs its check lines (which write its result file) and sleeps. Started
// outside Node's children (startDetached: libuv would reap their ptrace stops) and killed by PID
// in teardown.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startDetached } from './detached.js';
import { killTree, type Running } from './programs.js';

export interface PythonProgram {
  prog: Running;
  /** Lets the program run its check lines. */
  go(): void;
  /** What the check lines wrote, once they have (or 'no result in 10 s'). */
  result(): Promise<string>;
}

/** `setUp` and `check` are python lines; `modules` are imported besides os, sys and time. */
export async function startPython(t: Tap.Test, modules: string[], setUp: string[], check: string[], ready: string): Promise<PythonProgram> {
  const dir = mkdtempSync(join(tmpdir(), 'crr-python-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const [goFile, resultFile, readyFile] = ['go', 'result', 'ready'].map((f) => join(dir, f)) as [string, string, string];
  const script = [
    `import ${['os', 'sys', 'time', ...modules].join(', ')}`,
    'go, result, ready = sys.argv[1:4]',
    ...setUp,
    'open(ready, "w").close()',
    'while not os.path.exists(go):',
    '    time.sleep(0.02)',
    ...check,
    'time.sleep(1000)',
  ].join('\n');
  const root = await startDetached(['/usr/bin/python3', '-c', script, goFile, resultFile, readyFile]);
  t.teardown(() => killTree([root]));
  for (let i = 0; i < 250 && !existsSync(readyFile); i++) await sleep(20);
  t.ok(existsSync(readyFile), ready);
  return {
    prog: { pid: root, resultFile, dir, tree: () => [root] },
    go: () => writeFileSync(goFile, ''),
    result: async () => {
      for (let i = 0; i < 500 && !(existsSync(resultFile) && readFileSync(resultFile, 'utf8')); i++) await sleep(20);
      return existsSync(resultFile) ? readFileSync(resultFile, 'utf8') : 'no result in 10 s';
    },
  };
}
