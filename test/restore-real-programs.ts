// Real programs across a dump and restore, each in a fresh PID namespace, checked from outside as
// a user would check them: a tmux server with a shell on its pty, answering a new tmux client over
// its unix socket with the shell's state kept; a JVM with its 20-odd threads, its counter going on
// from where it was and its garbage collector running after the restore. (PostgreSQL has a file
// of its own: test/restore-postgres.ts.)
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dump } from '../src/dump/index.js';
import { restore } from '../src/restore/index.js';
import { startDetached, safe } from './lib/detached.js';
import { killTree, processTree, waitFor, waitPidGone } from './lib/programs.js';

function tempDir(t: { teardown(fn: () => unknown): void }, name: string): string {
  const dir = mkdtempSync(join(tmpdir(), `crr-${name}-`));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Dumps the tree at `root` (killing it) and waits until its PIDs are free; the images' directory. */
async function dumpTree(root: number, dir: string): Promise<string> {
  const tree = processTree(root);
  const imagesDir = join(dir, 'images');
  await dump({ pid: root, imagesDir });
  for (const pid of tree) await waitPidGone(pid);
  return imagesDir;
}

/** Restores a checkpoint in a fresh PID namespace, killed when the test ends. */
async function restoreTree(t: { teardown(fn: () => unknown): void }, imagesDir: string) {
  const result = await restore({ imagesDir, pidNamespace: true });
  t.teardown(() => result.kill());
  return result;
}

t.test('tmux: the server and its shell, reached by a new client', async (t) => {
  const dir = tempDir(t, 'tmux');
  const sock = join(dir, 'sock');
  const tmux = (...args: string[]) => spawnSync('tmux', ['-S', sock, ...args], { encoding: 'utf8', timeout: 10_000 });
  const screen = () => tmux('capture-pane', '-p', '-t', 's1').stdout;
  t.equal(tmux('new-session', '-d', '-s', 's1', '-x', '80', '-y', '24', 'bash --norc --noprofile').status, 0, 'tmux new-session');
  const server = Number(tmux('display-message', '-p', '-t', 's1', '#{pid}').stdout.trim());
  t.teardown(() => killTree(processTree(server)).catch(() => undefined));
  tmux('send-keys', '-t', 's1', 'X=restored-shell; echo before-$X', 'Enter');
  await waitFor('the shell to answer', () => (screen().includes('before-restored-shell') ? true : undefined));

  const tree = processTree(server);
  const result = await restoreTree(t, await dumpTree(server, dir));
  t.equal(result.tasks.length, tree.length, `the server and its shell (${tree.length} processes)`);
  t.equal(tmux('send-keys', '-t', 's1', 'echo after-$X', 'Enter').status, 0, 'a new client reaches the restored server');
  await waitFor('the restored shell to answer', () => (screen().includes('after-restored-shell') ? true : undefined));
  t.match(screen(), /before-restored-shell[\s\S]*after-restored-shell/, "the pane's earlier lines are there, and the shell kept its variable");
});

const COUNTER = `
import java.lang.management.*;
import java.nio.file.*;
import java.util.*;
import java.util.concurrent.*;
import java.util.concurrent.atomic.*;
public class Counter {
  public static void main(String[] args) throws Exception {
    AtomicLong n = new AtomicLong();
    ExecutorService pool = Executors.newFixedThreadPool(4);
    for (int i = 0; i < 4; i++) pool.submit(() -> { while (true) { n.incrementAndGet(); Thread.sleep(1); } });
    List<byte[]> kept = new ArrayList<>();
    while (true) {
      kept.add(new byte[1 << 20]);
      if (kept.size() > 16) kept.remove(0);
      long gcs = 0;
      for (GarbageCollectorMXBean gc : ManagementFactory.getGarbageCollectorMXBeans()) gcs += gc.getCollectionCount();
      Files.writeString(Paths.get(args[0] + ".tmp"), n.get() + " " + gcs + "\\n");
      Files.move(Paths.get(args[0] + ".tmp"), Paths.get(args[0]), StandardCopyOption.ATOMIC_MOVE);
      Thread.sleep(20);
    }
  }
}
`;

t.test('a JVM: its threads, its counter and its garbage collector', async (t) => {
  const dir = tempDir(t, 'jvm');
  writeFileSync(join(dir, 'Counter.java'), COUNTER);
  const javac = spawnSync('javac', ['-d', dir, join(dir, 'Counter.java')], { encoding: 'utf8' });
  t.equal(javac.status, 0, `javac: ${javac.stderr}`);
  const out = join(dir, 'out');
  const read = () => {
    const [count, gcs] = safe(out).trim().split(' ').map(Number);
    return count === undefined || gcs === undefined || Number.isNaN(gcs) ? undefined : { count, gcs };
  };
  const jvm = await startDetached(['java', '-Xmx48m', '-XX:+UseSerialGC', '-cp', dir, 'Counter', out]);
  t.teardown(() => killTree([jvm]).catch(() => undefined));
  await waitFor('the JVM to count and collect', () => {
    const r = read();
    return r && r.count > 0 && r.gcs > 0 ? r : undefined;
  });
  const threads = readdirSync(`/proc/${jvm}/task`).length;

  const imagesDir = await dumpTree(jvm, dir);
  const atDump = read()!;
  const result = await restoreTree(t, imagesDir);
  const restored = result.hostPids.get(jvm)!;
  t.equal(readdirSync(`/proc/${restored}/task`).length, threads, `all ${threads} threads back`);
  const later = await waitFor('the restored JVM to count on and collect again', () => {
    const r = read();
    return r && r.count > atDump.count && r.gcs > atDump.gcs ? r : undefined;
  });
  t.ok(later.count > atDump.count, `its counter went on from ${atDump.count} to ${later.count}, not from 0`);
  t.ok(later.gcs > atDump.gcs, `its collector ran again (${atDump.gcs} to ${later.gcs} collections)`);
  t.match(readFileSync(`/proc/${restored}/status`, 'utf8'), /State:\s+S/, 'and it is running (sleeping between steps), not stopped or dead');
});
