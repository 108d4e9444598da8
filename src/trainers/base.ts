// The loop every trainer shares (ALGORITHMS.md §9): steps of (prepare → micro-batches with gradient
// accumulation → clip → optimiser step → LR schedule), metrics to console and metrics.jsonl, events,
// periodic checkpoints with exact resume, and a clean stop on an AbortSignal. `train()` is async and
// yields to the event loop between steps (native finalisers and the caller's I/O get to run).
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { clipGradNorm } from '../optim/clip.js';
import type { Optimizer } from '../optim/optimizer.js';
import type { LambdaLR } from '../optim/schedulers.js';
import type { Tensor } from '../tensor/index.js';
import type { Tokenizer } from '../tokenizer/index.js';
import { latestCheckpoint, loadCheckpoint, saveCheckpoint, type SavableModel } from './checkpoint.js';
import { MetricsLogger, type Metrics } from './metrics.js';

/** Options every trainer config has (documented defaults; TRL names in brackets). */
export interface CommonConfig {
  /** Folder for metrics.jsonl and checkpoints; null keeps nothing on disk. [output_dir] */
  outputDir: string | null;
  /** Optimisation steps to run. [max_steps] */
  maxSteps: number;
  /** Peak learning rate. [learning_rate] */
  learningRate: number;
  /** Global-norm gradient clipping; 0 disables. [max_grad_norm] */
  maxGradNorm: number;
  /** Warmup steps of the LR schedule. [warmup_steps] */
  warmupSteps: number;
  /** 'constant' | 'linear' | 'cosine' decay after warmup. [lr_scheduler_type] */
  lrScheduler: 'constant' | 'linear' | 'cosine';
  weightDecay: number;
  /** Save a checkpoint every N steps (0: only at the end). [save_steps] */
  saveSteps: number;
  /** Log to the console every N steps (metrics.jsonl gets every step). [logging_steps] */
  loggingSteps: number;
  seed: number;
  /** A checkpoint folder, or true for the newest in outputDir. [resume_from_checkpoint] */
  resumeFrom: string | boolean | null;
}

export type StepEvent = { step: number; metrics: Metrics };
type Listener = (e: StepEvent) => void | Promise<void>;

export interface TrainResult {
  steps: number;
  metrics: Metrics[];
  stoppedEarly: boolean;
  checkpoint: string | null;
}

export abstract class TrainerBase<C extends CommonConfig> {
  protected step = 0;
  protected logger: MetricsLogger | null = null;
  private readonly listeners: { step: Listener[]; checkpoint: ((dir: string) => void)[] } = { step: [], checkpoint: [] };

  /** The policy's tokenizer: checkpoints save it next to every model's weights. */
  abstract readonly tokenizer: Tokenizer;

  protected constructor(readonly config: C, protected optimizer: Optimizer, protected scheduler: LambdaLR | null) {}

  /** Subscribes to 'step' ({ step, metrics }) or 'checkpoint' (folder) events. */
  on(event: 'step', cb: Listener): this;
  on(event: 'checkpoint', cb: (dir: string) => void): this;
  on(event: 'step' | 'checkpoint', cb: Listener | ((dir: string) => void)): this {
    (this.listeners[event] as unknown[]).push(cb);
    return this;
  }

  /** One optimisation step: returns its metrics (the subclass runs forward/backward on micro-batches). */
  protected abstract trainingStep(): Promise<Metrics>;
  /** The models a checkpoint saves (e.g. { model, value_model }). */
  protected abstract checkpointModels(): Record<string, SavableModel>;
  /** The trainable parameters (for clipping). */
  protected abstract trainableParameters(): Tensor[];
  /** Data position to checkpoint, and restoring it. */
  protected abstract dataState(): unknown;
  protected abstract restoreDataState(state: unknown): void;
  /** Extra state to checkpoint (e.g. the adaptive KL coefficient). */
  protected extraState(): Record<string, unknown> { return {}; }
  protected restoreExtraState(_extra: Record<string, unknown>): void {}

