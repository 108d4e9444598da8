// GRPO (DeepSeekMath, arXiv:2402.03300) and GSPO (arXiv:2507.18071) trainers — ALGORITHMS.md §9:
// per prompt sample G completions → rewards from reward functions → group advantages (§3d) →
// `numIterations` passes of the clipped surrogate (§4a token level, or §4b sequence level for GSPO)
// + β·KL (§2 k3) per token → aggregation (§5). All loss math comes from `ops`.
// One trainer step = one generation round followed by `numIterations` optimiser steps.
import { collatePrompts, DataLoader, Dataset, datasetFromRows, type LoaderState, type Row } from '../data/index.js';
import type { CausalLM } from '../models/index.js';
import { clippedSurrogate, type SurrogateLevel } from '../ops/clippedSurrogate.js';
import { lossAgg, type LossAggregation } from '../ops/lossAgg.js';
import { groupAdvantages, type AdvantageScale } from '../ops/groupAdvantages.js';
import { klPenalty } from '../ops/klPenalty.js';
import { AdamW } from '../optim/optimizer.js';
import { createScheduler } from '../optim/schedulers.js';
import { manualSeed, noGrad, tensor, tidy, type Tensor } from '../tensor/index.js';
import type { Tokenizer } from '../tokenizer/index.js';
import { TrainerBase, type CommonConfig } from './base.js';
import { atLeast, inRange, nonNegative, nonNegativeInt, oneOf, positive, positiveInt, resolveConfig, type Schema } from './config.js';
import { frozenCopy, maskedMean, microBatches, repeatIndex } from './common.js';
import { reloadWeights } from './offline.js';
import path from 'node:path';
import { completionLogprobs, type CompletionBatch } from './logprobs.js';
import type { Metrics } from './metrics.js';
import { computeRewards, finiteStats, normalizeRewards, type NamedReward, type RewardFunction } from './rewards.js';

export interface GRPOConfig extends CommonConfig {
  /** Completions per prompt G. [num_generations] */
  numGenerations: number;
  /** Prompts per generation round (B = promptsPerStep·G completions). */
  promptsPerStep: number;
  /** Completions per forward/backward micro-batch (gradient accumulation inside a step); 0 = all. */
  miniBatchSize: number;
  /** [max_prompt_length] — prompts keep their end. */
  maxPromptLength: number;
  /** [max_completion_length] */
  maxCompletionLength: number;
  temperature: number;
  topK: number;
  topP: number;
  /** KL coefficient to the reference (k3 estimator); 0 needs no reference model. [beta] */
  beta: number;
  /** ε_low of the clip. [epsilon] */
  epsilon: number;
  /** ε_high ("clip-higher", DAPO); null = epsilon. [epsilon_high] */
  epsilonHigh: number | null;
  /** Two-sided clip δ on the unclipped ratio (null: off). [delta] */
  delta: number | null;
  /** Optimiser steps per generation round. [num_iterations] */
  numIterations: number;
  /** ALGORITHMS.md §5; 'seq_mean_token_mean' is the GRPO paper's. TRL loss_type: grpo → seq_mean_token_mean,
   *  bnpo/dapo → token_mean, dr_grpo → seq_mean_token_sum_norm. */
  aggregation: LossAggregation;
  /** Advantage scaling (§3d). [scale_rewards] */
  scaleRewards: AdvantageScale;
  /** Zero the loss of completions that hit maxCompletionLength without EOS. [mask_truncated_completions] */
  maskTruncatedCompletions: boolean;
  /** 'token' (GRPO), 'sequence' (GSPO) or 'sequence_token' (GSPO-token). [importance_sampling_level] */
  importanceSampling: SurrogateLevel;
  /** One weight per reward function (null: all 1). [reward_weights] */
  rewardWeights: number[] | null;
}

