// Tests that run the real CLI (`node bin/crr.js`) run dist/, not src/: rebuild dist first when
// the file they need is older than the sources it comes from.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

export const repoRoot = new URL('../../', import.meta.url).pathname;

function newest(dir: string): number {
  let m = 0;
  for (const n of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, n.name);
    m = Math.max(m, n.isDirectory() ? newest(p) : statSync(p).mtimeMs);
  }
  return m;
}

/** Runs tsc when `distFile` (relative to the repo) is missing or older than anything under `srcDir`. */
export function ensureBuilt(distFile: string, srcDir: string): void {
  const built = join(repoRoot, distFile);
  if (!existsSync(built) || statSync(built).mtimeMs < newest(join(repoRoot, srcDir))) {
    spawnSync('npx', ['tsc', '-p', '.'], { cwd: repoRoot, stdio: 'ignore' }); // type errors elsewhere still emit
  }
}
