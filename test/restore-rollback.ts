// All or nothing: failures injected at every stage (a resource that throws, a busy PID, a helper
// killed at the barrier, a missing mapped file, a corrupt pages file, an abort, a cgroup that
// cannot be entered, FPU state of another CPU) must end in one StageError naming task, resource, stage, syscall and errno,
// with no process of that restore left: every host PID the restore made is checked gone, and
// Node has no helper child left.
import t from 'tap';
import { readdirSync, readFileSync, truncateSync } from 'node:fs';
import { NativeError, StageError } from '../src/errors.js';
import { restore } from '../src/restore/index.js';
import type { RestoreCtx } from '../src/restore/context.js';
import { registry } from '../src/resources/registry.js';
import { STAGES, type ResourceKind, type Stage } from '../src/resources/types.js';
import { alive, copyFixture, rewriteImage } from './lib/restore-images.js';
import { imageKindForFile } from '../src/images/index.js';
import { writeImage } from '../src/images/writer.js';
import { join } from 'node:path';

/** Host PIDs seen by the injected kinds: tasks, the launcher and the root's parent. */
function tracker() {
  const seen = new Set<number>();
  const note = (ctx: RestoreCtx) => {
    for (const runtime of ctx.session.runtimes.values()) if (runtime.hostPid) seen.add(runtime.hostPid);
    if (ctx.session.launcher) seen.add(ctx.session.launcher.hostPid);
    if (ctx.session.rootParent) seen.add(ctx.session.rootParent.hostPid);
  };
  return { seen, note };
}

/** Node's own children that are crr helpers (the launcher): none may outlive a restore. */
function helperChildren(): number[] {
  const out: number[] = [];
  for (const tid of readdirSync('/proc/self/task')) {
    const text = readFileSync(`/proc/self/task/${tid}/children`, 'utf8').trim();
    for (const pid of text ? text.split(/\s+/).map(Number) : []) {
      try {
        if (readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'crr-helper') out.push(pid);
      } catch {
        // gone
      }
    }
  }
  return out;
}

function checkNothingLeft(t: Tap.Test, seen: Set<number>): void {
  t.ok(seen.size > 0, 'the restore made processes');
  for (const pid of seen) t.notOk(alive(pid), `host pid ${pid} is gone`);
  t.same(helperChildren(), [], 'no helper child of Node is left');
}

function failing(stage: Stage, victim: number, note: (ctx: RestoreCtx) => void): ResourceKind<RestoreCtx> {
  return {
    name: `inject-${stage}`,
    stage,
    images: [],
    async restore(ctx) {
      note(ctx);
      if (ctx.pid === victim) throw new NativeError({ code: 'EIO', errno: 5, syscall: 'injected', pid: ctx.pid, detail: `failure injected in ${stage}` });
    },
  };
}

for (const stage of STAGES) {
  t.test(`a failure in stage ${stage} rolls back the whole tree`, async (t) => {
    const dir = copyFixture(t, 'pipe');
    const { seen, note } = tracker();
    const victim = 17448;
    const kinds = [...registry, failing(stage, victim, note)];
    const error = await restore({ imagesDir: dir, pidNamespace: true, kinds }).then(
      () => undefined,
      (e: unknown) => e,
    );
    t.type(error, StageError);
    t.match(error, { stage, pid: victim, resource: `inject-${stage}`, syscall: 'injected', errno: 5, code: 'EIO' });
    t.match((error as Error).message, new RegExp(`stage ${stage}, task ${victim}, resource inject-${stage}, syscall injected \\(EIO\\)`));
    checkNothingLeft(t, seen);
  });
}

t.test('a busy PID fails the fork of that task and rolls back', async (t) => {
  const dir = copyFixture(t, 'sh-loop');
  const { seen, note } = tracker();
  const squat: ResourceKind<RestoreCtx> = {
    name: 'squat-child-pid',
    stage: 'fork',
    images: [],
    after: ['task-tree'],
    async restore(ctx) {
      note(ctx);
      if (ctx.pid !== 17319) return;
      const squatter = await ctx.runtime.helper!.fork({ pid: 17393 });
      seen.add(squatter.hostPid);
    },
  };
  await t.rejects(restore({ imagesDir: dir, pidNamespace: true, kinds: [...registry, squat] }), {
    stage: 'fork',
    pid: 17393,
    resource: 'task-tree',
    syscall: 'clone3',
    code: 'EEXIST',
  });
  checkNothingLeft(t, seen);
});

t.test('a helper killed at the barrier fails the restore and rolls back', async (t) => {
  const dir = copyFixture(t, 'pipe');
  const { seen, note } = tracker();
  const killer: ResourceKind<RestoreCtx> = {
    name: 'kill-helper',
    stage: 'barrier',
    images: [],
    async restore(ctx) {
      note(ctx);
      if (ctx.pid === 17449) process.kill(ctx.runtime.hostPid!, 'SIGKILL');
    },
  };
  // Listed first, so it acts before the barrier kind in the same stage.
  const kinds = [...registry.filter((k) => k.stage !== 'barrier' || k.name !== 'barrier'), killer, ...registry.filter((k) => k.name === 'barrier')];
  const error = await restore({ imagesDir: dir, pidNamespace: true, kinds }).then(() => undefined, (e: unknown) => e);
  t.match(error, { stage: 'barrier', pid: 17449, resource: 'barrier' });
  t.ok((error as StageError).syscall, `names the syscall (${(error as StageError).syscall})`);
  checkNothingLeft(t, seen);
});

