// Reads a TAP stream on stdin, echoes it, and ends with a list of what failed (CI shows only the
// tail of its output, so failures printed mid-stream would be lost) and then the line CI reads:
// `N passed, N failed, N skipped`, counting every assertion of every (sub)test. A subtest that
// fails without a failing assertion of its own (a crash, a timeout) counts as one failure.
import { Parser } from 'tap-parser';

const totals = { passed: 0, failed: 0, skipped: 0 };
const failures = [];

/** Watches one (sub)test; returns a getter for the failures counted below it. */
function watch(parser, path) {
  let failuresBelow = 0;
  const children = [];
  const fail = (res) => {
    totals.failed++;
    failuresBelow++;
    const where = res.diag?.at ? ` (${res.diag.at.fileName ?? ''}:${res.diag.at.lineNumber ?? ''})` : '';
    failures.push(`${[...path, res.name].join(' > ')}${where}${res.diag?.message ? `: ${res.diag.message}` : ''}`);
  };
  parser.on('child', (child) => children.push(watch(child, [...path, child.name])));
  parser.on('assert', (res) => {
    const child = children.shift();
    if (child) {
      const childFailures = child();
      failuresBelow += childFailures;
      if (!res.ok && !res.skip && !res.todo && childFailures === 0) fail(res);
      return;
    }
    if (res.skip || res.todo) totals.skipped++;
    else if (res.ok) totals.passed++;
    else fail(res);
  });
  parser.on('bailout', (reason) => {
    totals.failed++;
    failures.push(`bail out: ${reason}`);
  });
  return () => failuresBelow;
}

const parser = new Parser();
watch(parser, []);
parser.on('complete', () => {
  if (failures.length > 0) {
    process.stdout.write(`\n# ${failures.length} failure(s):\n`);
    for (const failure of failures) process.stdout.write(`#   ${failure.replace(/\n/g, ' ')}\n`);
  }
  process.stdout.write(`${totals.passed} passed, ${totals.failed} failed, ${totals.skipped} skipped\n`);
});
process.stdin.on('data', (chunk) => process.stdout.write(chunk));
process.stdin.pipe(parser);
