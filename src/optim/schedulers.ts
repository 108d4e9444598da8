// Learning-rate schedules: PyTorch's LambdaLR (lr = base_lr · λ(step)) and the schedule factories of
// Hugging Face transformers (optimization.py), reproduced formula for formula so runs are comparable:
//   constant                 λ(s) = 1
//   constant with warmup     λ(s) = s < w ? s / max(1, w) : 1
//   linear with warmup       λ(s) = s < w ? s / max(1, w) : max(0, (T − s) / max(1, T − w))
//   cosine with warmup       λ(s) = s < w ? s / max(1, w)
//                                   : max(0, ½(1 + cos(π · 2c · (s − w) / max(1, T − w))))   (c = numCycles)
// Like PyTorch, constructing a scheduler applies λ(0) at once (so warmup starts from lr 0), and each
// `step()` — called after `optimizer.step()` — advances to the next step's lr.
import { type Optimizer } from './optimizer.js';

/** Multiplier of the base lr as a function of the step (0 = before the first optimizer step). */
export type LrLambda = (step: number) => number;

export interface SchedulerStateDict {
  lastStep: number;
  baseLrs: number[];
}

/** lr of group i = baseLrs[i] · λᵢ(step); one λ for all groups or one per group. */
export class LambdaLR {
  readonly optimizer: Optimizer;
  private _baseLrs: number[];
  private _lastStep = -1;
  private readonly lambdas: LrLambda[];
  private lastLr: number[] = [];

  constructor(optimizer: Optimizer, lrLambda: LrLambda | LrLambda[]) {
    if (!optimizer || typeof (optimizer as Optimizer).setGroupLrs !== 'function') {
      throw new TypeError(`LambdaLR: 'optimizer' must be an optimizer (AdamW, SGD), got ${optimizer === null ? 'null' : typeof optimizer}`);
    }
    this.optimizer = optimizer;
    this._baseLrs = [...optimizer.baseLrs];
    const n = this._baseLrs.length;
    if (Array.isArray(lrLambda)) {
      if (lrLambda.length !== n) throw new RangeError(`LambdaLR: expected ${n} lr lambdas (one per param group), got ${lrLambda.length}`);
      this.lambdas = [...lrLambda];
    } else {
      this.lambdas = new Array<LrLambda>(n).fill(lrLambda);
    }
    this.lambdas.forEach((f, i) => {
      if (typeof f !== 'function') throw new TypeError(`LambdaLR: 'lrLambda'${Array.isArray(lrLambda) ? `[${i}]` : ''} must be a function (step) => multiplier, got ${typeof f}`);
    });
    this.step(); // step 0: lr = base · λ(0)
  }

  /** Each group's lr before scheduling (the optimizer's `baseLrs` unless loaded from a state dict). */
  get baseLrs(): number[] {
    return [...this._baseLrs];
  }

  /** Steps taken so far (0 right after construction). */
  get lastStep(): number {
    return this._lastStep;
  }

  /** Advances one step and sets each group's lr to base · λ(step). Call after `optimizer.step()`. */
  step(): void {
    this._lastStep += 1;
    this.apply();
  }

  private apply(): void {
    const s = this._lastStep;
    const lrs = this._baseLrs.map((base, i) => {
      const m = this.lambdas[i](s);
      if (typeof m !== 'number' || !Number.isFinite(m) || m < 0) {
        throw new RangeError(`LambdaLR: lrLambda(${s}) returned ${m}; the multiplier must be a finite number >= 0`);
      }
      return base * m;
    });
    this.optimizer.setGroupLrs(lrs);
    this.lastLr = lrs;
  }

  /** The lr of each group as set by the last `step()` (PyTorch's `get_last_lr()`). */
  getLastLr(): number[] {
    return [...this.lastLr];
  }

  stateDict(): SchedulerStateDict {
    return { lastStep: this._lastStep, baseLrs: [...this._baseLrs] };
  }

  /** Restores the step count (and base lrs) and re-applies the lr for that step. */
  loadStateDict(sd: SchedulerStateDict): void {
    if (!sd || typeof sd !== 'object' || !Number.isInteger(sd.lastStep) || sd.lastStep < 0) {
      throw new TypeError(`LambdaLR.loadStateDict: expected { lastStep: integer >= 0, baseLrs: number[] }, got ${JSON.stringify(sd)}`);
    }
    if (sd.baseLrs !== undefined) {
      if (!Array.isArray(sd.baseLrs) || sd.baseLrs.length !== this._baseLrs.length || sd.baseLrs.some((v) => !(v >= 0) || !Number.isFinite(v))) {
        throw new RangeError(`LambdaLR.loadStateDict: 'baseLrs' must hold ${this._baseLrs.length} finite numbers >= 0 (one per param group), got ${JSON.stringify(sd.baseLrs)}`);
      }
      this._baseLrs = [...sd.baseLrs];
    }
    this._lastStep = sd.lastStep;
    this.apply();
  }
}

