// Every upstream CRIU fixture image: decode -> encode gives the same bytes; `crr show F` prints
// what `crit decode --pretty` printed; crit's JSON -> `crr encode` gives the original image back.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readImage } from '../src/images/reader.js';
import { encodeImage } from '../src/images/writer.js';
import { encodeCritDocument, parseJsonExact } from '../src/cli/commands/encode.js';
import { imageAsCrit } from '../src/cli/commands/show.js';
import { stringifyCrit } from '../src/images/crit-json.js';
import { SHARED } from './lib/shared-dir.js';

const FIXTURES = SHARED + 'fixtures/criu-4.2';
const DECODED = SHARED + 'fixtures/criu-4.2-decoded';
const crr = fileURLToPath(new URL('../bin/crr.js', import.meta.url));

const images: Array<{ dir: string; name: string; path: string; json: string }> = [];
for (const dir of readdirSync(FIXTURES).sort()) {
  for (const name of readdirSync(join(FIXTURES, dir)).sort()) {
    if (/^pages-\d+\.img$/.test(name)) continue;
    const json = join(DECODED, dir, `${name.replace(/\.img$/, '')}.json`);
    images.push({ dir, name, path: join(FIXTURES, dir, name), json });
  }
}

/** Numbers and crit's hex strings both become one decimal form; nothing else is loosened. */
function normalise(v: unknown): unknown {
  if (typeof v === 'number' || typeof v === 'bigint') return `#${BigInt(v)}`;
  if (typeof v === 'string' && /^0x[0-9a-fA-F]+$/.test(v)) return `#${BigInt(v)}`;
  if (Array.isArray(v)) return v.map(normalise);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, normalise(x)]));
  return v;
}

t.ok(images.length > 60, `found ${images.length} fixture images`);

t.test('decode -> encode reproduces every fixture image byte for byte', async (t) => {
  for (const img of images) {
    const original = readFileSync(img.path);
    const image = readImage(img.path);
    const again = encodeImage(
      image.kind,
      [...image.entries()].map((e) => ({ entry: e.decode(), payload: e.payload })),
    );
    t.ok(again.equals(original), `${img.dir}/${img.name} (${original.length} bytes, ${image.count} entries)`);
  }
});

// In process for every image (fast); through bin/crr.js (the built CLI) for one whole fixture.
const CLI_DIR = 'sleep';

t.test('show FILE matches crit decode --pretty for every fixture image', async (t) => {
  for (const img of images) {
    if (!existsSync(img.json)) continue; // crit printed no JSON for stats-dump
    const ours = parseJsonExact(stringifyCrit(imageAsCrit(img.path)));
    const crits = parseJsonExact(readFileSync(img.json, 'utf8'));
    t.same(normalise(ours), normalise(crits), `${img.dir}/${img.name}`);
  }
});

t.test('crit JSON -> encode gives every original image back', async (t) => {
  for (const img of images) {
    if (!existsSync(img.json)) continue;
    const bytes = encodeCritDocument(img.json, parseJsonExact(readFileSync(img.json, 'utf8')));
    t.ok(bytes.equals(readFileSync(img.path)), `${img.dir}/${img.name} byte for byte`);
  }
});

t.test(`the CLI: crr show and crr encode on every image of ${CLI_DIR}`, async (t) => {
  t.ok(existsSync(fileURLToPath(new URL('../dist/cli/commands/show.js', import.meta.url))), 'dist is built');
  const out = mkdtempSync(join(tmpdir(), 'crr-encode-'));
  t.teardown(() => rmSync(out, { recursive: true, force: true }));
  for (const img of images.filter((i) => i.dir === CLI_DIR && existsSync(i.json))) {
    const shown = spawnSync(process.execPath, [crr, 'show', img.path], { encoding: 'utf8', maxBuffer: 64 << 20 });
    t.equal(shown.status, 0, `show ${img.name}: exit 0 ${shown.stderr}`);
    if (shown.status !== 0) continue;
    t.same(normalise(parseJsonExact(shown.stdout)), normalise(parseJsonExact(readFileSync(img.json, 'utf8'))), `show ${img.name}`);
    const target = join(out, img.name);
    const r = spawnSync(process.execPath, [crr, 'encode', '-i', img.json, '-o', target], { encoding: 'utf8' });
    t.equal(r.status, 0, `encode ${img.name}: exit 0 ${r.stderr}`);
    if (r.status === 0) t.ok(readFileSync(target).equals(readFileSync(img.path)), `encode ${img.name} byte for byte`);
  }
});

t.test('crr show output piped into crr encode (positional form, stdin) gives the image again', async (t) => {
  const out = mkdtempSync(join(tmpdir(), 'crr-encode2-'));
  t.teardown(() => rmSync(out, { recursive: true, force: true }));
  for (const name of ['pipes-data.img', 'core-17448.img', 'pagemap-17449.img']) {
    const path = join(FIXTURES, 'pipe', name);
    const shown = spawnSync(process.execPath, [crr, 'show', path], { encoding: 'utf8', maxBuffer: 64 << 20 });
    t.equal(shown.status, 0, `show ${name}`);
    const target = join(out, name);
    const r = spawnSync(process.execPath, [crr, 'encode', '-', target], { input: shown.stdout, encoding: 'utf8' });
    t.equal(r.status, 0, `encode ${name} ${r.stderr}`);
    if (r.status === 0) t.ok(readFileSync(target).equals(readFileSync(path)), `${name} byte for byte`);
  }
});

t.test('parseJsonExact keeps 64-bit integers exact', async (t) => {
  const v = parseJsonExact('{"a": 18446744073709551615, "b": [1, -2.5, "x\\u0041"], "c": true, "d": null}') as Record<string, unknown>;
  t.equal(v['a'], 18446744073709551615n);
  t.same(v['b'], [1, -2.5, 'xA']);
  t.equal(v['c'], true);
  t.equal(v['d'], null);
  t.throws(() => parseJsonExact('{"a": 1,}'), SyntaxError);
  t.throws(() => parseJsonExact('[1] 2'), SyntaxError);
});
