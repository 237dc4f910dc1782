// Placeholder until proto/ exists: generates static protobuf code from proto/*.proto.
import { readdirSync } from 'node:fs';
const protos = readdirSync(new URL('../proto/', import.meta.url)).filter((f) => f.endsWith('.proto'));
if (protos.length) throw new Error('build-proto: not written yet');
