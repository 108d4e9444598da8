// What the offline trainers (SFT, Reward, DPO — ALGORITHMS.md §9) share on top of TrainerBase: a fixed
// dataset read through a resumable DataLoader, one optimisation step per batch of `batchSize` rows split
// into micro-batches of `microBatchSize` rows with gradient accumulation, model weights reloaded on
// resume, an `evaluate()` pass, and the sequence/token log-prob plumbing of full (right-padded) sequences.
//
// Exact micro-batching: each trainer's computeLoss takes the global normalisers of the whole step (rows,
// tokens) and scales its micro-batch loss so that the accumulated gradient equals the full batch's.
import path from 'node:path';
import { DataLoader, Dataset, datasetFromRows, type LoaderState, type Row } from '../data/index.js';
import { loadCausalLM, loadRewardModel, type CausalLM, type RewardModel } from '../models/index.js';
import { linearTokenLogprobs } from '../ops/index.js';
import { AdamW } from '../optim/optimizer.js';
import { createScheduler } from '../optim/schedulers.js';
import { manualSeed, noGrad, stack, Tensor, tidy } from '../tensor/index.js';
import { TrainerBase, type CommonConfig } from './base.js';
import { nonNegative, nonNegativeInt, oneOf, positive, positiveInt, type FieldSpec } from './config.js';
import { microBatches } from './common.js';
import type { Metrics } from './metrics.js';

/** Options the offline trainers add to CommonConfig. */
export interface OfflineConfig extends CommonConfig {
  /** Rows per optimisation step (TRL: per_device_train_batch_size × gradient_accumulation_steps). */
  batchSize: number;
  /** Rows per forward/backward micro-batch; 0 = the whole batch at once (TRL: per_device_train_batch_size).
   *  Gradients accumulate exactly: any split gives the full batch's gradient. */
  microBatchSize: number;
  /** Reshuffle the dataset every epoch (seeded by `seed`). */
  shuffle: boolean;
  /** A row that does not fit (context / maxLength): 'error' (default) or 'skip' (dropped and counted). */
  overlong: 'error' | 'skip';
}

type Specs<T> = { [K in keyof T]: FieldSpec<T[K]> };

/** The schema fields every offline trainer has; `defaults` holds the trainer's own defaults (TRL's). */
export function offlineSchema(defaults: { learningRate: number; batchSize?: number; lrScheduler?: 'constant' | 'linear' | 'cosine' }): Specs<OfflineConfig> {
  return {
    outputDir: { default: null as string | null, doc: 'folder for metrics.jsonl and checkpoints (null: nothing on disk)', trl: 'output_dir' },
    maxSteps: { default: 100, check: positiveInt, doc: 'optimisation steps (batches of batchSize rows)', trl: 'max_steps' },
    learningRate: { default: defaults.learningRate, check: positive, doc: 'peak learning rate (AdamW)', trl: 'learning_rate' },
    maxGradNorm: { default: 1.0, check: nonNegative, doc: 'global-norm gradient clipping (0: off)', trl: 'max_grad_norm' },
    warmupSteps: { default: 0, check: nonNegativeInt, doc: 'LR warmup steps', trl: 'warmup_steps' },
    lrScheduler: { default: defaults.lrScheduler ?? 'linear', check: oneOf('constant', 'linear', 'cosine'), doc: 'LR decay after warmup', trl: 'lr_scheduler_type' },
    weightDecay: { default: 0, check: nonNegative, doc: 'AdamW decoupled weight decay', trl: 'weight_decay' },
    saveSteps: { default: 0, check: nonNegativeInt, doc: 'checkpoint every N steps (0: only at the end)', trl: 'save_steps' },
    loggingSteps: { default: 1, check: nonNegativeInt, doc: 'console log every N steps (0: never; metrics.jsonl gets every step)', trl: 'logging_steps' },
    seed: { default: 42, check: nonNegativeInt, doc: 'seed for shuffling and libtorch', trl: 'seed' },
    resumeFrom: { default: null as string | boolean | null, doc: 'checkpoint folder, or true for the newest in outputDir', trl: 'resume_from_checkpoint' },
    batchSize: { default: defaults.batchSize ?? 8, check: positiveInt, doc: 'rows per optimisation step', trl: 'per_device_train_batch_size × gradient_accumulation_steps' },
    microBatchSize: {
      default: 0,
      check: (v, all) => (!Number.isInteger(v) || v < 0 ? 'must be an integer ≥ 0 (0: the whole batch)'
        : v > (all.batchSize as number) ? `must be ≤ batchSize (${String(all.batchSize)})` : null),
      doc: 'rows per forward/backward (0: the whole batch); gradients accumulate exactly',
      trl: 'per_device_train_batch_size',
    },
    shuffle: { default: true, doc: 'reshuffle the data every epoch (seeded)' },
    overlong: { default: 'error', check: oneOf('error', 'skip'), doc: "rows that do not fit: 'error' or 'skip' (counted in data/skipped)" },
  };
}

