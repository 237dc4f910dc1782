// The kcmp-ordered lookup of known kernel objects (src/dump/kcmp-order.ts) and the ids built on
// it, against a stand-in kcmp over plain numbers: every object is found or placed exactly as a
// comparison with every known object would, in log(n) / log(PIVOTS + 1) rounds of PIVOTS
// comparisons (6 rounds for 4,096 known objects).
import t from 'tap';
import { KcmpSearch, KcmpSorted, PIVOTS, runSearches } from '../src/dump/kcmp-order.js';
import { DumpIds, TASK_OBJECTS } from '../src/dump/ids.js';
import { OpenFiles } from '../src/dump/files.js';

/** kcmp(2)'s answer for two objects: 0 same, 1 first lower, 2 first higher. */
const kcmp = (a: number, b: number) => (a === b ? 0 : a < b ? 1 : 2);

/** A deterministic shuffle-ish sequence of object "addresses" with repeats. */
function objects(n: number, distinct: number, seed = 7): number[] {
  let x = seed;
  return Array.from({ length: n }, () => {
    x = (x * 48271) % 2147483647;
    return (x % distinct) * 16 + 4096;
  });
}

async function lookUp(list: KcmpSorted<{ obj: number }>, obj: number): Promise<{ found?: number; rounds: number; compared: number }> {
  const search = new KcmpSearch(list);
  let rounds = 0;
  let compared = 0;
  await runSearches([search], async (pairs) => {
    rounds++;
    compared += pairs.length;
    return pairs.map((p) => kcmp(p.member.obj, obj));
  }, () => `object ${obj}`);
  if (search.found) return { found: search.found.obj, rounds, compared };
  search.insert({ obj });
  return { rounds, compared };
}

t.test('finds every repeat, places every new object in order, in log(n) rounds', async (t) => {
  const list = new KcmpSorted<{ obj: number }>();
  const seen = new Set<number>();
  let maxRounds = 0;
  let maxCompared = 0;
  let wrong = 0;
  for (const obj of objects(12000, 4096)) {
    const r = await lookUp(list, obj);
    maxRounds = Math.max(maxRounds, r.rounds);
    maxCompared = Math.max(maxCompared, r.compared);
    if ((r.found !== undefined) !== seen.has(obj) || (r.found !== undefined && r.found !== obj)) wrong++;
    seen.add(obj);
  }
  t.equal(wrong, 0, 'found exactly the objects seen before');
  t.equal(list.members.length, seen.size, 'one member per distinct object');
  t.same(list.members.map((m) => m.obj), [...seen].sort((a, b) => a - b), 'members sorted by kcmp order');
  t.ok(seen.size > 3000, `the list grew past 3,000 members (${seen.size})`);
  const bound = Math.ceil(Math.log(seen.size + 1) / Math.log(PIVOTS + 1));
  t.ok(maxRounds <= bound, `at most ${bound} rounds (${maxRounds})`);
  t.ok(maxCompared <= bound * PIVOTS, `at most ${bound * PIVOTS} comparisons for one object (${maxCompared})`);
});

t.test('an inconsistent or failed kcmp is an error naming the object, not a wrong id', async (t) => {
  const list = new KcmpSorted<{ obj: number }>();
  for (const obj of [10, 20, 30]) await lookUp(list, obj);
  const liar = new KcmpSearch(list);
  await t.rejects(runSearches([liar], async (pairs) => pairs.map((p) => (p.member.obj === 10 ? 2 : 1)), () => 'object 15'), /inconsistent for object 15/);
  const odd = new KcmpSearch(list);
  await t.rejects(runSearches([odd], async (pairs) => pairs.map(() => 3), () => 'object 16'), /kcmp gave 3 for object 16/);
});

t.test('DumpIds numbers vm/files/fs/sighand per kind as kcmp against every earlier task would', async (t) => {
  // Task i's object of each kind: shared with task i - (i % 3) for vm, i % 5 for files, ...
  const tasks = Array.from({ length: 300 }, (_, i) => i + 1000);
  const objectOf = (pid: number, type: number) => {
    const i = pid - 1000;
    return [i - (i % 3), i % 5, i % 2 ? i : 0, Math.floor(i / 7)][type - 1]!;
  };
  const ids = new DumpIds();
  await ids.rootIds();
  const expected = new Map<number, Map<number, number>>(); // type -> object -> id
  let mismatches = 0;
  let batches = 0;
  for (const pid of tasks) {
    const got = await ids.taskObjects(pid, async (queries) => {
      batches++;
      return queries.map((q) => kcmp(objectOf(q.pid, q.type), objectOf(pid, q.type)));
    });
    for (const [field, type] of TASK_OBJECTS) {
      let byObj = expected.get(type);
      if (!byObj) expected.set(type, (byObj = new Map()));
      const obj = objectOf(pid, type);
      const want = byObj.get(obj) ?? byObj.size + 2; // the dumper's own object took 1
      const wasKnown = byObj.has(obj);
      byObj.set(obj, want);
      if (got[field] !== want || got.shared.has(field) !== wasKnown) mismatches++;
    }
  }
  t.equal(mismatches, 0, 'every id and shared flag as the exhaustive comparison gives');
  const rounds = Math.ceil(Math.log(tasks.length + 1) / Math.log(PIVOTS + 1));
  t.ok(batches <= tasks.length * rounds, `${rounds} rounds per task at most, all kinds together (${batches} for ${tasks.length})`);
});

t.test('OpenFiles: one id per description within a group, kcmp only within the group', async (t) => {
  const ids = new DumpIds();
  const open = new OpenFiles();
  const description = (pid: number, fd: number) => (fd === 0 ? 1 : pid * 10 + fd); // fd 0 inherited by all
  const compared = new Set<string>();
  const order = async (pairs: Array<{ a: { pid: number; fd: number }; b: { pid: number; fd: number } }>) =>
    pairs.map(({ a, b }) => {
      compared.add(`${a.fd}-${b.fd}`);
      return kcmp(description(a.pid, a.fd), description(b.pid, b.fd));
    });
  const got: number[] = [];
  for (let pid = 100; pid < 140; pid++) {
    for (const fd of [0, 1]) got.push(await open.idFor(`key:${fd}`, pid, fd, order, () => undefined, ids));
  }
  t.equal(new Set(got.filter((_, i) => i % 2 === 0)).size, 1, 'fd 0 of every task: one description');
  t.equal(new Set(got.filter((_, i) => i % 2 === 1)).size, 40, 'fd 1 of every task: its own');
  t.same([...compared].sort(), ['0-0', '1-1'], 'never compared across groups');
});