const COMMON = {
  outputDir: { default: null as string | null, doc: 'folder for metrics.jsonl and checkpoints', trl: 'output_dir' },
  maxSteps: { default: 100, check: positiveInt, doc: 'training steps (generation rounds)', trl: 'max_steps' },
  learningRate: { default: 1e-6, check: positive, doc: 'peak learning rate', trl: 'learning_rate' },
  maxGradNorm: { default: 1.0, check: nonNegative, doc: 'gradient clipping (0: off)', trl: 'max_grad_norm' },
  warmupSteps: { default: 0, check: nonNegativeInt, doc: 'LR warmup steps', trl: 'warmup_steps' },
  lrScheduler: { default: 'linear' as 'constant' | 'linear' | 'cosine', check: oneOf('constant', 'linear', 'cosine'), doc: 'LR decay after warmup', trl: 'lr_scheduler_type' },
  weightDecay: { default: 0, check: nonNegative, doc: 'AdamW decoupled weight decay', trl: 'weight_decay' },
  saveSteps: { default: 0, check: nonNegativeInt, doc: 'checkpoint every N steps (0: at the end)', trl: 'save_steps' },
  loggingSteps: { default: 1, check: nonNegativeInt, doc: 'console log every N steps (0: never)', trl: 'logging_steps' },
  seed: { default: 42, check: nonNegativeInt, doc: 'seed for sampling, shuffling and init', trl: 'seed' },
  resumeFrom: { default: null as string | boolean | null, doc: 'checkpoint folder, or true for the newest in outputDir', trl: 'resume_from_checkpoint' },
};

export const GRPO_SCHEMA: Schema<GRPOConfig> = {
  ...COMMON,
  numGenerations: { default: 8, check: atLeast(2), doc: 'completions per prompt (must be ≥ 2 for group statistics)', trl: 'num_generations' },
  promptsPerStep: { default: 4, check: positiveInt, doc: 'prompts per generation round' },
  miniBatchSize: { default: 0, check: nonNegativeInt, doc: 'completions per micro-batch (0: all at once)' },
  maxPromptLength: { default: 512, check: positiveInt, doc: 'prompt tokens kept (the end)', trl: 'max_prompt_length' },
  maxCompletionLength: { default: 256, check: positiveInt, doc: 'new tokens per completion', trl: 'max_completion_length' },
  temperature: { default: 1.0, check: positive, doc: 'sampling temperature (log-probs use the same)', trl: 'temperature' },
  topK: { default: 0, check: nonNegativeInt, doc: 'top-k sampling (0: off)', trl: 'top_k' },
  topP: { default: 1.0, check: inRange(0, 1), doc: 'nucleus sampling (1: off)', trl: 'top_p' },
  beta: { default: 0.0, check: (v, all) => (nonNegative(v) ?? (v > 0 && all.importanceSampling === 'sequence' ? "must be 0 with importanceSampling 'sequence' (a per-token KL has no sequence-level loss to join; use 'sequence_token')" : null)), doc: 'KL coefficient (k3) to the reference model', trl: 'beta' },
  epsilon: { default: 0.2, check: positive, doc: 'clip ε_low', trl: 'epsilon' },
  epsilonHigh: { default: null, check: (v) => (v === null || (typeof v === 'number' && v > 0) ? null : 'must be a positive number or null'), doc: 'clip ε_high (null: epsilon)', trl: 'epsilon_high' },
  delta: { default: null, check: (v) => (v === null || (typeof v === 'number' && v > 1) ? null : 'must be a number > 1 or null'), doc: 'two-sided clip δ', trl: 'delta' },
  numIterations: { default: 1, check: positiveInt, doc: 'optimiser steps per generation round', trl: 'num_iterations' },
  aggregation: { default: 'seq_mean_token_mean', check: oneOf('token_mean', 'seq_mean_token_mean', 'seq_mean_token_sum_norm', 'seq_mean_token_sum'), doc: 'loss aggregation (§5)', trl: 'loss_type' },
  scaleRewards: { default: 'group', check: oneOf('group', 'batch', 'none', 'rloo'), doc: 'advantage scaling', trl: 'scale_rewards' },
  maskTruncatedCompletions: { default: false, doc: 'drop completions without EOS from the loss', trl: 'mask_truncated_completions' },
  importanceSampling: { default: 'token', check: oneOf('token', 'sequence', 'sequence_token'), doc: 'token (GRPO) or sequence (GSPO) ratios', trl: 'importance_sampling_level' },
  rewardWeights: { default: null, doc: 'weights of the reward functions', trl: 'reward_weights' },
};

