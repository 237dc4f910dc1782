// Where the steering repo's shared/ folder is: beside the repository (../shared from its root),
// for the developers and for CI alike.
import { fileURLToPath } from 'node:url';

export const SHARED = fileURLToPath(new URL('../../../shared/', import.meta.url));
