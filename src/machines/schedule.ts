// Which tasks the restore machine may move into their next phase right now. The rules: stay
// inside the current phase, parent before child in fork, at most `limit` tasks busy. A task
// enters a phase at its first stage and goes through the phase's other stages by itself (the
// task machine), keeping its slot until it finished the phase's last stage. Kept as a
// small mutable book (queues and counters) rather than a progress record copied per event: the
// machine asks it once per task per stage, so every question must cost O(1) per answer, or a
// 4,000-task tree spends seconds re-scanning and re-copying (measured: 0.6 s of CPU per
// restore of 100 tasks with the old copy-and-scan version, growing with the square of the tree).
import { STAGES, stageIndex, type Stage, type TaskPlan } from '../resources/types.js';
import { PHASES, PHASE_ORDER, lastStageOf, type Phase } from './stages.js';

export interface StageStart {
  readonly pid: number;
  readonly stage: Stage;
}

const FORK_INDEX = stageIndex('fork');

export class Schedule {
  /** Stages finished per task (STAGES[done] is its next). */
  private readonly done = new Map<number, number>();
  /** Children of each task in task-list order: they may fork once it has. */
  private readonly children = new Map<number, number[]>();
  /** Tasks that may enter the current phase, front first. */
  private ready: number[] = [];
  private head = 0;
  private busy = 0;
  private phase: Phase | undefined;
  /** Tasks that finished the current phase's last stage. */
  private finished = 0;
  private readonly order: readonly number[];

  constructor(tasks: readonly TaskPlan[]) {
    const pids = new Set(tasks.map((task) => task.pid));
    for (const task of tasks) {
      this.done.set(task.pid, 0);
      if (pids.has(task.ppid)) {
        const siblings = this.children.get(task.ppid);
        if (siblings) siblings.push(task.pid);
        else this.children.set(task.ppid, [task.pid]);
      }
    }
    this.order = tasks.filter((task) => !pids.has(task.ppid)).map((task) => task.pid);
    this.all = tasks.map((task) => task.pid);
  }

  private readonly all: readonly number[];

  /** Enter `phase`: every task may go, except in fork, where only roots (parent outside) may. */
  private enter(phase: Phase): void {
    this.phase = phase;
    this.finished = 0;
    this.ready = [...(phase === 'fork' ? this.order : this.all)];
    this.head = 0;
  }

  /** The tasks to advance now, each marked busy, and the stage each enters (the phase's first). */
  take(phase: Phase, limit: number): StageStart[] {
    if (this.phase !== phase) this.enter(phase);
    const picked: StageStart[] = [];
    while (this.busy < limit && this.head < this.ready.length) {
      const pid = this.ready[this.head++]!;
      picked.push({ pid, stage: STAGES[this.done.get(pid)!]! });
      this.busy += 1;
    }
    if (this.head > 1024 && this.head * 2 > this.ready.length) {
      this.ready = this.ready.slice(this.head);
      this.head = 0;
    }
    return picked;
  }

  /** `pid` finished `stage`: after the phase's last stage its slot is free (before it, the task goes on by itself). */
  finish(pid: number, stage: Stage): void {
    const index = stageIndex(stage);
    this.done.set(pid, index + 1);
    if (stage === lastStageOf(this.phase!)) {
      this.busy -= 1;
      this.finished += 1;
    }
    if (index === FORK_INDEX) for (const child of this.children.get(pid) ?? []) this.ready.push(child);
  }

  /** Every task has finished the phase's last stage. */
  complete(phase: Phase): boolean {
    if (this.phase !== phase) return this.all.length === 0 || this.doneAll(phase);
    return this.finished === this.all.length;
  }

  private doneAll(phase: Phase): boolean {
    const needed = stageIndex(lastStageOf(phase)) + 1;
    return this.all.every((pid) => this.done.get(pid)! >= needed);
  }

  /** Stages finished by `pid` (for tests and diagnostics). */
  stagesDone(pid: number): number {
    return this.done.get(pid) ?? 0;
  }
}

export { PHASES, PHASE_ORDER };