/** GSPO's paper settings: sequence-level ratios with tiny clip ranges (3e-4 / 4e-4), no KL. */
export const GSPO_DEFAULTS: Partial<GRPOConfig> = {
  importanceSampling: 'sequence', epsilon: 3e-4, epsilonHigh: 4e-4, beta: 0, aggregation: 'seq_mean_token_mean',
};

export interface GRPOTrainerOptions {
  model: CausalLM;
  tokenizer: Tokenizer;
  rewardFuncs: RewardFunction | NamedReward | (RewardFunction | NamedReward)[];
  /** Prompt rows ({ prompt, ...extra columns for the reward functions }). */
  trainDataset: Dataset | Row[];
  /** Reference policy for β > 0 (default: a frozen copy of `model` at the start). */
  refModel?: CausalLM | null;
  config?: Partial<GRPOConfig>;
}

/** A prepared GRPO batch (the testability contract: `computeLoss` takes exactly this). */
export interface GRPOBatch extends CompletionBatch {
  /** `[B]` (or `[B, T]`) advantages. */
  advantages: Tensor;
  /** Behaviour-policy log-probs `[B, L]`; absent = on-policy (oldLogprobs = logprobs.detach()). */
  oldLogprobs?: Tensor | null;
  /** Reference log-probs `[B, L]` (needed when β > 0). */
  refLogprobs?: Tensor | null;
}

export class GRPOTrainer extends TrainerBase<GRPOConfig> {
  readonly model: CausalLM;
  readonly tokenizer: Tokenizer;
  readonly refModel: CausalLM | null;
  private readonly rewards: NamedReward[];
  private loader: DataLoader;
  private iterator: AsyncIterator<Row[]> | null = null;
  private readonly dataset: Dataset;

  constructor(opts: GRPOTrainerOptions, name = 'GRPOConfig', defaults: Partial<GRPOConfig> = {}) {
    const config = resolveConfig(name, GRPO_SCHEMA, { ...defaults, ...(opts.config ?? {}) });
    if (!opts.model || typeof (opts.model as CausalLM).generate !== 'function') throw new TypeError(`${name}: 'model' must be a causal LM (loadCausalLM / createCausalLM)`);
    manualSeed(config.seed);
    const params = opts.model.parameters().filter((p) => p.requiresGrad);
    const optimizer = new AdamW(params, { lr: config.learningRate, weightDecay: config.weightDecay });
    const scheduler = createScheduler(optimizer, { type: config.lrScheduler, warmupSteps: config.warmupSteps, totalSteps: config.maxSteps * config.numIterations });
    super(config, optimizer, scheduler);
    this.model = opts.model;
    this.tokenizer = opts.tokenizer;
    this.rewards = normalizeRewards(opts.rewardFuncs, config.rewardWeights);
    this.refModel = config.beta > 0 ? opts.refModel ?? frozenCopy(opts.model) : null;
    this.dataset = opts.trainDataset instanceof Dataset ? opts.trainDataset : datasetFromRows(opts.trainDataset);
    this.loader = new DataLoader(this.dataset, { batchSize: config.promptsPerStep, shuffle: true, seed: config.seed, epochs: Infinity });
  }

  protected trainableParameters(): Tensor[] {
    return this.model.parameters().filter((p) => p.requiresGrad);
  }
  protected checkpointModels() {
    return { model: this.model };
  }
  protected dataState(): unknown {
    return this.loader.state();
  }
  protected restoreDataState(state: unknown): void {
    this.loader = DataLoader.fromState(this.dataset, state as LoaderState);
    this.iterator = null;
  }
  /** Loads the checkpoint's weights into the model in place (the optimiser keeps its parameters). */
  protected override onResumed(dir: string): void {
    reloadWeights(this.model, path.join(dir, 'model'));
  }

