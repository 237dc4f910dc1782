// signalfd files for files.img: the mask the fd accepts (fdinfo "sigmask", hex, the real mask).
import { fdinfoField, type AnonFdDumper } from './fd-eventfd.js';
import { zeroFown } from './regfile.js';

export const signalfdDumper: AnonFdDumper = {
  type: 9,
  matches: (link) => link === 'anon_inode:[signalfd]',
  entry(id, flags, fdinfo) {
    const sigmask = BigInt(`0x${fdinfoField(fdinfo, 'sigmask') ?? '0'}`);
    return { type: 9, id, sgfd: { id, flags, fown: zeroFown(), sigmask } };
  },
};
