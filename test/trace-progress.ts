// The live progress line: silent unless the stream is a terminal and output is not --json, one
// line rewritten in place (\r + erase), throttled, MB/s from how fast bytes grow, erased by done(),
// and restoreProgress counting a task once per step (memory ends with its finish stage).
import t from 'tap';
import { Writable } from 'node:stream';
import { createProgress, formatProgress, restoreProgress } from '../src/cli/progress.js';

function fakeStream(isTTY: boolean) {
  const writes: string[] = [];
  const stream = Object.assign(new Writable({ write: (chunk, _enc, done) => (writes.push(String(chunk)), done()) }), { isTTY, columns: 80 });
  return { stream, writes };
}

t.test('quiet when not a terminal or with --json', async (t) => {
  for (const [isTTY, enabled] of [[false, true], [true, false]] as const) {
    const { stream, writes } = fakeStream(isTTY);
    const progress = createProgress({ stream, enabled });
    progress.update({ step: 'fork', tasksDone: 1 });
    progress.done();
    await new Promise((resolve) => setImmediate(resolve));
    t.same(writes, [], `isTTY=${isTTY} enabled=${enabled}: nothing written`);
    t.equal(progress.enabled, false);
  }
});

t.test('one line, rewritten in place, throttled, with MB/s', async (t) => {
  const { stream, writes } = fakeStream(true);
  let clock = 0;
  const progress = createProgress({ stream, label: 'restore', intervalMs: 100, now: () => clock });
  progress.update({ step: 'memory', tasksDone: 0, tasksTotal: 4, bytes: 0 });
  clock = 50;
  progress.update({ tasksDone: 1, bytes: 10e6 }); // inside the interval: not drawn
  clock = 1000;
  progress.update({ tasksDone: 2, pages: 4883, bytes: 20e6 });
  progress.done();
  await new Promise((resolve) => setImmediate(resolve));
  t.equal(writes.length, 3, 'first draw, one throttled-through update, the erase');
  t.ok(writes.every((w) => w.startsWith('\r\x1b[K')), 'every write rewrites the same line');
  t.notOk(writes.some((w) => w.includes('\n')), 'never a new line');
  t.equal(writes[1], '\r\x1b[Krestore · memory · tasks 2/4 · pages 4883 · 19.1 MiB · 20.0 MB/s');
  t.equal(writes[2], '\r\x1b[K', 'done() erases the line');
});

t.test('restoreProgress counts each task once per step', async (t) => {
  const seen: Array<{ step?: string; tasksDone?: number }> = [];
  const hooks = restoreProgress({ enabled: true, update: (f) => void seen.push({ ...f }), done: () => undefined }, 2);
  hooks.onEvent({ type: 'step.start', step: 'memory' });
  for (const stage of ['memory', 'threads', 'finish']) for (const pid of [1, 2]) hooks.onEvent({ type: 'task.stage', stage, pid } as never);
  hooks.onSpan({ bytes: 8192 });
  t.same(seen.filter((f) => f.tasksDone !== undefined).map((f) => f.tasksDone), [0, 1, 2], 'memory counts a task when it finished finish');
  t.same(seen.at(-1), { bytes: 8192, pages: 2 });
  t.equal(formatProgress('dump', { step: 'pages', pages: 3 }, undefined), 'dump · pages · pages 3');
});