  private async nextRows(): Promise<Row[]> {
    this.iterator ??= this.loader[Symbol.asyncIterator]();
    const r = await this.iterator.next();
    if (r.done) throw new Error('GRPOTrainer: the dataset is empty');
    return r.value;
  }

  /** Loss of one prepared batch (ALGORITHMS.md §4 + §2 + §5): `{ loss, metrics }`, loss back-propagatable. */
  computeLoss(batch: GRPOBatch, opts: { normalizer?: number; numSequences?: number } = {}): { loss: Tensor; metrics: Metrics } {
    const c = this.config;
    const { logprobs, entropy } = completionLogprobs(this.model, batch, { temperature: c.temperature, withEntropy: true });
    const old = batch.oldLogprobs ?? logprobs.detach();
    const mask = batch.completionMask;
    let kl: Tensor | null = null;
    if (c.beta > 0) {
      if (!batch.refLogprobs) throw new Error('GRPOTrainer.computeLoss: beta > 0 needs refLogprobs in the batch');
      kl = klPenalty(logprobs, batch.refLogprobs, { estimator: 'k3', mask });
    }
    const agg = { aggregation: c.aggregation, maxLength: c.maxCompletionLength, normalizer: opts.normalizer, numSequences: opts.numSequences };
    const res = clippedSurrogate(logprobs, old, batch.advantages, mask, {
      epsLow: c.epsilon, epsHigh: c.epsilonHigh ?? c.epsilon, delta: c.delta, level: c.importanceSampling, ...agg,
    });
    // β·KL joins the per-token loss before aggregation (ALGORITHMS.md §9 GRPO).
    const loss = kl ? lossAgg(res.perToken.add(kl.mul(c.beta)), mask, agg) : res.loss;
    const m = res.metrics;
    const metrics: Metrics = {
      'policy/clipFrac': m.clipFrac.item(), 'policy/clipFracLow': m.clipFracLow.item(),
      'policy/clipFracHigh': m.clipFracHigh.item(), 'policy/approxKl': m.approxKl.item(),
      'policy/entropy': entropy ? maskedMean(entropy, mask) : NaN,
    };
    if (kl) metrics['kl/mean'] = maskedMean(kl, mask);
    return { loss, metrics };
  }