function checkSteps(owner: string, args: Record<string, number>): void {
  for (const [k, v] of Object.entries(args)) {
    if (!Number.isInteger(v) || v < 0) throw new RangeError(`${owner}: '${k}' must be an integer >= 0, got ${v}`);
  }
}

/** λ = 1 (HF `get_constant_schedule`). */
export function getConstantSchedule(optimizer: Optimizer): LambdaLR {
  return new LambdaLR(optimizer, () => 1);
}

/** Linear warmup from 0 over `numWarmupSteps`, then constant (HF `get_constant_schedule_with_warmup`). */
export function getConstantScheduleWithWarmup(optimizer: Optimizer, numWarmupSteps: number): LambdaLR {
  checkSteps('getConstantScheduleWithWarmup', { numWarmupSteps });
  return new LambdaLR(optimizer, (s) => (s < numWarmupSteps ? s / Math.max(1, numWarmupSteps) : 1));
}

/** Linear warmup, then linear decay to 0 at `numTrainingSteps` (HF `get_linear_schedule_with_warmup`). */
export function getLinearScheduleWithWarmup(optimizer: Optimizer, numWarmupSteps: number, numTrainingSteps: number): LambdaLR {
  checkSteps('getLinearScheduleWithWarmup', { numWarmupSteps, numTrainingSteps });
  return new LambdaLR(optimizer, (s) => {
    if (s < numWarmupSteps) return s / Math.max(1, numWarmupSteps);
    return Math.max(0, (numTrainingSteps - s) / Math.max(1, numTrainingSteps - numWarmupSteps));
  });
}

/**
 * Linear warmup, then cosine decay; `numCycles` 0.5 (default) is one half-cosine from the base lr to 0
 * at `numTrainingSteps` (HF `get_cosine_schedule_with_warmup`).
 */
export function getCosineScheduleWithWarmup(optimizer: Optimizer, numWarmupSteps: number, numTrainingSteps: number, numCycles = 0.5): LambdaLR {
  checkSteps('getCosineScheduleWithWarmup', { numWarmupSteps, numTrainingSteps });
  if (!Number.isFinite(numCycles) || numCycles < 0) throw new RangeError(`getCosineScheduleWithWarmup: 'numCycles' must be a finite number >= 0, got ${numCycles}`);
  return new LambdaLR(optimizer, (s) => {
    if (s < numWarmupSteps) return s / Math.max(1, numWarmupSteps);
    const progress = (s - numWarmupSteps) / Math.max(1, numTrainingSteps - numWarmupSteps);
    return Math.max(0, 0.5 * (1 + Math.cos(Math.PI * numCycles * 2 * progress)));
  });
}

export type SchedulerType = 'constant' | 'linear' | 'cosine';

export interface SchedulerConfig {
  /** 'constant' (with warmup when warmup > 0), 'linear' or 'cosine'. */
  type: SchedulerType;
  /** Warmup steps; default 0. Takes precedence over `warmupRatio` when > 0 (as in HF TrainingArguments). */
  warmupSteps?: number;
  /** Warmup as a fraction of `totalSteps` (rounded up), used when `warmupSteps` is 0. Default 0. */
  warmupRatio?: number;
  /** Total optimizer steps of the run (needed by 'linear' and 'cosine'). */
  totalSteps?: number;
  /** Cosine cycles (default 0.5: decay to 0 once). */
  numCycles?: number;
}

/** Builds a schedule from a trainer config, resolving warmup like HF's `get_warmup_steps`. */
export function createScheduler(optimizer: Optimizer, config: SchedulerConfig): LambdaLR {
  const { type, warmupSteps = 0, warmupRatio = 0, totalSteps } = config ?? ({} as SchedulerConfig);
  if (type !== 'constant' && type !== 'linear' && type !== 'cosine') {
    throw new TypeError(`createScheduler: 'type' must be 'constant', 'linear' or 'cosine', got ${JSON.stringify(type)}`);
  }
  checkSteps('createScheduler', { warmupSteps });
  if (!(warmupRatio >= 0 && warmupRatio <= 1)) throw new RangeError(`createScheduler: 'warmupRatio' must be in [0, 1], got ${warmupRatio}`);
  const needsTotal = type !== 'constant' || (warmupSteps === 0 && warmupRatio > 0);
  if (needsTotal && totalSteps === undefined) {
    throw new TypeError(`createScheduler: '${type}'${type === 'constant' ? ' with warmupRatio' : ''} needs 'totalSteps' (the number of optimizer steps in the run)`);
  }
  if (totalSteps !== undefined) checkSteps('createScheduler', { totalSteps });
  const warmup = warmupSteps > 0 ? warmupSteps : Math.ceil((totalSteps ?? 0) * warmupRatio);
  if (type === 'constant') return warmup > 0 ? getConstantScheduleWithWarmup(optimizer, warmup) : getConstantSchedule(optimizer);
  if (type === 'linear') return getLinearScheduleWithWarmup(optimizer, warmup, totalSteps!);
  return getCosineScheduleWithWarmup(optimizer, warmup, totalSteps!, config.numCycles ?? 0.5);
}
