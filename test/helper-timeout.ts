// Helper request timeouts against a blocked event loop: an answer that arrived while Node was
// busy in synchronous work (a large restore decodes its images synchronously for seconds) must
// be read before the request's timeout is judged; a request that truly gets no answer still
// times out. Every helper is killed and reaped by PID (destroy).
import t from 'tap';
import { HelperTimeoutError } from '../src/actors/helper-errors.js';
import { spawnHelper } from '../src/actors/helper.js';

function blockFor(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until) {
    // busy: the event loop cannot run
  }
}

t.test('an answer that came in while the loop was blocked past the timeout still counts', async (t) => {
  const helper = await spawnHelper();
  t.teardown(() => helper.destroy());
  await helper.identified;
  const asked = helper.getpid({ timeoutMs: 100 });
  blockFor(400);
  const got = await asked.catch((e: unknown) => e);
  t.notOk(got instanceof Error, `resolved, not ${String(got)}`);
  t.equal((got as { pid: number }).pid, helper.pid, 'with the helper\'s own answer');
});

t.test('a request nobody answers still times out', async (t) => {
  const root = await spawnHelper();
  t.teardown(() => root.destroy());
  await root.identified;
  const task = await root.fork();
  await task.park();
  const asked = task.getpid({ timeoutMs: 100 });
  blockFor(300);
  const err = await asked.catch((e: unknown) => e);
  t.type(err, HelperTimeoutError);
  t.match(err, { code: 'ETIMEDOUT', syscall: 'getpid' });
  task.kill();
  await task.exited;
  await root.request('waitpid', { pid: task.pidInParent });
});
