// Programs started outside Node's own children (setsid -f: init is their parent, so libuv never
// reaps them and the dumper may trace them), and a /proc reader that treats a gone file as empty.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/** The file's text, or '' when it cannot be read (a task that exited meanwhile). */
export function safe(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

/** Starts argv (through sh, which execs it) in its own session with init as parent; its PID. */
export async function startDetached(argv: string[]): Promise<number> {
  const pidFile = join(mkdtempSync(join(tmpdir(), 'crr-pid-')), 'pid');
  spawnSync('setsid', ['-f', 'sh', '-c', 'echo $$ > "$0"; shift; exec "$@" </dev/null >/dev/null 2>&1', pidFile, 'x', ...argv]);
  for (let i = 0; i < 100 && !safe(pidFile).trim(); i++) await sleep(10);
  await sleep(200);
  return Number(safe(pidFile).trim());
}
