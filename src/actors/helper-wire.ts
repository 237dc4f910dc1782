// The helper channel's wire (src/actors/helper.ts): msgpack as the C helper reads it, one
// request or answer per SOCK_SEQPACKET packet (read and written by native/addon/channel.cc).
import { Packr, Unpackr } from 'msgpackr';

// Plain maps, no msgpackr records: the C side reads standard msgpack only. 'auto' keeps 64-bit
// values (signal masks) exact as bigint and everything that fits as a number.
export const packr = new Packr({ useRecords: false, encodeUndefinedAsNil: true });
export const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'auto' } as unknown as ConstructorParameters<
  typeof Unpackr
>[0]);