t.test('an abort signal during the barrier cancels and rolls back', async (t) => {
  const dir = copyFixture(t, 'pipe');
  const { seen, note } = tracker();
  const controller = new AbortController();
  const kinds = [...registry, { ...failing('task-state', -1, note), name: 'note-pids' }];
  const error = await restore({
    imagesDir: dir,
    pidNamespace: true,
    kinds,
    signal: controller.signal,
    onEvent: (e) => {
      if (e.type === 'step.start' && e.step === 'barrier') controller.abort();
    },
  }).then(() => undefined, (e: unknown) => e);
  t.match(error, { code: 'ECANCELED', message: /cancelled/ });
  checkNothingLeft(t, seen);
});

t.test('a missing mapped file is refused at plan time, before anything starts', async (t) => {
  const dir = copyFixture(t, 'sleep');
  rewriteImage(dir, 'files.img', (entries) =>
    entries.map((e) => {
      const reg = e['reg'] as Record<string, unknown> | undefined;
      return reg?.['name'] === '/usr/lib/locale/C.utf8/LC_CTYPE' ? { ...e, reg: { ...reg, name: '/nonexistent/LC_CTYPE' } } : e;
    }),
  );
  await t.rejects(restore({ imagesDir: dir, pidNamespace: true }), {
    stage: 'plan',
    pid: 17288,
    resource: 'regfile',
    code: 'ENOENT',
    message: /\/nonexistent\/LC_CTYPE .*mapping at 0x/,
  });
  t.same(helperChildren(), [], 'no helper was started');
});

t.test('a file whose size changed is refused unless allowFileMismatch', async (t) => {
  const dir = copyFixture(t, 'sleep');
  rewriteImage(dir, 'files.img', (entries) =>
    entries.map((e) => {
      const reg = e['reg'] as Record<string, unknown> | undefined;
      return reg?.['name'] === '/usr/lib/locale/C.utf8/LC_NUMERIC' ? { ...e, reg: { ...reg, size: 51n } } : e;
    }),
  );
  await t.rejects(restore({ imagesDir: dir, pidNamespace: true, dryRun: true }), {
    stage: 'plan',
    code: 'EFILEMISMATCH',
    message: /LC_NUMERIC .*has size 50, was 51.*--allow-file-mismatch/,
  });
  const result = await restore({ imagesDir: dir, pidNamespace: true, dryRun: true, allowFileMismatch: true });
  t.equal(result.rootPid, 17288, 'accepted with allowFileMismatch');
});

t.test('FPU state of a CPU this one is not (AMX tiles in use) fails the registers and rolls back, naming the components', async (t) => {
  const dir = copyFixture(t, 'sleep');
  rewriteImage(dir, 'core-17288.img', (entries) =>
    entries.map((e) => {
      const info = e['thread_info'] as Record<string, any>;
      const xsave = { ...info['fpregs']['xsave'], xstate_bv: BigInt(info['fpregs']['xsave']['xstate_bv']) | (3n << 17n) };
      return { ...e, thread_info: { ...info, fpregs: { ...info['fpregs'], xsave } } };
    }),
  );
  const { seen, note } = tracker();
  const observer: ResourceKind<RestoreCtx> = { name: 'observe-memory', stage: 'memory', images: [], async restore(ctx) { note(ctx); } };
  await t.rejects(restore({ imagesDir: dir, pidNamespace: true, kinds: [...registry, observer] }), {
    stage: 'finish',
    pid: 17288,
    resource: 'regs',
    message: /XSAVE components this machine's kernel does not offer: AMX tile config, AMX tile data/,
  });
  checkNothingLeft(t, seen);
});

t.test('a corrupt pages file fails the load, before anything starts', async (t) => {
  const dir = copyFixture(t, 'sleep');
  truncateSync(`${dir}/pages-1.img`, 4096);
  await t.rejects(restore({ imagesDir: dir, pidNamespace: true }), { stage: 'load', message: /pages/ });
  t.same(helperChildren(), [], 'no helper was started');
});

t.test('an fd of a kind crr does not restore is refused at plan time, naming task and fd', async (t) => {
  const dir = copyFixture(t, 'sleep');
  rewriteImage(dir, 'fdinfo-2.img', (entries) => entries.map((e) => (e['fd'] === 251 ? { ...e, type: 19 } : e)));
  await t.rejects(restore({ imagesDir: dir, pidNamespace: true, dryRun: true }), {
    stage: 'plan',
    pid: 17288,
    code: 'ENOTSUP',
    message: /not supported: fd 251 is a BPFMAP .*crr restores REG, PIPE/,
  });
});

t.test('a task whose cgroup cannot be entered fails the namespaces stage and rolls back', async (t) => {
  const dir = copyFixture(t, 'sh-loop');
  writeImage(join(dir, 'cgroup.img'), imageKindForFile('cgroup.img')!, [
    { entry: { sets: [{ id: 1, ctls: [] }, { id: 2, ctls: [{ name: 'no-such-controller', path: '/crr-test' }] }], controllers: [] } },
  ]);
  rewriteImage(dir, 'core-17393.img', ([core]) => [{ ...core!, tc: { ...(core!['tc'] as Record<string, unknown>), cg_set: 2 } }]);
  const { seen, note } = tracker();
  const noter: ResourceKind<RestoreCtx> = {
    name: 'note-pids',
    stage: 'fork',
    images: [],
    after: ['task-tree'],
    async restore(ctx) {
      note(ctx);
    },
  };
  await t.rejects(restore({ imagesDir: dir, pidNamespace: true, kinds: [...registry, noter] }), {
    stage: 'namespaces',
    pid: 17393,
    resource: 'cgroups',
    message: /cgroup no-such-controller:\/crr-test: that hierarchy is not mounted here/,
  });
  checkNothingLeft(t, seen);
});
