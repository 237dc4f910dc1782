// Dump -> kill -> restore of a self-checking test program, for the shared-resource tests: the
// program is started through the runner, dumped by crr (the dump kills it), its PIDs are waited
// free, and the tree is restored with those PIDs; the caller then asks it to check itself.
// Every restored process is killed and reaped by PID on teardown.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dump } from '../../src/dump/index.js';
import { restore, type RestoreResult } from '../../src/restore/index.js';
import { startProgram, waitPidGone, type Running, type StartOptions } from './programs.js';

export interface RoundTrip {
  program: Running;
  imagesDir: string;
  /** Pids the dump saw (the program's tree). */
  pids: number[];
  result: RestoreResult;
}

/** Starts `name`, dumps it into a fresh directory (the tree is killed) and restores it. */
export async function roundTrip(t: Tap.Test, name: string, args: string[] = [], options: StartOptions = {}): Promise<RoundTrip> {
  const program = await startProgram(t, name, args, options);
  const imagesDir = mkdtempSync(join(tmpdir(), `crr-rt-${name}-`));
  t.teardown(() => rmSync(imagesDir, { recursive: true, force: true }));
  const dumped = await dump({ pid: program.pid, imagesDir });
  for (const pid of dumped.pids) await waitPidGone(pid);
  const result = await restore({ imagesDir });
  t.teardown(() => result.kill());
  return { program, imagesDir, pids: dumped.pids, result };
}
