// Test checkpoints for restore tests: copies of an upstream fixture (to damage safely) and
// synthetic trees built from the sleep fixture's per-task images under new PIDs, with a pstree
// that describes sessions, groups and zombies the tests need. Never writes to the fixtures.
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { imageKindForFile, readImage, type Entry } from '../../src/images/index.js';
import { writeImage } from '../../src/images/writer.js';
import { SHARED } from './shared-dir.js';

export const fixturesDir = SHARED + 'fixtures/criu-4.2';
export const repoRoot = fileURLToPath(new URL('../../', import.meta.url));

export interface TeardownHost {
  teardown(fn: () => unknown): void;
}

/** A private copy of a fixture directory, removed when the test ends. */
export function copyFixture(t: TeardownHost, name: string): string {
  const dir = mkdtempSync(join(tmpdir(), `crr-restore-${name}-`));
  for (const file of readdirSync(join(fixturesDir, name))) copyFileSync(join(fixturesDir, name, file), join(dir, file));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export interface SynthTask {
  pid: number;
  ppid: number;
  pgid: number;
  sid: number;
  /** A zombie with this wait status (exit status << 8). */
  zombieStatus?: number;
}

/** Rewrites one image of `dir` through a function of its entries. */
export function rewriteImage(dir: string, name: string, change: (entries: Entry[]) => Entry[]): void {
  const path = join(dir, name);
  const kind = imageKindForFile(name)!;
  const entries = [...readImage(path, kind).entries()].map((lazy) => lazy.decode());
  writeImage(path, kind, change(entries).map((entry) => ({ entry })));
}

/** A checkpoint of `tasks`, each a copy of the sleep fixture's process (same files, memory and fds). */
export function synthTree(t: TeardownHost, tasks: readonly SynthTask[]): string {
  const source = join(fixturesDir, 'sleep');
  const dir = mkdtempSync(join(tmpdir(), 'crr-restore-tree-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const perTask = ['core', 'mm', 'ids', 'fs', 'pagemap'];
  for (const file of readdirSync(source)) {
    if (!perTask.some((prefix) => file.startsWith(`${prefix}-`)) && file !== 'pstree.img') copyFileSync(join(source, file), join(dir, file));
  }
  for (const task of tasks) {
    for (const prefix of perTask) {
      if (task.zombieStatus !== undefined && prefix !== 'core') continue;
      copyFileSync(join(source, `${prefix}-17288.img`), join(dir, `${prefix}-${task.pid}.img`));
    }
    // Each process an address space of its own: one vm_id for two would be CLONE_VM sharing.
    if (task.zombieStatus === undefined) rewriteImage(dir, `ids-${task.pid}.img`, ([ids]) => [{ ...ids!, vm_id: task.pid }]);
    if (task.zombieStatus !== undefined) {
      rewriteImage(dir, `core-${task.pid}.img`, ([core]) => [
        { ...core!, tc: { ...(core!['tc'] as Entry), task_state: 2, exit_code: task.zombieStatus } },
      ]);
    }
  }
  const kind = imageKindForFile('pstree.img')!;
  writeImage(join(dir, 'pstree.img'), kind, tasks.map((task) => ({ entry: { pid: task.pid, ppid: task.ppid, pgid: task.pgid, sid: task.sid, threads: [task.pid] } })));
  return dir;
}

/** NSpid/NSpgid/NSsid (innermost) and PPid of a host PID, from /proc. */
export function procIds(hostPid: number): { pid: number; pgid: number; sid: number; ppidHost: number; state: string; tracer: number } {
  const status = readFileSync(`/proc/${hostPid}/status`, 'utf8');
  const field = (name: string) => status.match(new RegExp(`^${name}:\\s*(.*)$`, 'm'))?.[1]?.trim().split(/\s+/) ?? [];
  const last = (name: string) => Number(field(name).at(-1));
  return {
    pid: last('NSpid'),
    pgid: last('NSpgid'),
    sid: last('NSsid'),
    ppidHost: Number(field('PPid')[0]),
    state: field('State')[0] ?? '?',
    tracer: Number(field('TracerPid')[0]),
  };
}

export function alive(hostPid: number): boolean {
  try {
    readFileSync(`/proc/${hostPid}/stat`);
    return true;
  } catch {
    return false;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** The three counters; the program rewrites the file in place, so a read can catch it half written. */
export async function pyCounts(): Promise<number[]> {
  for (let tries = 0; ; tries++) {
    let text = '';
    try {
      text = readFileSync('/tmp/crr-fixture/py-counts', 'utf8');
    } catch {
      // not written yet
    }
    const n = text.trim().split(/\s+/).filter(Boolean).map(Number);
    if (n.length === 3 || tries >= 50) return n;
    await sleep(20);
  }
}
