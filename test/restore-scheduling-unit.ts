// Per-thread scheduling in a thread's own list (src/restore/remote-threads.ts): crr's own values
// from /proc/thread-self/stat, and sched_setscheduler / setpriority only where the image's values
// differ from what the thread inherits. The round trip through the kernel is in
// test/roundtrip-programs.ts (the threads program checks every thread's policy, priority and nice).
import t from 'tap';
import { addThreadState, ownScheduling, schedulingOf, type Scheduling } from '../src/restore/remote-threads.js';
import { SYS } from '../src/restore/remote-sys.js';
import type { ThreadBatch } from '../src/restore/remote-thread-lists.js';

/** Records what addThreadState asks for; put() hands out addresses from 0x1000. */
function recordingBatch() {
  const calls: { nr: number; args: (number | bigint)[] }[] = [];
  const data: Buffer[] = [];
  const batch = {
    call(nr: number, args: (number | bigint)[]) {
      calls.push({ nr, args });
      return batch;
    },
    put(bytes: Buffer) {
      data.push(bytes);
      return 0x1000n + BigInt(data.length - 1) * 0x100n;
    },
    reserve() {
      return batch;
    },
  };
  return { batch: batch as unknown as ThreadBatch, calls, data };
}

const core = (sched: Record<string, number>) => ({ thread_core: { futex_rla: 0n, futex_rla_len: 0, ...sched } });
const OTHER0: Scheduling = { policy: 0, priority: 0, nice: 0 };
const schedulingCalls = (calls: { nr: number }[]) => calls.filter((c) => c.nr === SYS.sched_setscheduler || c.nr === SYS.setpriority);

t.test("crr's own scheduling is read from the stat line, whatever the command's name holds", async (t) => {
  // Fields 3..41 after "(comm) ": state S, then 15 fields, nice (19) = -5, ... rt_priority (40) = 7, policy (41) = 2.
  const fields = Array.from({ length: 39 }, (_, i) => String(i + 3));
  fields[0] = 'S';
  fields[19 - 3] = '-5';
  fields[40 - 3] = '7';
  fields[41 - 3] = '2';
  t.same(ownScheduling(`4242 (a) b (c)) ${fields.join(' ')} 0 0\n`), { policy: 2, priority: 7, nice: -5 });
  const own = ownScheduling();
  t.ok(Number.isInteger(own.policy) && Number.isInteger(own.nice), `this process: ${JSON.stringify(own)}`);
});

t.test('a thread whose image matches what it inherits gets no scheduling call', async (t) => {
  const { batch, calls } = recordingBatch();
  addThreadState(batch, core({ sched_policy: 0, sched_nice: 0 }), 7, { inheritedScheduling: OTHER0 });
  t.same(schedulingCalls(calls), []);
  t.same(schedulingOf(core({})), OTHER0, 'absent fields are SCHED_OTHER, priority 0, nice 0');
});

t.test('policy and priority, then nice, where they differ', async (t) => {
  const { batch, calls, data } = recordingBatch();
  addThreadState(batch, core({ sched_policy: 2, sched_prio: 5, sched_nice: -3 }), 7, { inheritedScheduling: OTHER0 });
  const [policy, nice] = schedulingCalls(calls);
  t.equal(policy?.nr, SYS.sched_setscheduler);
  t.same(policy?.args.slice(0, 2), [0, 2], 'the calling thread, SCHED_RR');
  t.equal(data[Number(((policy?.args[2] as bigint) - 0x1000n) / 0x100n)]?.readInt32LE(0), 5, 'sched_param holds the priority');
  t.equal(nice?.nr, SYS.setpriority);
  t.same(nice?.args, [0, 0, -3], 'PRIO_PROCESS, the calling thread, nice -3');

  const onlyNice = recordingBatch();
  addThreadState(onlyNice.batch, core({ sched_policy: 3, sched_nice: 4 }), 8, { inheritedScheduling: { policy: 3, priority: 0, nice: 0 } });
  t.same(schedulingCalls(onlyNice.calls).map((c) => c.nr), [SYS.setpriority], 'same policy inherited: nice only');
});
