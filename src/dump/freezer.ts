// A tree in a frozen cgroup (criu's --freeze-cgroup; runc gives its container's freezer, and a
// paused container's is frozen): a frozen task does not stop for PTRACE_INTERRUPT until it is
// thawed, so every thread of the cgroup is seized and interrupted while frozen, and only then
// is the cgroup thawed: each thread leaves the freezer straight into its ptrace stop, running
// nothing of its own. A dump that leaves the tree running freezes the cgroup again before it
// lets the threads go, as it was.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import type { TaskControl } from './control.js';

/** The freezer's control file and the values it takes, for cgroup v1 or v2. */
function control(dir: string): { file: string; frozen: string; thawed: string; threads: string } {
  return existsSync(`${dir}/freezer.state`)
    ? { file: `${dir}/freezer.state`, frozen: 'FROZEN', thawed: 'THAWED', threads: `${dir}/tasks` }
    : { file: `${dir}/cgroup.freeze`, frozen: '1', thawed: '0', threads: `${dir}/cgroup.threads` };
}

export function isFrozen(dir: string): boolean {
  const c = control(dir);
  return readFileSync(c.file, 'latin1').trim() === c.frozen;
}

export function setFrozen(dir: string, frozen: boolean): void {
  const c = control(dir);
  writeFileSync(c.file, frozen ? c.frozen : c.thawed);
}

/**
 * Seizes and interrupts every thread of the frozen cgroup `dir`, then thaws it; `seized` gets
 * each thread seized, as it is (the tree's freeze skips their seize and interrupt and waits for
 * their stops; a failure leaves the ones seized so far to be let go).
 */
export async function seizeFrozen(ctl: TaskControl, dir: string, seized: Set<number>): Promise<void> {
  try {
    for (const tid of readFileSync(control(dir).threads, 'latin1').split('\n').filter(Boolean).map(Number)) {
      await ctl.seize(tid);
      seized.add(tid);
      await ctl.interrupt(tid);
    }
  } finally {
    setFrozen(dir, false);
  }
}
