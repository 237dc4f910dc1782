// Reads a TAP stream on stdin, echoes it, and ends with the line CI reads:
// `N passed, N failed, N skipped`, counting every assertion of every (sub)test. A subtest that
// fails without a failing assertion of its own (a crash, a timeout) counts as one failure.
import { Parser } from 'tap-parser';

const totals = { passed: 0, failed: 0, skipped: 0 };

/** Watches one (sub)test; returns a getter for the failures counted below it. */
function watch(parser) {
  let failuresBelow = 0;
  const children = [];
  parser.on('child', (child) => children.push(watch(child)));
  parser.on('assert', (res) => {
    const child = children.shift();
    if (child) {
      const childFailures = child();
      failuresBelow += childFailures;
      if (!res.ok && !res.skip && !res.todo && childFailures === 0) {
        totals.failed++;
        failuresBelow++;
      }
      return;
    }
    if (res.skip || res.todo) totals.skipped++;
    else if (res.ok) totals.passed++;
    else {
      totals.failed++;
      failuresBelow++;
    }
  });
  parser.on('bailout', () => totals.failed++);
  return () => failuresBelow;
}

const parser = new Parser();
watch(parser);
parser.on('complete', () => {
  process.stdout.write(`${totals.passed} passed, ${totals.failed} failed, ${totals.skipped} skipped\n`);
});
process.stdin.on('data', (chunk) => process.stdout.write(chunk));
process.stdin.pipe(parser);