/** A prepared batch: named tensors with the rows on dim 0 (other fields are carried along unsliced). */
export type TensorBatch = object;

/** Rows dim-0 slice [s, e) of every tensor of a batch (views). */
export function sliceBatch<B extends TensorBatch>(b: B, s: number, e: number): B {
  const out: Record<string, unknown> = {};
  for (const [k, t] of Object.entries(b)) out[k] = t instanceof Tensor ? t.narrow(0, s, e - s) : t;
  return out as B;
}

function disposeBatch(b: TensorBatch): void {
  for (const t of Object.values(b)) if (t instanceof Tensor) t.dispose();
}

/** A collated batch and what the step needs to know about it. */
export interface Prepared<B extends TensorBatch> {
  batch: B;
  /** Rows kept (after overlong skips). */
  size: number;
  /** Real (attention-mask) tokens the forward passes process, for perf/tokensPerSec. */
  tokens: number;
  /** Rows dropped by overlong: 'skip'. */
  skipped: number;
}

/**
 * Per-token log-probs of every next token of right-padded sequences: `[B, T−1]`, entry t = log π(ids[t+1] |
 * ids[≤t]), from one forward without logits (logitsToKeep: 0) and the fused linear log-prob op (§1b).
 * Entries whose target is padding hold finite values: mask them. With `hits`, also whether each next
 * token is the model's argmax `[B, T−1]` (bool, no graph; one `[T, V]` logits block per row) — a metric.
 */
export function nextTokenLogprobs(model: CausalLM, ids: Tensor, attentionMask: Tensor, opts: { hits?: boolean } = {}): { logprobs: Tensor; hits?: Tensor } {
  const [B, T] = ids.shape;
  const { logits, hidden } = model.forward(ids, { attentionMask, logitsToKeep: 0 });
  logits.dispose();
  const H = hidden.shape[2];
  const W = model.lmHeadWeight();
  const targets = ids.narrow(1, 1, T - 1);
  const logprobs = linearTokenLogprobs(hidden.narrow(1, 0, T - 1).reshape(B * (T - 1), H), W, targets.reshape(B * (T - 1))).logprobs.view(B, T - 1);
  if (!opts.hits) return { logprobs };
  const hits = noGrad(() => tidy(() => {
    const h = hidden.detach();
    const Wt = W.detach().t();
    const rows: Tensor[] = [];
    for (let b = 0; b < B; b++) rows.push(h.select(0, b).narrow(0, 0, T - 1).matmul(Wt).argmax(-1));
    return stack(rows, 0).eq(targets);
  }));
  return { logprobs, hits };
}

/** The model an offline trainer optimises (a causal LM or a reward model). */
export type TrainedModel = CausalLM | RewardModel;

/**
 * Base of SFTTrainer, RewardTrainer and DPOTrainer: the dataset, the loader, the step loop with exact
 * micro-batching, resume of the model weights, and evaluate().
 */
export abstract class OfflineTrainer<C extends OfflineConfig, B extends TensorBatch, N> extends TrainerBase<C> {
  readonly dataset: Dataset;
  protected loader: DataLoader;
  private iterator: AsyncIterator<Row[]> | null = null;
  /** Rows dropped so far by overlong: 'skip'. */
  protected skippedRows = 0;

  protected constructor(readonly name: string, config: C, readonly trained: TrainedModel, data: Dataset | Row[]) {
    manualSeed(config.seed);
    const params = trained.parameters().filter((p) => p.requiresGrad);
    if (params.length === 0) throw new Error(`${name}: the model has no trainable parameters (requiresGrad is false everywhere)`);
    const optimizer = new AdamW(params, { lr: config.learningRate, weightDecay: config.weightDecay });
    const scheduler = createScheduler(optimizer, { type: config.lrScheduler, warmupSteps: config.warmupSteps, totalSteps: config.maxSteps });
    super(config, optimizer, scheduler);
    this.dataset = toDataset(name, data);
    this.loader = new DataLoader(this.dataset, { batchSize: config.batchSize, shuffle: config.shuffle, seed: config.seed, epochs: Infinity });
    trained.train();
  }

  /** Collates rows into a prepared batch (tensors owned by the caller). */
  protected abstract collate(rows: Row[]): Prepared<B>;
  /** The whole step's normalisers (e.g. rows and loss tokens), passed to every micro-batch's computeLoss. */
  protected abstract totals(p: Prepared<B>): N;
  /** Loss of a micro-batch, normalised by the step's totals (so micro-batch losses add up to the batch loss). */
  protected abstract microLoss(batch: B, totals: N): { loss: Tensor; metrics: Metrics };
  /** Weight of a micro-batch's metrics in the step's metrics (e.g. its share of rows or loss tokens). */
  protected abstract metricWeight(batch: B, totals: N): number;

