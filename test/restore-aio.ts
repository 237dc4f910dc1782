// Kernel AIO contexts across a dump and restore (program aio: a ring that went round with 5
// events left, one with 4 left across its end, one never used): the program's check can fail, the
// images carry each ring as CRIU writes it (an AIORING VMA, all its pages, mm.img's aios entry),
// and the restored program reaps its left events and does new I/O on each context at the same
// address. Images whose aios entries and VMAs disagree are refused at plan time.
import t from 'tap';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CrrError } from '../src/errors.js';
import { readImage } from '../src/images/reader.js';
import { formatSummary, summariseCheckpoint } from '../src/cli/commands/show.js';
import { restore } from '../src/restore/index.js';
import { dumpProgram, restoreProgram } from './lib/program-roundtrip.js';
import { requestCheck, startProgram } from './lib/programs.js';
import { rewriteImage } from './lib/restore-images.js';

const VMA_AREA_AIORING = 1 << 13;
const MAP_SHARED = 1;
const PE_PRESENT = 4;

/** The task's AIO rings as its maps show them. */
function ringsOf(pid: number): string[] {
  return readFileSync(`/proc/${pid}/maps`, 'latin1')
    .split('\n')
    .filter((l) => l.endsWith('/[aio] (deleted)'))
    .map((l) => l.split(' ')[0]!);
}

t.test('the self-check notices a ring whose head moved', async (t) => {
  const prog = await startProgram(t, 'aio', [], { env: { ...process.env, CRR_SELFTEST_BREAK: 'ring' } });
  const r = await requestCheck(prog.pid, prog.resultFile);
  t.match(r, { pass: false, text: /wrapped: ring at 0x[0-9a-f]+ has magic 0xa10a10a1, head 46, tail 50; expected head 45, tail 50/ });
});

t.test('AIO rings are dumped as CRIU writes them and restored with their events', async (t) => {
  const prog = await startProgram(t, 'aio');
  const rings = ringsOf(prog.pid);
  t.equal(rings.length, 3, 'three rings mapped');
  const imagesDir = await dumpProgram(t, prog);
  const [mm] = [...readImage(join(imagesDir, `mm-${prog.pid}.img`)).entries()].map((e) => e.decode());
  const aios = (mm!['aios'] as Array<Record<string, unknown>>).map((a) => ({ id: BigInt(a['id'] as bigint), nr_req: a['nr_req'], ring_len: a['ring_len'] }));
  const ringVmas = (mm!['vmas'] as Array<Record<string, unknown>>).filter((v) => Number(v['status']) & VMA_AREA_AIORING);
  t.same(
    aios.map((a) => `${a.id.toString(16)}-${(a.id + BigInt(a.ring_len as number)).toString(16)}`),
    rings,
    'one aios entry per ring, at its address and of its length',
  );
  // io_setup(64) makes 2 pages (255 events) on this 2-CPU machine, io_setup(16) and (8) one (127).
  t.same(aios.map((a) => [a.ring_len, a.nr_req]).sort(), [[4096, 62], [4096, 62], [8192, 126]], 'nr_req gives a ring of the same length again');
  t.same(
    ringVmas.map((v) => [Number(v['status']), Number(v['flags'])]),
    [[VMA_AREA_AIORING, MAP_SHARED], [VMA_AREA_AIORING, MAP_SHARED], [VMA_AREA_AIORING, MAP_SHARED]],
    'their VMAs: AIORING alone, MAP_SHARED',
  );
  const runs = [...readImage(join(imagesDir, `pagemap-${prog.pid}.img`)).entries()].slice(1).map((e) => e.decode());
  for (const a of aios) {
    const end = a.id + BigInt(a.ring_len as number);
    const covered = runs.some((r) => Number(r['flags']) & PE_PRESENT && BigInt(r['vaddr'] as bigint) <= a.id && BigInt(r['vaddr'] as bigint) + BigInt(Number(r['nr_pages']) * 4096) >= end);
    t.ok(covered, `ring ${a.id.toString(16)}: every page dumped`);
  }

  const shown = formatSummary(summariseCheckpoint(imagesDir));
  t.match(shown, new RegExp(`AIO contexts \\(io_setup\\): rings at ${aios.map((a) => `0x${a.id.toString(16)}`).join(', ')}`), 'crr show lists the rings');

  const rt = await restoreProgram(t, prog, imagesDir);
  t.same(ringsOf(rt.result.rootHostPid), rings, 'the rings are back at their addresses');
  t.same(await rt.check(), { pass: true, text: 'PASS' }, 'heads, tails and left events back; new reads complete on each context');
});

t.test('aios entries and VMAs that disagree are refused at plan time', async (t) => {
  const prog = await startProgram(t, 'aio');
  const imagesDir = await dumpProgram(t, prog);
  const mmName = `mm-${prog.pid}.img`;
  const original = readFileSync(join(imagesDir, mmName));
  const cases: Array<[string, (mm: Record<string, unknown>) => Record<string, unknown>, RegExp]> = [
    ['an entry dropped', (mm) => ({ ...mm, aios: (mm['aios'] as unknown[]).slice(1) }), /expected an aios entry for the AIORING VMA at 0x[0-9a-f]+/],
    ['a length that is not its VMA\'s', (mm) => ({ ...mm, aios: (mm['aios'] as Array<Record<string, unknown>>).map((a, i) => (i === 0 ? { ...a, ring_len: 12288 } : a)) }), /ring_len to be its VMA's length in whole pages \(12288, VMA \d+\)/],
    ['an entry off its VMA', (mm) => ({ ...mm, aios: (mm['aios'] as Array<Record<string, unknown>>).map((a, i) => (i === 0 ? { ...a, id: BigInt(a['id'] as bigint) + 4096n * 1000n } : a)) }), /expected an AIORING VMA at AIO ring 0x[0-9a-f]+/],
    ['nr_req 0', (mm) => ({ ...mm, aios: (mm['aios'] as Array<Record<string, unknown>>).map((a, i) => (i === 0 ? { ...a, nr_req: 0 } : a)) }), /nr_req between 1 and its events \(0\)/],
  ];
  for (const [what, change, message] of cases) {
    rewriteImage(imagesDir, mmName, ([mm]) => [change(mm!)]);
    const err = await restore({ imagesDir, dryRun: true, pidNamespace: true }).catch((e) => e);
    t.type(err, CrrError, what);
    t.match(err, { stage: 'plan', message }, what);
    t.match(err.message, mmName, `${what}: names the image`);
    writeFileSync(join(imagesDir, mmName), original);
  }
});
