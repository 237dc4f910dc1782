// criu's --action-script FILE (given any number of times): each script runs at every action of
// a dump or restore, in the order given, with CRTOOLS_SCRIPT_ACTION naming the action,
// CRTOOLS_IMAGE_DIR the images directory and, from the action that first has it on,
// CRTOOLS_INIT_PID the root task's PID. A script that exits non-zero fails the action.
import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { CrrError } from '../errors.js';

export function actionScripts(scripts: readonly string[], imagesDir: string): ((action: string, rootPid?: number) => Promise<void>) | undefined {
  if (scripts.length === 0) return undefined;
  const env: NodeJS.ProcessEnv = { ...process.env, CRTOOLS_IMAGE_DIR: resolve(imagesDir) };
  return async (action, rootPid) => {
    env['CRTOOLS_SCRIPT_ACTION'] = action;
    if (rootPid !== undefined) env['CRTOOLS_INIT_PID'] = String(rootPid);
    for (const script of scripts) {
      const ended = await new Promise<{ code: number | null; signal: string | null; error?: Error }>((done) => {
        const child = spawn(script, [], { env, stdio: ['ignore', 'inherit', 'inherit'] });
        child.on('error', (error) => done({ code: null, signal: null, error }));
        child.on('exit', (code, signal) => done({ code, signal }));
      });
      if (ended.error) throw new CrrError(`action script ${script} (${action}): ${ended.error.message}`);
      if (ended.code !== 0) throw new CrrError(`action script ${script} (${action}) ${ended.signal ? `was killed by ${ended.signal}` : `exited ${ended.code}`}`);
    }
  };
}
