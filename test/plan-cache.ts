// What buildPlan keeps between calls and what it leaves until asked: a kinds list is ordered
// once (the registry is planned on every restore), a list that cannot be ordered fails on every
// call, and describe() runs only when a rendering reads plan.descriptions, still per task and in
// stage order, with appliesTo respected.
import t from 'tap';
import { buildPlan } from '../src/plan/plan.js';
import type { ResourceKind, TaskPlan } from '../src/resources/types.js';

const task = (pid: number, ppid: number, extra: Partial<TaskPlan> = {}): TaskPlan => ({ pid, ppid, pgid: pid, sid: pid, threads: [pid], ...extra });

t.test('one kinds list is ordered once; plans of other task lists share its stage order', async (t) => {
  let afterReads = 0;
  const late: ResourceKind = { name: 'late', stage: 'memory', images: [], restore: async () => {} };
  // `after` read through a getter: ordering reads it, a cached order does not.
  const early = {
    name: 'early',
    stage: 'memory',
    images: [],
    restore: async () => {},
    get after() {
      afterReads++;
      return ['late'];
    },
  } as ResourceKind;
  const kinds = [early, late];
  const first = buildPlan(kinds, [task(1, 0)]);
  const readsAfterFirst = afterReads;
  t.ok(readsAfterFirst > 0, 'the first plan orders the kinds');
  const second = buildPlan(kinds, [task(1, 0), task(2, 1)]);
  t.equal(afterReads, readsAfterFirst, 'the second plan of the same list does not order again');
  t.same(second.stages, first.stages);
  t.same(second.perTask.get(2)!.get('memory'), ['late', 'early'], 'the cached order still puts late first');
  buildPlan([...kinds], [task(1, 0)]);
  t.ok(afterReads > readsAfterFirst, 'another list (same kinds) is ordered on its own');
});

t.test('a kinds list that cannot be ordered fails every time', async (t) => {
  const a: ResourceKind = { name: 'a', stage: 'fork', images: [], after: ['b'], restore: async () => {} };
  const b: ResourceKind = { name: 'b', stage: 'fork', images: [], after: ['a'], restore: async () => {} };
  const kinds = [a, b];
  t.throws(() => buildPlan(kinds, [task(1, 0)]), { reason: 'cycle' });
  t.throws(() => buildPlan(kinds, [task(1, 0)]), { reason: 'cycle' }, 'not remembered as ordered');
});

t.test('descriptions are built when read, once, per task in stage order', async (t) => {
  const calls: string[] = [];
  const kinds: ResourceKind[] = [
    { name: 'vmas', stage: 'memory', images: [], appliesTo: (x) => !x.zombie, restore: async () => {}, describe: (x) => (calls.push(`vmas ${x.pid}`), [`map ${x.pid}`]) },
    { name: 'tree', stage: 'fork', images: [], restore: async () => {}, describe: (x) => (calls.push(`tree ${x.pid}`), [`fork ${x.pid}`]) },
    { name: 'quiet', stage: 'fork', images: [], restore: async () => {}, describe: () => [] },
  ];
  const plan = buildPlan(kinds, [task(1, 0), task(2, 1, { zombie: true })]);
  t.same(calls, [], 'planning alone describes nothing');
  t.same(plan.descriptions.get(1), [
    { resource: 'tree', lines: ['fork 1'] },
    { resource: 'vmas', lines: ['map 1'] },
  ]);
  t.same(plan.descriptions.get(2), [{ resource: 'tree', lines: ['fork 2'] }], 'appliesTo leaves the zombie without vmas');
  const count = calls.length;
  t.equal(plan.descriptions, plan.descriptions, 'the same map on every read');
  t.equal(calls.length, count, 'described once');
});
