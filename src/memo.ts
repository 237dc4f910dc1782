// Values computed once per key object and dropped with it: what a resource kind works out once
// per restore (keyed by the RestoreSession) or per checkpoint or dump, without each module
// writing its own WeakMap get / compute / set. Beside errors.ts so that dump, restore and
// resources code may all import it.

/**
 * `compute` run at most once per `key`: later calls with that key return the first result. The
 * other arguments only feed that first computation (what it needs besides the key, e.g. the
 * task context of whichever task asks first); later calls' are ignored.
 */
export function perKey<K extends object, V, A extends unknown[] = []>(compute: (key: K, ...rest: A) => V): (key: K, ...rest: A) => V {
  const values = new WeakMap<K, V>();
  return (key, ...rest) => {
    let value = values.get(key);
    if (value === undefined && !values.has(key)) values.set(key, (value = compute(key, ...rest)));
    return value as V;
  };
}
