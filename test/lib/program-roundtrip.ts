// Round trip of a self-checking test program: crr dump (the program is killed), wait until its
// PIDs are free, restore() in a fresh PID namespace, then ask the restored program to check
// itself. Everything restored is killed and reaped by PID in t.teardown.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dump, type DumpOptions } from '../../src/dump/index.js';
import { restore, type RestoreOptions, type RestoreResult } from '../../src/restore/index.js';
import { requestCheck, waitPidGone, type Running } from './programs.js';

interface Host {
  teardown(fn: () => unknown): void;
}

export interface RoundTrip {
  imagesDir: string;
  result: RestoreResult;
  /** SIGUSR1 to the restored root (by its host PID) and its PASS/FAIL answer. */
  check(timeoutMs?: number): Promise<{ pass: boolean; text: string }>;
}

/**
 * Dumps `prog` (killing it; `options` more for dump(), such as tcpEstablished) into a temp dir
 * kept until the test ends, and waits until its PIDs are free.
 */
export async function dumpProgram(t: Host, prog: Running, options: Partial<Omit<DumpOptions, 'pid' | 'imagesDir' | 'leaveRunning'>> = {}): Promise<string> {
  const imagesDir = mkdtempSync(join(tmpdir(), 'crr-roundtrip-'));
  t.teardown(() => rmSync(imagesDir, { recursive: true, force: true }));
  const pids = prog.tree();
  await dump({ ...options, pid: prog.pid, imagesDir });
  for (const pid of pids) await waitPidGone(pid);
  return imagesDir;
}

/** `options`: more for restore() (onSpan, say) beside the images and the fresh PID namespace. */
export async function restoreProgram(t: Host, prog: Running, imagesDir: string, options: Partial<RestoreOptions> = {}): Promise<RoundTrip> {
  const result = await restore({ ...options, imagesDir, pidNamespace: true });
  t.teardown(() => result.kill());
  return { imagesDir, result, check: (ms) => requestCheck(result.rootHostPid, prog.resultFile, ms) };
}

export async function roundTrip(t: Host, prog: Running): Promise<RoundTrip> {
  return restoreProgram(t, prog, await dumpProgram(t, prog));
}
