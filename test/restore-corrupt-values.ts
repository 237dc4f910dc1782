// Images that decode but hold wrong values (a field zeroed, set to -1 or 2^63, an entry dropped or
// doubled, a string emptied, bytes cut short): generated from the CRIU fixtures by a seeded PRNG,
// one image changed per case. Each restore must either succeed or fail with crr's own error
// (stage, task, resource, syscall and errno where one failed), never with a JavaScript error; and a
// failed restore must leave no process behind. images-corrupt.ts covers the bytes below this:
// framing and protobuf.
import t from 'tap';
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { readImage } from '../src/images/reader.js';
import { imageKindForFile } from '../src/images/schema.js';
import { writeImage } from '../src/images/writer.js';
import { restore } from '../src/restore/index.js';
import { CrrError } from '../src/errors.js';
import { SHARED } from './lib/shared-dir.js';
import { prng } from './lib/prng.js';

const FIXTURES = join(SHARED, 'fixtures/criu-4.2');

const NUMBERS = [0, -1, 1, 7, 0xffffffff, 2 ** 31, 4096, 123456789];
const BIGINTS = [0n, -1n, 1n << 63n, 0xffffffffffffffffn];

/** One value somewhere inside `v` changed (or an entry or field dropped or doubled). */
function mutate(v: unknown, rnd: () => number): unknown {
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(rnd() * xs.length)]!;
  if (Array.isArray(v)) {
    if (!v.length) return v;
    const copy = [...v];
    const i = Math.floor(rnd() * copy.length);
    const r = rnd();
    if (r < 0.2) copy.splice(i, 1);
    else if (r < 0.35) copy.push(copy[i]);
    else copy[i] = mutate(copy[i], rnd);
    return copy;
  }
  if (v instanceof Uint8Array) return v.subarray(0, Math.floor(rnd() * v.length));
  if (v && typeof v === 'object') {
    const copy: Record<string, unknown> = { ...(v as Record<string, unknown>) };
    const keys = Object.keys(copy);
    if (!keys.length) return copy;
    const key = pick(keys);
    if (rnd() < 0.15) delete copy[key];
    else copy[key] = mutate(copy[key], rnd);
    return copy;
  }
  if (typeof v === 'number') return pick(NUMBERS);
  if (typeof v === 'bigint') return pick(BIGINTS);
  if (typeof v === 'string') return rnd() < 0.5 ? '' : `${v}/../x`;
  if (typeof v === 'boolean') return !v;
  return v;
}

/** A fixture copy with one image changed; undefined when the change does not encode. */
function corruptCopy(t: Tap.Test, seed: number): { dir: string; what: string } | undefined {
  const rnd = prng(seed * 7919);
  const fixtures = readdirSync(FIXTURES);
  const fixture = fixtures[Math.floor(rnd() * fixtures.length)]!;
  const dir = mkdtempSync(join(tmpdir(), 'crr-corrupt-values-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  for (const f of readdirSync(join(FIXTURES, fixture))) copyFileSync(join(FIXTURES, fixture, f), join(dir, f));
  const images = readdirSync(dir).filter((f) => f.endsWith('.img') && !f.startsWith('pages-') && imageKindForFile(f));
  const image = images[Math.floor(rnd() * images.length)]!;
  const kind = imageKindForFile(image)!;
  const entries = [...readImage(join(dir, image), kind).entries()].map((lazy) => lazy.decode());
  if (!entries.length) return undefined;
  const i = Math.floor(rnd() * entries.length);
  entries[i] = mutate(entries[i], rnd) as (typeof entries)[number];
  try {
    writeImage(join(dir, image), kind, entries.map((entry) => ({ entry })));
  } catch {
    return undefined;
  }
  return { dir, what: `seed ${seed}: ${fixture}/${image}` };
}

function children(): number[] {
  return readdirSync(`/proc/${process.pid}/task`).flatMap((tid) =>
    readFileSync(`/proc/${process.pid}/task/${tid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number),
  );
}

async function outcome(run: () => Promise<unknown>): Promise<'restored' | 'refused' | string> {
  try {
    await run();
    return 'restored';
  } catch (err) {
    return err instanceof CrrError ? 'refused' : `${(err as Error)?.name}: ${(err as Error)?.message}\n${(err as Error)?.stack}`;
  }
}

t.test('planned (dry run): 1,000 images with wrong values end in a plan or crr error', async (t) => {
  const seen = { restored: 0, refused: 0 };
  for (let seed = 1; seed <= 1000; seed++) {
    const copy = corruptCopy(t, seed);
    if (!copy) continue;
    const got = await outcome(() => restore({ imagesDir: copy.dir, dryRun: true, pidNamespace: true }));
    if (got === 'restored' || got === 'refused') seen[got]++;
    else t.fail(`${copy.what}: ${got}`);
  }
  t.ok(seen.refused > 100, `crr errors: ${seen.refused}, planned anyway: ${seen.restored}`);
});

t.test('restored: 300 images with wrong values restore or fail with crr\'s error, leaving no process', async (t) => {
  const seen = { restored: 0, refused: 0 };
  for (let seed = 1001; seed <= 1300; seed++) {
    const copy = corruptCopy(t, seed);
    if (!copy) continue;
    const got = await outcome(async () => {
      const result = await restore({ imagesDir: copy.dir, pidNamespace: true });
      await result.kill();
    });
    if (got === 'restored' || got === 'refused') seen[got]++;
    else t.fail(`${copy.what}: ${got}`);
    let left = children();
    for (let i = 0; i < 100 && left.length; i++) {
      await sleep(20);
      left = children();
    }
    if (left.length) {
      t.fail(`${copy.what}: ${got}: processes left: ${left.join(' ')}`);
      for (const pid of left) process.kill(pid, 'SIGKILL');
    }
  }
  t.ok(seen.refused > 50 && seen.restored > 50, `crr errors: ${seen.refused}, restored anyway: ${seen.restored}`);
});
