// The `crr` command line: dispatches `crr <command>` to src/cli/commands/<command>.ts and turns
// every CrrError into one line on stderr with its exit code.
import { CrrError, UsageError } from '../errors.js';

const COMMANDS: Record<string, string> = {
  show: 'print an image as crit-style JSON, or summarise a checkpoint directory',
  encode: 'turn crit-style JSON back into an image file',
  dump: 'checkpoint a process tree into CRIU-format images',
  restore: 'restore a process tree from CRIU-format images',
  plan: 'print the restore plan of a checkpoint without restoring',
  machines: 'draw the restore and task state machines',
  trace: 'render a recorded trace',
  swrk: 'serve CRIU\'s RPC on a socket fd, as `criu swrk FD` (runc --criu)',
  check: 'check that this machine can dump and restore (capabilities, native layer, a real round trip)',
};

export interface Command {
  run(argv: string[]): Promise<number>;
}

function usage(): string {
  const lines = Object.entries(COMMANDS).map(([name, what]) => `  ${name.padEnd(10)} ${what}`);
  return `usage: crr <command> [options]\n\ncommands:\n${lines.join('\n')}\n`;
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '-h' || name === '--help') {
    process.stdout.write(usage());
    return name ? 0 : 2;
  }
  try {
    if (!Object.hasOwn(COMMANDS, name)) throw new UsageError(`unknown command '${name}' (see crr --help)`);
    let command: Command;
    try {
      command = (await import(`./commands/${name}.js`)) as Command;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ERR_MODULE_NOT_FOUND') {
        throw new CrrError(`command '${name}' is not available in this build`);
      }
      throw err;
    }
    return await command.run(rest);
  } catch (err) {
    if (err instanceof CrrError) {
      process.stderr.write(`crr ${name}: ${err.message}\n`);
      return err.exitCode;
    }
    const e = err as Error;
    process.stderr.write(`crr ${name}: internal error: ${e?.stack ?? String(err)}\n`);
    return 70;
  }
}
