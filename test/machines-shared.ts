// The restore-wide table of shared objects (src/machines/shared.ts): a receiver waiting before
// the publication gets the value, one published twice is refused, and an abort rejects every
// receiver still waiting (and any later one), naming the object it waited for.
import t from 'tap';
import { SharedObjects } from '../src/machines/shared.js';

t.test('receivers get what is published, before or after they ask', async (t) => {
  const table = new SharedObjects(new AbortController().signal);
  const early = [table.receive('fd:file', '7'), table.receive('fd:file', '7')];
  table.publish('fd:file', '7', 42);
  t.same(await Promise.all(early), [42, 42], 'both waiting receivers');
  t.equal(await table.receive('fd:file', '7'), 42, 'a late receiver');
  t.throws(() => table.publish('fd:file', '7', 43), /published twice/);
});

t.test('an abort rejects every waiting receiver and every later one', async (t) => {
  const controller = new AbortController();
  const table = new SharedObjects(controller.signal);
  table.publish('pgroup', '1', true);
  const waiting = Array.from({ length: 1000 }, (_, i) => table.receive('pgroup', String(i + 2)));
  controller.abort();
  const outcomes = await Promise.allSettled(waiting);
  t.equal(outcomes.filter((o) => o.status === 'rejected').length, 1000, 'all 1,000 rejected');
  t.match((outcomes[0] as PromiseRejectedResult).reason.message, /waiting for shared object pgroup:2$/);
  await t.rejects(table.receive('pgroup', '9999'), /aborted while waiting for shared object pgroup:9999/);
  t.equal(await table.receive('pgroup', '1'), true, 'what was published stays readable');
});
