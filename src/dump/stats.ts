// stats-dump: the figures criu leaves next to its images (service head magic STATS), with the
// same meaning: freezing_time (start until every thread is stopped), frozen_time (stopped until
// killed or resumed), memdump_time (finding the pages: pagemap scans), memwrite_time (reading
// and writing page data, which crr overlaps), all in microseconds; page counts.
import type { Entry } from './ids.js';

export class DumpStats {
  private readonly t0 = performance.now();
  private tFrozen = 0;
  freezingUs = 0;
  frozenUs = 0;
  memdumpUs = 0;
  memwriteUs = 0;
  pagesScanned = 0;
  pagesWritten = 0;
  shpagesScanned = 0;
  shpagesWritten = 0;

  frozen(): void {
    this.tFrozen = performance.now();
    this.freezingUs = Math.round((this.tFrozen - this.t0) * 1000);
  }

  thawed(): void {
    this.frozenUs = Math.round((performance.now() - this.tFrozen) * 1000);
  }

  memdump(ms: number): void {
    this.memdumpUs += Math.round(ms * 1000);
  }

  memwrite(ms: number): void {
    this.memwriteUs += Math.round(ms * 1000);
  }

  pages(scanned: number, written: number): void {
    this.pagesScanned += scanned;
    this.pagesWritten += written;
  }

  shmem(scanned: number, written: number): void {
    this.shpagesScanned += scanned;
    this.shpagesWritten += written;
  }

  /** A plain summary (for `crr dump --json`). */
  toJSON(): Record<string, number> {
    return {
      freezing_us: this.freezingUs,
      frozen_us: this.frozenUs,
      memdump_us: this.memdumpUs,
      memwrite_us: this.memwriteUs,
      pages_scanned: this.pagesScanned,
      pages_written: this.pagesWritten,
      shpages_scanned: this.shpagesScanned,
      shpages_written: this.shpagesWritten,
    };
  }
}

/** The stats-dump entry. crr has no page pipes: those counts stay 0, as do parent/lazy pages. */
export function statsEntry(s: DumpStats): Entry {
  return {
    dump: {
      freezing_time: s.freezingUs,
      frozen_time: s.frozenUs,
      memdump_time: s.memdumpUs,
      memwrite_time: s.memwriteUs,
      pages_scanned: BigInt(s.pagesScanned),
      pages_skipped_parent: 0n,
      pages_written: BigInt(s.pagesWritten),
      irmap_resolve: 0,
      pages_lazy: 0n,
      page_pipes: 0n,
      page_pipe_bufs: 0n,
      shpages_scanned: BigInt(s.shpagesScanned),
      shpages_skipped_parent: 0n,
      shpages_written: BigInt(s.shpagesWritten),
    },
  };
}