  protected trainableParameters(): Tensor[] {
    return this.trained.parameters().filter((p) => p.requiresGrad);
  }
  protected checkpointModels() {
    return { model: this.trained };
  }
  protected dataState(): unknown {
    return this.loader.state();
  }
  protected restoreDataState(state: unknown): void {
    this.loader = DataLoader.fromState(this.dataset, state as LoaderState);
    this.iterator = null;
  }
  protected override extraState(): Record<string, unknown> {
    return { skippedRows: this.skippedRows };
  }
  protected override restoreExtraState(extra: Record<string, unknown>): void {
    this.skippedRows = typeof extra.skippedRows === 'number' ? extra.skippedRows : 0;
  }
  /** Loads the checkpoint's weights into the model in place (the optimiser keeps its parameters). */
  protected override onResumed(dir: string): void {
    reloadWeights(this.trained, path.join(dir, 'model'));
  }

  private async nextRows(): Promise<Row[]> {
    this.iterator ??= this.loader[Symbol.asyncIterator]();
    const r = await this.iterator.next();
    if (r.done) throw new Error(`${this.name}: the dataset is empty`);
    return r.value;
  }

  /** Hook before each step's collation (DPO fills its reference cache). */
  protected async beforeCollate(_rows: Row[]): Promise<void> {}

  protected async trainingStep(): Promise<Metrics> {
    const t0 = performance.now();
    let prep: Prepared<B> | null = null;
    for (let tries = 0; tries < 1000 && !prep; tries++) {
      const rows = await this.nextRows();
      await this.beforeCollate(rows);
      const p = tidy(() => this.collate(rows));
      this.skippedRows += p.skipped;
      if (p.size > 0) prep = p;
      else disposeBatch(p.batch);
    }
    if (!prep) throw new Error(`${this.name}: every row of 1000 batches in a row was skipped as overlong; raise maxLength or check the data`);
    const totals = tidy(() => this.totals(prep!));
    const mb = this.config.microBatchSize > 0 ? this.config.microBatchSize : prep.size;
    let loss = 0;
    const sums: Metrics = {};
    try {
      for (const [s, e] of microBatches(prep.size, mb)) {
        const r = tidy(() => {
          const sub = sliceBatch(prep!.batch, s, e);
          const { loss: l, metrics } = this.microLoss(sub, totals);
          l.backward();
          return { loss: l.item(), metrics, weight: this.metricWeight(sub, totals) };
        });
        loss += r.loss;
        for (const [k, v] of Object.entries(r.metrics)) sums[k] = (sums[k] ?? 0) + r.weight * v;
      }
    } finally {
      disposeBatch(prep.batch);
    }
    const opt = this.optimizerStep();
    const seconds = (performance.now() - t0) / 1000;
    return { loss, ...sums, ...opt, 'perf/tokensPerSec': prep.tokens / seconds, 'data/skipped': this.skippedRows };
  }

  /**
   * Loss and metrics over a whole dataset without training (no graph), as means over its batches
   * weighted like the training metrics; keys prefixed `eval/`.
   */
  async evaluate(data: Dataset | Row[], opts: { batchSize?: number } = {}): Promise<Metrics> {
    const ds = toDataset(this.name, data);
    const loader = new DataLoader(ds, { batchSize: opts.batchSize ?? this.config.batchSize, shuffle: false });
    const wasTraining = this.trained.training;
    this.trained.eval();
    const sums: Metrics = {};
    let weights = 0;
    let loss = 0;
    let lossWeight = 0;
    try {
      for await (const rows of loader) {
        await this.beforeCollate(rows);
        const p = tidy(() => this.collate(rows));
        try {
          if (p.size === 0) continue;
          const totals = tidy(() => this.totals(p));
          const r = noGrad(() => tidy(() => {
            const { loss: l, metrics } = this.microLoss(p.batch, totals);
            return { loss: l.item(), metrics, weight: this.metricWeight(p.batch, totals) };
          }));
          // Each batch's loss is its own mean; weight batches by rows.
          loss += r.loss * p.size;
          lossWeight += p.size;
          for (const [k, v] of Object.entries(r.metrics)) sums[k] = (sums[k] ?? 0) + p.size * v;
          weights += p.size;
        } finally {
          disposeBatch(p.batch);
        }
      }
    } finally {
      this.trained.train(wasTraining);
    }
    const out: Metrics = { 'eval/loss': lossWeight > 0 ? loss / lossWeight : NaN };
    for (const [k, v] of Object.entries(sums)) out[`eval/${k}`] = v / weights;
    return out;
  }
}

function toDataset(name: string, data: Dataset | Row[]): Dataset {
  if (data instanceof Dataset) return data;
  if (Array.isArray(data)) return datasetFromRows(data);
  throw new TypeError(`${name}: 'trainDataset' must be a Dataset (loadDataset / datasetFromRows) or an array of rows`);
}

/** Copies the weights of a saved Hugging Face folder into `model` in place (resume). */
export function reloadWeights(model: TrainedModel, dir: string): void {
  const isReward = typeof (model as RewardModel).score === 'function';
  const loaded = isReward ? loadRewardModel(dir, { dtype: model.dtype }) : loadCausalLM(dir, { dtype: model.dtype });
  try {
    noGrad(() => model.loadStateDict(loaded.stateDict()));
  } finally {
    loaded.dispose();
  }
}
