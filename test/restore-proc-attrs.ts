// The child subreaper flag, oom_score_adj and the audit loginuid (src/resources/proc-attrs.ts):
// a program that set them comes back with them, and an orphan below it is reparented to it, not
// to init; a task whose oom_score_adj is below crr's own is kept at crr's, with a warning; the
// parent-death signal, not armed by a detached restore.
import t from 'tap';
import { existsSync, readFileSync } from 'node:fs';
import { dumpProgram, restoreProgram } from './lib/program-roundtrip.js';
import { startPython } from './lib/python-program.js';
import { restore } from '../src/restore/index.js';
import { oomWarnings } from '../src/resources/proc-attrs.js';
import type { RestoreSession } from '../src/restore/context.js';

t.test('a supervisor that is a child subreaper, with an oom_score_adj of its own, comes back with both', async (t) => {
  const setUp = [
    'libc = ctypes.CDLL(None)',
    'libc.prctl(36, 1, 0, 0, 0)', // PR_SET_CHILD_SUBREAPER
    'open("/proc/self/oom_score_adj", "w").write("500")',
  ];
  const check = [
    'flag = ctypes.c_int(0)',
    'libc.prctl(37, ctypes.byref(flag), 0, 0, 0)', // PR_GET_CHILD_SUBREAPER
    // An orphan: a child forks a grandchild and exits; the grandchild reports its new parent.
    'r, w = os.pipe()',
    'if os.fork() == 0:',
    '    if os.fork() == 0:',
    '        time.sleep(0.3)',
    '        os.write(w, str(os.getppid()).encode())',
    '        os._exit(0)',
    '    os._exit(0)',
    'os.wait()',
    'adopter = int(os.read(r, 20))',
    'os.wait()',
    'open(result, "w").write(repr([flag.value, open("/proc/self/oom_score_adj").read().strip(), adopter == os.getpid()]))',
  ];
  const { prog, go, result } = await startPython(t, ['ctypes'], setUp, check, 'a subreaper with oom_score_adj 500');
  const imagesDir = await dumpProgram(t, prog);
  await restoreProgram(t, prog, imagesDir);
  go();
  t.equal(await result(), "[1, '500', True]", 'PR_GET_CHILD_SUBREAPER 1, oom_score_adj 500, the orphan came to it');
});

t.test("a job of a login session (its loginuid set) keeps its loginuid, which crr's helpers do not have", async (t) => {
  const own = readFileSync('/proc/self/loginuid', 'latin1').trim();
  t.not(own, '1234', "crr's own loginuid (every helper's) is another: the restored task's is the restore's doing");
  // A task may set its own loginuid once while it is unset.
  const setUp = ['open("/proc/self/loginuid", "w").write("1234")'];
  const check = ['open(result, "w").write(open("/proc/self/loginuid").read().strip())'];
  const { prog, go, result } = await startPython(t, [], setUp, check, 'a task of login session 1234');
  const imagesDir = await dumpProgram(t, prog);
  await restoreProgram(t, prog, imagesDir);
  go();
  t.equal(await result(), '1234', 'loginuid 1234 after the restore');
});

// The parent-death signal (PR_SET_PDEATHSIG): kept where crr stays the root's parent; a detached
// restore's launcher exits once the tree runs, which would send it, so there it is not armed.
for (const detached of [false, true]) {
  t.test(`a task with a parent-death signal, restored ${detached ? 'detached: runs on, the signal not armed, with a warning' : 'with crr its parent: keeps it'}`, async (t) => {
    const setUp = ['libc = ctypes.CDLL(None)', 'libc.prctl(1, 15, 0, 0, 0)']; // PR_SET_PDEATHSIG SIGTERM
    const check = ['signal = ctypes.c_int(-1)', 'libc.prctl(2, ctypes.byref(signal), 0, 0, 0)', 'open(result, "w").write(str(signal.value))']; // PR_GET_PDEATHSIG
    const { prog, go, result } = await startPython(t, ['ctypes'], setUp, check, 'a task whose parent-death signal is SIGTERM');
    const imagesDir = await dumpProgram(t, prog);
    if (detached) {
      const warnings: string[] = [];
      await restore({ imagesDir, detached: true, onWarning: (w) => warnings.push(w) });
      t.match(warnings, [new RegExp(`^task ${prog.pid}: its parent-death signal \\(15\\) is not armed: a detached restore`)], 'the plan says so');
      go();
      t.equal(await result(), '0', 'PR_GET_PDEATHSIG 0');
      t.ok(existsSync(`/proc/${prog.pid}`) && !/State:\s+Z/.test(readFileSync(`/proc/${prog.pid}/status`, 'utf8')), 'it runs on after crr let it go');
    } else {
      await restoreProgram(t, prog, imagesDir);
      go();
      t.equal(await result(), '15', 'PR_GET_PDEATHSIG SIGTERM');
    }
  });
}

t.test('an oom_score_adj below crr\'s own is named in a warning', async (t) => {
  const session = { images: new Map([[7, { core: { tc: { oom_score_adj: -1000 } } }], [8, { core: { tc: { oom_score_adj: 100 } } }]]) } as unknown as RestoreSession;
  t.match(oomWarnings(session), [/^task 7: oom_score_adj -1000 is below crr's own \(-?\d+\); lowering it needs CAP_SYS_RESOURCE/], 'only the one below');
});
