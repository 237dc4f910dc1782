// Small statistics and formatting for the bench report: median/min/max of samples, per-step
// medians of restore timings, and fixed-width table cells.
export function summary(samples) {
  const sorted = [...samples].sort((a, b) => a - b);
  return { median: sorted[sorted.length >> 1], min: sorted[0], max: sorted[sorted.length - 1], runs: sorted.length };
}

/** Median duration per restore step over runs, in the order the first run took them. */
export function stepMedians(runs) {
  const order = [];
  const byStep = new Map();
  for (const steps of runs) {
    for (const [step, ms] of steps) {
      if (!byStep.has(step)) {
        byStep.set(step, []);
        order.push(step);
      }
      byStep.get(step).push(ms);
    }
  }
  return order.map((step) => [step, summary(byStep.get(step)).median]);
}

export const ms = (v) => (v === undefined ? '-' : v >= 1000 ? `${(v / 1000).toFixed(2)} s` : `${v.toFixed(v < 10 ? 2 : 1)} ms`);
export const mbps = (bytes, millis) => bytes / 1e6 / (millis / 1000);
export const pad = (s, n) => String(s).padEnd(n);
