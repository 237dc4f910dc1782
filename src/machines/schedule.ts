// Which tasks the restore machine may move into their next stage right now: pure functions over
// the per-task progress, so the rules (stay inside the current phase, parent before child in
// fork, at most `limit` tasks busy) are testable without any machine.
import { STAGES, stageIndex, type Stage, type TaskPlan } from '../resources/types.js';
import { PHASES, lastStageOf, type Phase } from './stages.js';

/** How far one task has got: `done` stages finished (STAGES[done] is its next), `busy` while running one. */
export interface TaskProgress {
  readonly done: number;
  readonly busy: boolean;
}

export type ProgressByPid = Readonly<Record<number, TaskProgress>>;

export function initialProgress(tasks: readonly TaskPlan[]): ProgressByPid {
  return Object.fromEntries(tasks.map((task) => [task.pid, { done: 0, busy: false }]));
}

export interface StageStart {
  readonly pid: number;
  readonly stage: Stage;
}

/** The tasks to advance now, in task-list order, and the stage each enters. */
export function runnable(tasks: readonly TaskPlan[], progress: ProgressByPid, phase: Phase, limit: number): StageStart[] {
  const phaseStages: readonly Stage[] = PHASES[phase];
  let busy = tasks.filter((task) => progress[task.pid]!.busy).length;
  const picked: StageStart[] = [];
  for (const task of tasks) {
    if (busy >= limit) break;
    const own = progress[task.pid]!;
    const next = STAGES[own.done];
    if (own.busy || next === undefined || !phaseStages.includes(next)) continue;
    if (next === 'fork' && !parentForked(task, progress)) continue;
    picked.push({ pid: task.pid, stage: next });
    busy += 1;
  }
  return picked;
}

/** A root (parent outside the restored tree) may fork at once; others wait for their parent. */
function parentForked(task: TaskPlan, progress: ProgressByPid): boolean {
  const parent = progress[task.ppid];
  return parent === undefined || parent.done > stageIndex('fork');
}

/** Every task has finished the phase's last stage. */
export function phaseComplete(tasks: readonly TaskPlan[], progress: ProgressByPid, phase: Phase): boolean {
  const needed = stageIndex(lastStageOf(phase)) + 1;
  return tasks.every((task) => progress[task.pid]!.done >= needed);
}
