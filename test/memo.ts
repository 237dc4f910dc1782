// perKey is the one per-restore memo of the resource kinds: each key computes once, with the
// first call's arguments, and keys never share a value.
import t from 'tap';
import { perKey } from '../src/memo.js';

t.test('computes once per key, from the first call’s arguments', async (t) => {
  const seen: Array<[object, number]> = [];
  const sizeOf = perKey((key: { name: string }, extra: number) => {
    seen.push([key, extra]);
    return key.name.length + extra;
  });
  const a = { name: 'abc' };
  const b = { name: 'de' };
  t.equal(sizeOf(a, 10), 13);
  t.equal(sizeOf(a, 99), 13, 'a later call with the same key gets the first value');
  t.equal(sizeOf(b, 1), 3, 'another key computes its own');
  t.same(seen, [[a, 10], [b, 1]]);
});

t.test('a computed undefined is kept too', async (t) => {
  let calls = 0;
  const nothing = perKey((_: object) => {
    calls++;
    return undefined;
  });
  const key = {};
  t.equal(nothing(key), undefined);
  t.equal(nothing(key), undefined);
  t.equal(calls, 1);
});

t.test('a throwing compute keeps nothing: the next call tries again', async (t) => {
  let calls = 0;
  const flaky = perKey((_: object) => {
    if (++calls === 1) throw new Error('first try fails');
    return calls;
  });
  const key = {};
  t.throws(() => flaky(key), /first try fails/);
  t.equal(flaky(key), 2);
  t.equal(flaky(key), 2);
});