  /** Clips gradients (if configured), steps the optimiser and schedule; returns grad norm and lr. */
  protected optimizerStep(): Metrics {
    const gradNorm = this.config.maxGradNorm > 0 ? clipGradNorm(this.trainableParameters(), this.config.maxGradNorm) : NaN;
    const lr = this.optimizer.lr;
    this.optimizer.step();
    this.scheduler?.step();
    this.optimizer.zeroGrad();
    return Number.isNaN(gradNorm) ? { lr } : { gradNorm, lr };
  }

  private resume(): void {
    const r = this.config.resumeFrom;
    if (!r) return;
    const dir = r === true ? (this.config.outputDir ? latestCheckpoint(this.config.outputDir) : null) : r;
    if (!dir) {
      if (r === true) return; // nothing to resume yet: start fresh
      throw new Error(`resumeFrom: no checkpoint at ${String(r)}`);
    }
    const state = loadCheckpoint(dir, this.optimizer, this.scheduler);
    this.step = state.step;
    this.restoreDataState(state.data);
    this.restoreExtraState(state.extra ?? {});
    this.onResumed(dir);
  }

  /** Called after resume() restored optimiser/scheduler/RNG/data; subclasses reload model weights. */
  protected onResumed(_dir: string): void {}

  saveCheckpoint(): string | null {
    if (!this.config.outputDir) return null;
    const dir = saveCheckpoint(this.config.outputDir, {
      models: this.checkpointModels(),
      tokenizer: this.tokenizer,
      optimizer: this.optimizer,
      scheduler: this.scheduler,
      state: { step: this.step, data: this.dataState(), config: this.config, extra: this.extraState() },
    });
    for (const cb of this.listeners.checkpoint) cb(dir);
    return dir;
  }

  /**
   * Runs until `maxSteps` (or the signal aborts: then it stops after the current step and writes a
   * resumable checkpoint). Resolves with the per-step metrics.
   */
  async train(opts: { signal?: AbortSignal } = {}): Promise<TrainResult> {
    const resuming = !!this.config.resumeFrom;
    this.resume();
    this.logger ??= new MetricsLogger(this.config.outputDir, false, resuming);
    if (resuming) this.logger.truncateAfter(this.step);
    const all: Metrics[] = [];
    let stoppedEarly = false;
    let last: string | null = null;
    while (this.step < this.config.maxSteps) {
      if (opts.signal?.aborted) { stoppedEarly = true; break; }
      const t0 = performance.now();
      const metrics = await this.trainingStep();
      this.step += 1;
      metrics['perf/stepSeconds'] = (performance.now() - t0) / 1000;
      for (const [k, v] of Object.entries(metrics)) {
        if (typeof v === 'number' && Number.isNaN(v) && (k === 'loss' || k.endsWith('/loss'))) {
          throw new Error(`step ${this.step}: ${k} is NaN — check the data and reward functions (a NaN loss is never trained on)`);
        }
      }
      all.push(metrics);
      this.logger.log(this.step, metrics);
      if (this.config.loggingSteps > 0 && this.step % this.config.loggingSteps === 0) console.log(formatLine(this.step, this.config.maxSteps, metrics));
      for (const cb of this.listeners.step) await cb({ step: this.step, metrics });
      if (this.config.saveSteps > 0 && this.step % this.config.saveSteps === 0) last = this.saveCheckpoint();
      await yieldToLoop();
    }
    if (stoppedEarly || this.step >= this.config.maxSteps) last = this.saveCheckpoint() ?? last;
    return { steps: this.step, metrics: all, stoppedEarly, checkpoint: last };
  }
}

function formatLine(step: number, max: number, m: Metrics): string {
  const keys = ['loss', 'reward/mean', 'kl/mean', 'policy/clipFrac', 'rewards/accuracies', 'accuracy', 'lr'];
  return `[${step}/${max}] ${keys.filter((k) => k in m).map((k) => `${k}=${Number(m[k]).toPrecision(4)}`).join(' ')}`;
}
