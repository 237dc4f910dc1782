// Transparent huge pages across a restore: the hugepages program (24 MiB advised MADV_HUGEPAGE,
// written after the advice) dumped and restored checks its pattern, its advice and that the
// region is still in huge pages. 24 MiB makes a fill of its own, the path that copies large
// areas by UFFDIO_COPY (4 KiB pages): hugePageVmas keeps this one out of it.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { roundTrip } from './lib/program-roundtrip.js';
import { startProgram } from './lib/programs.js';

const thp = /\[(\w+)\]/.exec(readFileSync('/sys/kernel/mm/transparent_hugepage/enabled', 'utf8'))?.[1];

t.test('an MADV_HUGEPAGE region comes back advised, whole and in huge pages', async (t) => {
  const prog = await startProgram(t, 'hugepages');
  const huge = Number(/AnonHugePages:\s+(\d+)/.exec(readFileSync(`/proc/${prog.pid}/smaps_rollup`, 'utf8'))?.[1]);
  // Without THP the program checks the pattern and the advice only.
  if (thp !== 'never') t.ok(huge >= 2048, `the original holds huge pages (${huge} kB; THP ${thp})`);
  const rt = await roundTrip(t, prog);
  t.same(await rt.check(), { pass: true, text: 'PASS' });
});
