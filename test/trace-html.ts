// `crr trace`: the text summary and --json from a recorded trace, refusal of a file that is not a
// trace, and the --html page in headless Chromium: it loads without console errors (the page's
// error hook writes them into the DOM, read back with --dump-dom; a page with a planted error
// proves the check can fail), the screenshot shows the timeline (stage colours counted in the
// decoded PNG), and a 10,000-task trace renders in bounded time with a virtualised timeline.
import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inflateSync } from 'node:zlib';
import { runRestore } from '../src/machines/run.js';
import { run as traceCommand } from '../src/cli/commands/trace.js';
import { createTraceRecorder } from '../src/trace/recorder.js';
import { renderTraceHtml } from '../src/trace/html.js';
import { syntheticEnvironment, syntheticTrace, syntheticTree } from '../src/trace/synthetic.js';

const CHROMIUM = '/usr/bin/chromium';
const dir = mkdtempSync(join(tmpdir(), 'crr-trace-html-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

async function capture(fn: () => Promise<number>): Promise<{ code: number; out: string }> {
  const write = process.stdout.write.bind(process.stdout);
  const chunks: string[] = [];
  process.stdout.write = ((chunk: string | Uint8Array) => (chunks.push(String(chunk)), true)) as typeof process.stdout.write;
  try {
    return { code: await fn(), out: chunks.join('') };
  } finally {
    process.stdout.write = write;
  }
}

/** Run headless Chromium on a page; killed (its whole process group, by its PID) on timeout or teardown. */
function chromium(t: Test, page: string, mode: string[], timeoutMs = 60_000): Promise<{ stdout: string; stderr: string; code: number | null }> {
  const profile = mkdtempSync(join(tmpdir(), 'crr-chromium-'));
  const args = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', `--user-data-dir=${profile}`, '--enable-logging=stderr', '--v=0',
    '--window-size=1400,900', ...mode, `file://${page}`];
  const child = spawn(CHROMIUM, args, { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let exited = false;
  const kill = () => {
    if (!exited && child.pid) try { process.kill(-child.pid, 'SIGKILL'); } catch { /* already gone */ }
  };
  const timer = setTimeout(kill, timeoutMs);
  t.teardown(() => {
    kill();
    rmSync(profile, { recursive: true, force: true });
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  return new Promise((resolve) => child.on('close', (code) => {
    exited = true;
    clearTimeout(timer);
    kill(); // helpers of the browser that outlived it (same group)
    resolve({ stdout, stderr, code });
  }));
}

/** Decode an 8-bit RGB/RGBA PNG into pixels (enough for Chromium screenshots). */
function decodePng(png: Buffer): { width: number; height: number; channels: number; pixels: Buffer } {
  const width = png.readUInt32BE(16);
  const height = png.readUInt32BE(20);
  const channels = png[25] === 6 ? 4 : 3;
  const idat: Buffer[] = [];
  for (let at = 8; at < png.length; ) {
    const length = png.readUInt32BE(at);
    if (png.toString('latin1', at + 4, at + 8) === 'IDAT') idat.push(png.subarray(at + 8, at + 8 + length));
    at += length + 12;
  }
  const raw = inflateSync(Buffer.concat(idat));
  const stride = width * channels;
  const pixels = Buffer.alloc(height * stride);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)]!;
    for (let x = 0; x < stride; x++) {
      const cur = raw[y * (stride + 1) + 1 + x]!;
      const a = x >= channels ? pixels[y * stride + x - channels]! : 0;
      const b = y > 0 ? pixels[(y - 1) * stride + x]! : 0;
      const c = x >= channels && y > 0 ? pixels[(y - 1) * stride + x - channels]! : 0;
      const p = a + b - c;
      const paeth = Math.abs(p - a) <= Math.abs(p - b) && Math.abs(p - a) <= Math.abs(p - c) ? a : Math.abs(p - b) <= Math.abs(p - c) ? b : c;
      const add = [0, a, b, (a + b) >> 1, paeth][filter]!;
      pixels[y * stride + x] = (cur + add) & 0xff;
    }
  }
  return { width, height, channels, pixels };
}

function countColour(image: ReturnType<typeof decodePng>, hex: string): number {
  const [r, g, b] = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
  let count = 0;
  for (let i = 0; i < image.pixels.length; i += image.channels) {
    if (Math.abs(image.pixels[i]! - r!) < 4 && Math.abs(image.pixels[i + 1]! - g!) < 4 && Math.abs(image.pixels[i + 2]! - b!) < 4) count++;
  }
  return count;
}

const domAttr = (dom: string, name: string) => new RegExp(`${name}="([^"]*)"`).exec(dom)?.[1];

const traceFile = join(dir, 'restore.json');
t.before(async () => {
  const recorder = createTraceRecorder();
  await runRestore(syntheticEnvironment(syntheticTree(12, 3), { workUs: (pid) => 100 * pid }), recorder.attach({ concurrency: 4 }));
  recorder.write(traceFile);
});

t.test('crr trace FILE prints the per-stage table and slowest tasks; --json the numbers', async (t) => {
  const text = await capture(() => traceCommand([traceFile]));
  t.equal(text.code, 0);
  t.match(text.out, /per stage/);
  for (const stage of ['fork', 'shared-fds', 'memory', 'resume']) t.match(text.out, new RegExp(`^  ${stage} +12 `, 'm'), `${stage} row counts 12 tasks`);
  t.match(text.out, /slowest tasks:\n {2}task +work\n {2}task \d+ /, 'slowest tasks listed');
  const json = await capture(() => traceCommand([traceFile, '--json']));
  const summary = JSON.parse(json.out);
  t.equal(summary.tasks, 12);
  t.equal(summary.stages.length, 9);
  t.ok(summary.criticalPath.length >= 9, 'a critical path through every stage');
  const busy = summary.slowestTasks.map((task: { busyMs: number }) => task.busyMs);
  t.same(busy, [...busy].sort((a: number, b: number) => b - a), 'slowest tasks come first');
  t.ok(text.out.includes(`  ${summary.slowestTasks[0].name} `), 'the text names the same slowest task');
  const bad = join(dir, 'not-a-trace.json');
  writeFileSync(bad, '{"traceEvents": [{"name": "x", "ph": "X"}]}');
  await t.rejects(traceCommand([bad]), { exitCode: 2, message: /not a Chrome trace/ });
  await t.rejects(traceCommand([]), { exitCode: 2, message: /usage: crr trace FILE/ });
});

t.test('the HTML page loads in headless Chromium without errors and shows the timeline', { skip: !existsSync(CHROMIUM) && 'chromium is not installed (scripts/setup.sh installs it)' }, async (t) => {
  const page = join(dir, 'restore.html');
  t.equal((await capture(() => traceCommand([traceFile, '--html', page]))).code, 0);
  const html = readFileSync(page, 'utf8');
  t.notMatch(html, /(src|href)=["']?(https?:)?\/\//, 'nothing loaded from the network');
  const dom = await chromium(t, page, ['--dump-dom']);
  t.equal(domAttr(dom.stdout, 'data-rendered'), 'ok', 'the page script ran to the end');
  t.equal(domAttr(dom.stdout, 'data-errors'), undefined, `no errors (${domAttr(dom.stdout, 'data-errors')})`);
  t.notMatch(dom.stderr, /CONSOLE.*(Uncaught|Error)/, 'no console errors in the browser log');
  t.equal(Number(domAttr(dom.stdout, 'data-rows-drawn')), 12, 'every task row drawn');
  t.match(dom.stdout, /<svg class="machine"/, 'machine diagrams present');

  const png = join(dir, 'restore.png');
  await chromium(t, page, [`--screenshot=${png}`]);
  const image = decodePng(readFileSync(png));
  t.equal(image.width, 1400);
  // fork, memory and resume bars in their stage colours: the timeline (not just the page) rendered.
  for (const [stage, colour] of [['fork', '#4285f4'], ['memory', '#e8710a'], ['resume', '#d93025']]) {
    t.ok(countColour(image, colour!) > 200, `${stage} bars visible (${countColour(image, colour!)} px)`);
  }
});

t.test('a planted error is caught (the check can fail)', { skip: !existsSync(CHROMIUM) && 'chromium is not installed' }, async (t) => {
  const page = join(dir, 'broken.html');
  writeFileSync(page, renderTraceHtml(JSON.parse(readFileSync(traceFile, 'utf8'))).replace('var ROW_H = 16', 'var ROW_H = 16; undefinedFunction()'));
  const dom = await chromium(t, page, ['--dump-dom']);
  t.equal(domAttr(dom.stdout, 'data-errors'), '1');
  t.match(dom.stdout, /undefinedFunction/);
  t.not(domAttr(dom.stdout, 'data-rendered'), 'ok');
});

t.test('10,000 tasks: bounded render time, virtualised timeline', { skip: !existsSync(CHROMIUM) && 'chromium is not installed' }, async (t) => {
  const trace = syntheticTrace(10_000);
  const started = performance.now();
  const html = renderTraceHtml(trace);
  const renderMs = performance.now() - started;
  t.ok(renderMs < 15_000, `HTML built in ${renderMs.toFixed(0)} ms`);
  t.ok(html.length < 12 * 1048576, `page is ${(html.length / 1048576).toFixed(1)} MiB`);
  const page = join(dir, 'big.html');
  writeFileSync(page, html);
  const loadStart = performance.now();
  const dom = await chromium(t, page, ['--dump-dom'], 90_000);
  const loadMs = performance.now() - loadStart;
  t.equal(domAttr(dom.stdout, 'data-rendered'), 'ok', `rendered in Chromium (${loadMs.toFixed(0)} ms with start-up)`);
  t.equal(domAttr(dom.stdout, 'data-errors'), undefined);
  const drawn = Number(domAttr(dom.stdout, 'data-rows-drawn'));
  t.ok(drawn > 0 && drawn < 100, `only the rows in view are drawn (${drawn})`);
  t.ok(loadMs < 60_000, 'loads in bounded time');
});
