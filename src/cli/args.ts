// Walks a command's argv the way criu reads options: `--name value`, `--name=value`, `-x value`.
// Each command decides what its options mean; this only splits them and fetches values.
import { UsageError } from '../errors.js';

export interface Option {
  /** The option as written, without any `=value` part (e.g. '-D', '--images-dir'). */
  readonly arg: string;
  /** The option's value: the `=value` part, else the next argument; a UsageError if there is none. */
  value(): string;
}

export function* options(argv: readonly string[]): Generator<Option> {
  for (let i = 0; i < argv.length; i++) {
    let arg = argv[i]!;
    let inline: string | undefined;
    const eq = arg.startsWith('--') ? arg.indexOf('=') : -1;
    if (eq > 0) {
      inline = arg.slice(eq + 1);
      arg = arg.slice(0, eq);
    }
    const name = arg;
    yield {
      arg: name,
      value: () => {
        const v = inline ?? argv[++i];
        if (v === undefined) throw new UsageError(`option ${name} needs a value`);
        inline = undefined;
        return v;
      },
    };
  }
}
