// Files of the tree's own /proc/PID directories held open (program procfd: its own
// /proc/self/stat, its child's /proc/PID/status, as a supervisor holds them). A task's directory
// exists once the restore has made it: at its old PID, or, restored into a PID namespace of its
// own, in the /proc crr mounts for the tree there, under its PID in that namespace.
import t from 'tap';
import { readlinkSync } from 'node:fs';
import { restore } from '../src/restore/index.js';
import { dumpProgram } from './lib/program-roundtrip.js';
import { requestCheck, startProgram } from './lib/programs.js';

for (const pidNamespace of [true, false]) {
  t.test(`procfd restored ${pidNamespace ? 'into a PID namespace of its own' : 'at its PIDs'}: its /proc files are its own and its child's`, async (t) => {
    const prog = await startProgram(t, 'procfd');
    const imagesDir = await dumpProgram(t, prog);
    const result = await restore({ imagesDir, pidNamespace });
    t.teardown(() => result.kill());
    const host = result.rootHostPid;
    t.equal(readlinkSync(`/proc/${host}/fd/30`), `/proc/${prog.pid}/stat`, `fd 30 is /proc/${prog.pid}/stat again`);
    t.equal((await requestCheck(host, prog.resultFile)).text, 'PASS', "procfd reads its own stat at fd 30 and its child's status at fd 31");
  });
}
