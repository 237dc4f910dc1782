// fdGaps (src/resources/mm.ts): the close_range ranges that close every fd a task's image does
// not list, so the restored fd table is exactly the dumped one (the end-to-end check is
// restore-memory-fixtures.ts: "only the image fds").
import t from 'tap';
import { fdGaps } from '../src/resources/mm.js';

const END = 0xffffffff;

t.test('the ranges between and after the image fds, whatever their order or repeats', async (t) => {
  t.same(fdGaps([]), [[0, END]], 'no image fds: all of them');
  t.same(fdGaps([0, 1, 2]), [[3, END]], 'a dense table: one range after it');
  t.same(fdGaps([9, 2, 0, 1, 5, 5]), [[3, 4], [6, 8], [10, END]], 'gaps between sparse fds');
  t.same(fdGaps([3]), [[0, 2], [4, END]], 'a gap before the lowest');
});
