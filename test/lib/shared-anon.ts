// Round trips for the issue-6 kinds' tests: start a self-checking program, crr dump it (killing
// it), restore it inside a fresh PID namespace, ask it to check itself; plus readers of the
// images it left. Every process is killed and reaped by PID at teardown.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dump } from '../../src/dump/index.js';
import { readImage } from '../../src/images/reader.js';
import { restore } from '../../src/restore/index.js';
import { requestCheck, startProgram, waitPidGone, type CheckResult } from './programs.js';

export interface Trip {
  pid: number;
  dir: string;
  resultFile: string;
  /** The restored program's answer (undefined with restore: false). */
  check?: CheckResult;
}

interface TapLike {
  teardown(fn: () => unknown): void;
}

export async function roundTrip(t: TapLike, program: string, opts: { restore?: boolean; args?: string[]; env?: Record<string, string>; restoreDelayMs?: number } = {}): Promise<Trip> {
  const prog = await startProgram(t, program, opts.args ?? [], { env: opts.env });
  const dir = mkdtempSync(join(tmpdir(), `crr-shared-${program}-`));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const pids = prog.tree();
  await dump({ pid: prog.pid, imagesDir: dir });
  for (const pid of pids) await waitPidGone(pid);
  const trip: Trip = { pid: prog.pid, dir, resultFile: prog.resultFile };
  if (opts.restore === false) return trip;
  if (opts.restoreDelayMs) await new Promise((resolve) => setTimeout(resolve, opts.restoreDelayMs));
  const restored = await restore({ imagesDir: dir, pidNamespace: true });
  t.teardown(() => restored.kill());
  trip.check = await requestCheck(restored.rootHostPid, prog.resultFile, 20_000);
  return trip;
}

const img = (dir: string, name: string) => readImage(join(dir, name)).all() as any[];

/** fdinfo entries of one task. */
export function fdsOfTask(dir: string, pid: number): Array<{ id: number; flags: number; type: number; fd: number }> {
  const ids = img(dir, `ids-${pid}.img`)[0];
  return img(dir, `fdinfo-${ids.files_id}.img`);
}

/** files.img entries by id. */
export function filesOfType(dir: string): Map<number, any> {
  return new Map(img(dir, 'files.img').map((f) => [f.id, f]));
}