  protected async trainingStep(): Promise<Metrics> {
    const c = this.config;
    const G = c.numGenerations;
    const t0 = performance.now();
    const rows = await this.nextRows();
    // ---- generation (no graph) ----
    const prompts = collatePrompts(this.tokenizer, rows, { maxPromptLength: c.maxPromptLength, maxCompletionLength: c.maxCompletionLength });
    const N = prompts.rows.length;
    const B = N * G;
    const prep = tidy(() => {
      const idx = repeatIndex(N, G);
      const promptIds = prompts.promptIds.indexSelect(0, idx);
      const promptMask = prompts.promptMask.indexSelect(0, idx);
      const gen = this.model.generate(promptIds, {
        attentionMask: promptMask, maxNewTokens: c.maxCompletionLength, doSample: true, temperature: c.temperature,
        topK: c.topK > 0 ? c.topK : null, topP: c.topP < 1 ? c.topP : null,
        eosTokenId: this.tokenizer.eosTokenId, padTokenId: this.tokenizer.padTokenId,
      });
      // Generation runs in inference mode; clone so autograd may save these tensors later.
      return { promptIds, promptMask, completionIds: gen.completionIds.clone(), completionMask: gen.completionMask.clone(), oldLogprobs: gen.logprobs.clone() };
    });
    prompts.promptIds.dispose();
    prompts.promptMask.dispose();
    const idsRows = prep.completionIds.toArray() as number[][];
    const maskRows = prep.completionMask.toArray() as number[][];
    const completionIds = idsRows.map((r, b) => r.filter((_, t) => maskRows[b][t] === 1));
    const eos = this.tokenizer.eosTokenId;
    const finished = completionIds.map((r) => r.length > 0 && r[r.length - 1] === eos);
    const texts = completionIds.map((r) => this.tokenizer.decode(r, { skipSpecialTokens: true }));
    // ---- rewards → advantages ----
    const rowsG = Array.from({ length: B }, (_, i) => prompts.rows[Math.floor(i / G)]);
    const promptsG = Array.from({ length: B }, (_, i) => prompts.prompts[Math.floor(i / G)]);
    const rw = await computeRewards(this.rewards, texts, { prompts: promptsG, completionIds, rows: rowsG, step: this.step });
    const rewardT = tensor(rw.total);
    const { advantages, groupStd } = groupAdvantages(rewardT, { groupSize: G, scale: c.scaleRewards });
    const zeroStdFrac = noGrad(() => groupStd.le(1e-8).float().mean().item());
    groupStd.dispose();
    rewardT.dispose();
    let lossMask = prep.completionMask;
    if (c.maskTruncatedCompletions) {
      lossMask = tidy(() => prep.completionMask.mul(tensor(finished.map(Number), { dtype: 'int64' }).unsqueeze(1)));
    }
    const refLogprobs = this.refModel
      ? noGrad(() => tidy(() => completionLogprobs(this.refModel!, { ...prep, completionMask: lossMask }, { temperature: c.temperature }).logprobs))
      : null;
    // ---- optimisation ----
    const mb = c.miniBatchSize > 0 ? c.miniBatchSize : B;
    const normalizer = noGrad(() => lossMask.sum().item());
    const numSequences = noGrad(() => lossMask.sum(1).gt(0).sum().item());
    const totals: Metrics = {};
    let lossSum = 0;
    for (let it = 0; it < c.numIterations; it++) {
      for (const [s, e] of microBatches(B, mb)) {
        const m = tidy(() => {
          const sl = (t: Tensor) => t.narrow(0, s, e - s);
          const { loss, metrics } = this.computeLoss({
            promptIds: sl(prep.promptIds), promptMask: sl(prep.promptMask), completionIds: sl(prep.completionIds),
            completionMask: sl(lossMask), advantages: sl(advantages),
            oldLogprobs: c.numIterations > 1 ? sl(prep.oldLogprobs) : null, refLogprobs: refLogprobs ? sl(refLogprobs) : null,
          }, { normalizer, numSequences });
          loss.backward();
          return { loss: loss.item(), metrics };
        });
        lossSum += m.loss;
        const w = (e - s) / B;
        for (const [k, v] of Object.entries(m.metrics)) totals[k] = (totals[k] ?? 0) + w * v / c.numIterations;
      }
      Object.assign(totals, this.optimizerStep());
    }
    const rs = finiteStats(rw.total);
    const lengths = completionIds.map((r) => r.length);
    const genTokens = lengths.reduce((a, b) => a + b, 0);
    const metrics: Metrics = {
      loss: lossSum / c.numIterations,
      'reward/mean': rs.mean, 'reward/std': rs.std, 'reward/nanFrac': rs.nanFrac,
      ...Object.fromEntries(Object.entries(rw.perFunction).map(([k, v]) => [`reward/${k}`, finiteStats(v).mean])),
      'groups/zeroStdFrac': zeroStdFrac,
      'completions/meanLength': genTokens / B,
      'completions/clippedFrac': finished.filter((f) => !f).length / B,
      ...totals,
      'perf/tokensPerSec': genTokens / ((performance.now() - t0) / 1000),
    };
    for (const t of [prep.promptIds, prep.promptMask, prep.completionIds, prep.completionMask, prep.oldLogprobs, advantages]) t.dispose();
    if (lossMask !== prep.completionMask) lossMask.dispose();
    refLogprobs?.dispose();
    return metrics;
  }
}

/** GSPO: GRPO with sequence-level importance ratios and the GSPO paper's defaults (GSPO_DEFAULTS). */
export class GSPOTrainer extends GRPOTrainer {
  constructor(opts: GRPOTrainerOptions) {
    super(opts, 'GSPOConfig', GSPO_DEFAULTS);
  }
}

