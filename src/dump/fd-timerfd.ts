// timerfd files for files.img: clock, pending ticks, settime flags and the time left and
// interval, as fdinfo shows them. The time left is relative even for a TFD_TIMER_ABSTIME timer
// (CRIU's format does the same; the restore adds the clock's time back).
import { fdinfoField, type AnonFdDumper } from './fd-eventfd.js';
import { zeroFown } from './regfile.js';

function pair(text: string | undefined): [bigint, bigint] {
  const m = /\((\d+),\s*(\d+)\)/.exec(text ?? '');
  return m ? [BigInt(m[1]!), BigInt(m[2]!)] : [0n, 0n];
}

export const timerfdDumper: AnonFdDumper = {
  type: 17,
  matches: (link) => link === 'anon_inode:[timerfd]',
  entry(id, flags, fdinfo) {
    const [vsec, vnsec] = pair(fdinfoField(fdinfo, 'it_value'));
    const [isec, insec] = pair(fdinfoField(fdinfo, 'it_interval'));
    return {
      type: 17,
      id,
      tfd: {
        id,
        flags,
        fown: zeroFown(),
        clockid: Number(fdinfoField(fdinfo, 'clockid') ?? 0),
        ticks: BigInt(fdinfoField(fdinfo, 'ticks') ?? '0'),
        settime_flags: parseInt(fdinfoField(fdinfo, 'settime flags') ?? '0', 8),
        vsec,
        vnsec: Number(vnsec),
        isec,
        insec: Number(insec),
      },
    };
  },
};
