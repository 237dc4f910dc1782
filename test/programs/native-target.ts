// Test support (no tests here): compiles stub-target.c once and starts copies of it as
// grandchildren of the test process (through `sh -c 'target & wait'`), because libuv reaps the
// ptrace stops of Node's own children. Every target is killed and its pid waited for by stop().
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../', import.meta.url));
let binary: string | undefined;

export function targetBinary(): string {
  if (binary) return binary;
  const out = join(mkdtempSync(join(tmpdir(), 'crr-stub-target-')), 'stub-target');
  const r = spawnSync('gcc', ['-O2', '-Wall', '-I', join(root, 'native/stub'), '-o', out,
    join(root, 'test/programs/stub-target.c')], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`gcc failed: ${r.stderr}`);
  binary = out;
  return out;
}

export interface Target {
  pid: number;
  scratch: bigint;
  sh: ChildProcess;
  /** Resolves with the next line the target writes after its first one. */
  nextLine(timeoutMs?: number): Promise<string>;
  stop(): Promise<void>;
}

export function pidGone(pid: number): boolean {
  if (!existsSync(`/proc/${pid}`)) return true;
  try {
    return /^\d+ \(.*\) [ZX]/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true;
  }
}

export async function waitGone(pid: number, timeoutMs = 5000): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (pidGone(pid)) return true;
    await new Promise((r) => setTimeout(r, 10));
  }
  return pidGone(pid);
}

export async function startTarget(): Promise<Target> {
  const sh = spawn('sh', ['-c', '"$0" & wait', targetBinary()], { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines: string[] = [];
  const waiters: Array<(l: string) => void> = [];
  let partial = '';
  sh.stdout!.setEncoding('utf8').on('data', (d: string) => {
    partial += d;
    let i;
    while ((i = partial.indexOf('\n')) >= 0) {
      const line = partial.slice(0, i);
      partial = partial.slice(i + 1);
      const w = waiters.shift();
      if (w) w(line);
      else lines.push(line);
    }
  });
  const nextLine = (timeoutMs = 5000) =>
    new Promise<string>((resolve, reject) => {
      const l = lines.shift();
      if (l !== undefined) return resolve(l);
      const timer = setTimeout(() => reject(new Error('target wrote nothing')), timeoutMs);
      waiters.push((line) => {
        clearTimeout(timer);
        resolve(line);
      });
    });
  const shExited = new Promise<void>((r) => sh.once('exit', () => r()));
  const first = await nextLine();
  const [pidText, addrText] = first.trim().split(' ');
  const pid = Number(pidText);
  const stop = async () => {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
    await waitGone(pid);
    sh.kill('SIGKILL');
    await shExited;
    // The killed target stays a zombie until whoever inherits it from sh reaps it, a moment later;
    // until then its pid answers ptrace with EPERM, not the ESRCH of a pid that is free.
    for (let i = 0; i < 500 && existsSync(`/proc/${pid}`); i++) await new Promise((r) => setTimeout(r, 10));
  };
  return { pid, scratch: BigInt(`0x${addrText}`), sh, nextLine, stop };
}
