// PPO for LLMs (Schulman et al. 2017; the RLHF recipe of Ziegler et al. 2019 / Ouyang et al. 2022, as in
// TRL's PPOTrainer and DeepSpeed-Chat) — ALGORITHMS.md §9 PPO. Four models: the policy (actor), the
// critic (value model), a frozen reference policy, and the reward (a reward model's score and/or
// reward functions). One trainer step:
//   sample prompts → generate one completion each (policy, inference) → ℓ_old (a no-grad forward of the
//   policy, as TRL recomputes it), ℓ_ref (reference), V_old (critic), score → per-token reward §3b
//   (−klCoef·KL_t, score added at the last valid token) → GAE §3a → whitened advantages §3c →
//   `ppoEpochs` × `numMiniBatches` optimiser steps of the clipped surrogate §4a (token level, per-token
//   advantages) + vfCoef·value loss §6 − entCoef·entropy (aggregated by ops.lossAgg) → the rollout is
//   discarded (on-policy). Optional adaptive KL controller (Ziegler et al.: target, horizon).
// All loss math comes from `ops`; the trainer only composes the ops and moves tensors around.
//
// Optimiser: ONE AdamW over the policy's and the critic's trainable parameters (as TRL, which wraps
// both in PolicyAndValueWrapper): one backward of policyLoss + vfCoef·valueLoss per micro-batch, one
// global-norm clip over both, one LR schedule. vfCoef is therefore the knob that balances the two.
import path from 'node:path';
import { collatePrompts, DataLoader, Dataset, datasetFromRows, type LoaderState, type Row } from '../data/index.js';
import { createRewardModel, type CausalLM, type RewardModel } from '../models/index.js';
import { clippedSurrogate } from '../ops/clippedSurrogate.js';
import { gae } from '../ops/gae.js';
import { klPenalty, type KlEstimator } from '../ops/klPenalty.js';
import { lossAgg } from '../ops/lossAgg.js';
import { maskedWhiten } from '../ops/maskedWhiten.js';
import { valueLoss } from '../ops/valueLoss.js';
import { AdamW } from '../optim/optimizer.js';
import { createScheduler } from '../optim/schedulers.js';
import { cat, manualSeed, noGrad, tensor, tidy, zerosLike, type Tensor } from '../tensor/index.js';
import type { Tokenizer } from '../tokenizer/index.js';
import { TrainerBase, type CommonConfig } from './base.js';
import { ConfigError, describeSchema, inRange, nonNegative, nonNegativeInt, oneOf, positive, positiveInt, resolveConfig, type Schema } from './config.js';
import { frozenCopy, maskedMean, microBatches } from './common.js';
import { completionLogprobs, type CompletionBatch } from './logprobs.js';
import type { Metrics } from './metrics.js';
import { reloadWeights } from './offline.js';
import { computeRewards, finiteStats, normalizeRewards, type NamedReward, type RewardFunction } from './rewards.js';

/** Ziegler et al.'s adaptive KL controller settings (TRL's old PPOConfig: adap_kl_ctrl, target, horizon). */
export interface AdaptiveKlConfig {
  /** Target KL per sequence (nats, Σ over tokens of the KL estimator, mean over the batch). [target] */
  target: number;
  /** Horizon (in samples): how fast the coefficient adapts. [horizon] */
  horizon: number;
}

export interface PPOConfig extends CommonConfig {
  /** Prompts (= completions) per rollout. [batch_size = per_device_train_batch_size × gradient_accumulation_steps × num_mini_batches] */
  promptsPerStep: number;
  /** Mini-batches per PPO epoch: each is one optimiser step. [num_mini_batches] */
  numMiniBatches: number;
  /** Rows per forward/backward inside a mini-batch (gradient accumulation, exact); 0 = the whole mini-batch. [per_device_train_batch_size] */
  microBatchSize: number;
  /** Passes over each rollout. [num_ppo_epochs] */
  ppoEpochs: number;
  /** Prompt tokens kept (the end). */
  maxPromptLength: number;
  /** New tokens per completion. [response_length] */
  maxCompletionLength: number;
  /** Sampling temperature; log-probs (ℓ, ℓ_old, ℓ_ref) use the same. [temperature] */
  temperature: number;
  topK: number;
  topP: number;
  /** KL coefficient of the per-token reward −klCoef·KL_t (initial value with adaptiveKl). [kl_coef] */
  klCoef: number;
  /** KL estimator of the per-token reward (§2, ℓ_old vs ℓ_ref). [kl_estimator] */
  klEstimator: KlEstimator;
  /** Adaptive KL controller, or null for a fixed klCoef. [adap_kl_ctrl + target + horizon, TRL ≤ 0.11] */
  adaptiveKl: AdaptiveKlConfig | null;
  /** ε of the policy clip. [cliprange] */
  cliprange: number;
  /** ε_high (clip-higher); null = cliprange. */
  cliprangeHigh: number | null;
  /** Dual-clip constant c > 1 (null: off). */
  dualClip: number | null;
  /** ε_v of the value clip (§6). [cliprange_value] */
  cliprangeValue: number;
  /** Weight of the value loss. [vf_coef] */
  vfCoef: number;
  /** Weight of the entropy bonus (0: off; not in TRL). */
  entCoef: number;
  /** Discount γ. [gamma] */
  gamma: number;
  /** GAE λ. [lam] */
  lam: number;
  /** Whiten the per-token rewards (keeping their mean) before GAE. [whiten_rewards] */
  whitenRewards: boolean;
  /** Whiten the advantages (TRL always does). */
  whitenAdvantages: boolean;
  /** Clip the score to ±rewardClip before adding it (null: off; DeepSpeed-Chat's clip_reward_value). */
  rewardClip: number | null;
  /** Subtracted from the score of completions that end without EOS (null: off). [missing_eos_penalty] */
  missingEosPenalty: number | null;
  /** One weight per reward function (null: all 1). [reward_weights] */
  rewardWeights: number[] | null;
}

const nullOr = (check: (v: number) => string | null, what: string) => (v: number | null) => (v === null || check(v) === null ? null : `must be ${what} or null`);

export const PPO_SCHEMA: Schema<PPOConfig> = {
  outputDir: { default: null as string | null, doc: 'folder for metrics.jsonl and checkpoints', trl: 'output_dir' },
  maxSteps: { default: 100, check: positiveInt, doc: 'training steps (rollouts)', trl: 'total_episodes / batch_size' },
  learningRate: { default: 3e-6, check: positive, doc: 'peak learning rate (one AdamW over policy + critic)', trl: 'learning_rate' },
  maxGradNorm: { default: 1.0, check: nonNegative, doc: 'global-norm clipping over policy + critic (0: off)', trl: 'max_grad_norm' },
  warmupSteps: { default: 0, check: nonNegativeInt, doc: 'LR warmup (optimiser steps)', trl: 'warmup_steps' },
  lrScheduler: { default: 'linear' as 'constant' | 'linear' | 'cosine', check: oneOf('constant', 'linear', 'cosine'), doc: 'LR decay over maxSteps·ppoEpochs·numMiniBatches optimiser steps', trl: 'lr_scheduler_type' },
  weightDecay: { default: 0, check: nonNegative, doc: 'AdamW decoupled weight decay', trl: 'weight_decay' },
  saveSteps: { default: 0, check: nonNegativeInt, doc: 'checkpoint every N steps (0: at the end)', trl: 'save_steps' },
  loggingSteps: { default: 1, check: nonNegativeInt, doc: 'console log every N steps (0: never)', trl: 'logging_steps' },
  seed: { default: 42, check: nonNegativeInt, doc: 'seed for sampling, shuffling and init', trl: 'seed' },
  resumeFrom: { default: null as string | boolean | null, doc: 'checkpoint folder, or true for the newest in outputDir', trl: 'resume_from_checkpoint' },
  promptsPerStep: { default: 8, check: positiveInt, doc: 'prompts (one completion each) per rollout', trl: 'batch_size' },
  numMiniBatches: {
    default: 1,
    check: (v, all) => positiveInt(v) ?? (v > (all.promptsPerStep as number) ? `must be ≤ promptsPerStep (${String(all.promptsPerStep)})` : null),
    doc: 'optimiser steps per PPO epoch', trl: 'num_mini_batches',
  },
  microBatchSize: { default: 0, check: nonNegativeInt, doc: 'rows per forward/backward (0: the whole mini-batch)', trl: 'per_device_train_batch_size' },
  ppoEpochs: { default: 4, check: positiveInt, doc: 'passes over each rollout', trl: 'num_ppo_epochs' },
  maxPromptLength: { default: 512, check: positiveInt, doc: 'prompt tokens kept (the end)' },
  maxCompletionLength: { default: 53, check: positiveInt, doc: 'new tokens per completion', trl: 'response_length' },
  temperature: { default: 0.7, check: positive, doc: 'sampling temperature (log-probs use the same)', trl: 'temperature' },
  topK: { default: 0, check: nonNegativeInt, doc: 'top-k sampling (0: off)' },
  topP: { default: 1.0, check: inRange(0, 1), doc: 'nucleus sampling (1: off)' },
  klCoef: { default: 0.05, check: nonNegative, doc: 'KL coefficient of the per-token reward (initial value with adaptiveKl)', trl: 'kl_coef' },
  klEstimator: { default: 'k1' as KlEstimator, check: oneOf('k1', 'k2', 'k3', 'abs'), doc: 'KL estimator of the per-token reward', trl: 'kl_estimator' },
  adaptiveKl: {
    default: null as AdaptiveKlConfig | null,
    check: (v) => (v === null || (typeof v === 'object' && !Array.isArray(v) && positive(v.target) === null && positive(v.horizon) === null && Object.keys(v).every((k) => k === 'target' || k === 'horizon'))
      ? null : 'must be null or { target: number > 0, horizon: number > 0 } (e.g. { target: 6, horizon: 10000 })'),
    doc: 'adaptive KL controller { target, horizon } (null: fixed klCoef)', trl: 'adap_kl_ctrl/target/horizon (TRL ≤ 0.11)',
  },
  cliprange: { default: 0.2, check: positive, doc: 'policy clip ε', trl: 'cliprange' },
  cliprangeHigh: { default: null, check: nullOr(positive, 'a positive number'), doc: 'clip ε_high (null: cliprange)' },
  dualClip: { default: null, check: (v) => (v === null || (typeof v === 'number' && v > 1) ? null : 'must be a number > 1 or null'), doc: 'dual-clip constant c (null: off)' },
  cliprangeValue: { default: 0.2, check: nonNegative, doc: 'value clip ε_v', trl: 'cliprange_value' },
  vfCoef: { default: 0.1, check: nonNegative, doc: 'value loss weight', trl: 'vf_coef' },
  entCoef: { default: 0, check: nonNegative, doc: 'entropy bonus weight' },
  gamma: { default: 1.0, check: inRange(0, 1), doc: 'discount γ', trl: 'gamma' },
  lam: { default: 0.95, check: inRange(0, 1), doc: 'GAE λ', trl: 'lam' },
  whitenRewards: { default: false, doc: 'whiten per-token rewards (mean kept) before GAE', trl: 'whiten_rewards' },
  whitenAdvantages: { default: true, doc: 'whiten advantages (TRL: always)' },
  rewardClip: { default: null, check: nullOr(positive, 'a positive number'), doc: 'clip the score to ±rewardClip (null: off)' },
  missingEosPenalty: { default: null, check: nullOr(nonNegative, 'a number ≥ 0'), doc: 'subtracted from the score of completions without EOS', trl: 'missing_eos_penalty' },
  rewardWeights: { default: null, doc: 'weights of the reward functions', trl: 'reward_weights' },
};

/** Every PPOConfig option with its default and TRL name (for README / `--help`). */
export const describePPOConfig = (): string => describeSchema(PPO_SCHEMA);

/** Ziegler et al. (2019) adaptive KL controller: coef ← coef·(1 + clip(KL/target − 1, ±0.2)·n/horizon). */
export class AdaptiveKLController {
  constructor(public value: number, readonly target: number, readonly horizon: number) {}
  /** `currentKl`: mean per-sequence KL of the rollout; `nSteps`: samples in it. Returns the new coefficient. */
  update(currentKl: number, nSteps: number): number {
    const err = Math.min(0.2, Math.max(-0.2, currentKl / this.target - 1));
    this.value *= 1 + (err * nSteps) / this.horizon;
    return this.value;
  }
}

export interface PPOTrainerOptions {
  /** The policy (actor). */
  model: CausalLM;
  tokenizer: Tokenizer;
  /** Prompt rows ({ prompt, ...extra columns for the reward functions }). */
  trainDataset: Dataset | Row[];
  /** Reward model: its score(prompt + completion) is the sequence reward. At least one of rewardModel / rewardFuncs. */
  rewardModel?: RewardModel | null;
  /** Reward functions (sync/async, as GRPO's); with a reward model too, the score is their NaN-aware sum. */
  rewardFuncs?: RewardFunction | NamedReward | (RewardFunction | NamedReward)[] | null;
  /** The critic. Default: a copy of rewardModel (TRL's usual init), else the policy's backbone with a fresh value head. */
  valueModel?: RewardModel | null;
  /** Reference policy (default: a frozen copy of `model` at the start; unused when klCoef is 0 and adaptiveKl null). */
  refModel?: CausalLM | null;
  config?: Partial<PPOConfig>;
}

/** A prepared PPO mini/micro-batch (the testability contract: `computeLoss` takes exactly this). */
export interface PPOBatch extends CompletionBatch {
  /** Per-token advantages `[B, L]` (already whitened if configured). */
  advantages: Tensor;
  /** Behaviour-policy log-probs `[B, L]`; absent = on-policy (logprobs.detach()). */
  oldLogprobs?: Tensor | null;
  /** Critic values at rollout time `[B, L]` (the value clip's centre). */
  oldValues: Tensor;
  /** GAE returns `[B, L]` (the critic's targets). */
  returns: Tensor;
}

/** Rollout tensors (all `[B, ·]`), discarded after the PPO epochs. */
interface Rollout {
  promptIds: Tensor;
  promptMask: Tensor;
  completionIds: Tensor;
  completionMask: Tensor;
  oldLogprobs: Tensor;
  oldValues: Tensor;
  advantages: Tensor;
  returns: Tensor;
}

/** Seeded uniform [0, 1) (mulberry32): mini-batch shuffles reproducible across resume. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function permutation(n: number, seed: number): number[] {
  const r = rng(seed);
  const p = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [p[i], p[j]] = [p[j], p[i]];
  }
  return p;
}

/** A critic from a reward model (copy) or from the policy's backbone with a fresh value head. */
function defaultValueModel(policy: CausalLM, rewardModel: RewardModel | null, seed: number): RewardModel {
  const srcModel = rewardModel ?? policy;
  const critic = createRewardModel(srcModel.hfConfig(), { dtype: srcModel.dtype, device: srcModel.device, seed });
  noGrad(() => critic.loadStateDict(srcModel.stateDict(), { strict: false }));
  for (const p of critic.parameters()) p.requiresGrad = true;
  return critic;
}

export class PPOTrainer extends TrainerBase<PPOConfig> {
  readonly model: CausalLM;
  readonly valueModel: RewardModel;
  readonly rewardModel: RewardModel | null;
  readonly refModel: CausalLM | null;
  readonly tokenizer: Tokenizer;
  /** The adaptive controller (null with a fixed klCoef). */
  readonly klController: AdaptiveKLController | null;
  private klCoefFixed: number;
  private readonly rewards: NamedReward[];
  private loader: DataLoader;
  private iterator: AsyncIterator<Row[]> | null = null;
  private readonly dataset: Dataset;

  constructor(opts: PPOTrainerOptions) {
    const name = 'PPOConfig';
    const config = resolveConfig(name, PPO_SCHEMA, opts.config ?? {});
    if (!opts.model || typeof (opts.model as CausalLM).generate !== 'function') throw new TypeError(`${name}: 'model' must be a causal LM (loadCausalLM / createCausalLM)`);
    const rm = opts.rewardModel ?? null;
    if (rm && typeof rm.score !== 'function') throw new TypeError(`${name}: 'rewardModel' must be a reward model (loadRewardModel / createRewardModel)`);
    const hasFuncs = opts.rewardFuncs !== undefined && opts.rewardFuncs !== null && !(Array.isArray(opts.rewardFuncs) && opts.rewardFuncs.length === 0);
    if (!rm && !hasFuncs) throw new ConfigError(`${name}: give a 'rewardModel' or 'rewardFuncs' (or both) to score the completions`);
    if (config.rewardWeights && !hasFuncs) throw new ConfigError(`${name}: option 'rewardWeights' needs 'rewardFuncs'`);
    if (opts.valueModel && typeof opts.valueModel.forward !== 'function') throw new TypeError(`${name}: 'valueModel' must be a value model (loadValueModel / createRewardModel)`);
    if (opts.valueModel && opts.valueModel === rm) throw new ConfigError(`${name}: 'valueModel' is the reward model itself; training it would change the rewards — pass a copy (loadValueModel(rewardModelDir)) or leave valueModel out`);
    if (opts.refModel && opts.refModel === opts.model) throw new ConfigError(`${name}: 'refModel' is the policy itself; pass a frozen copy or leave it out`);
    manualSeed(config.seed);
    const valueModel = opts.valueModel ?? defaultValueModel(opts.model, rm, config.seed);
    const params = [...opts.model.parameters(), ...valueModel.parameters()].filter((p) => p.requiresGrad);
    const optimizer = new AdamW(params, { lr: config.learningRate, weightDecay: config.weightDecay });
    const scheduler = createScheduler(optimizer, { type: config.lrScheduler, warmupSteps: config.warmupSteps, totalSteps: config.maxSteps * config.ppoEpochs * config.numMiniBatches });
    super(config, optimizer, scheduler);
    this.model = opts.model;
    this.tokenizer = opts.tokenizer;
    this.valueModel = valueModel;
    this.rewardModel = rm;
    if (rm) {
      rm.eval();
      for (const p of rm.parameters()) p.requiresGrad = false;
    }
    this.rewards = hasFuncs ? normalizeRewards(opts.rewardFuncs!, config.rewardWeights) : [];
    this.klCoefFixed = config.klCoef;
    this.klController = config.adaptiveKl ? new AdaptiveKLController(config.klCoef, config.adaptiveKl.target, config.adaptiveKl.horizon) : null;
    const needRef = config.klCoef > 0 || config.adaptiveKl !== null;
    this.refModel = needRef ? opts.refModel ?? frozenCopy(opts.model) : null;
    this.dataset = opts.trainDataset instanceof Dataset ? opts.trainDataset : datasetFromRows(opts.trainDataset);
    this.loader = new DataLoader(this.dataset, { batchSize: config.promptsPerStep, shuffle: true, seed: config.seed, epochs: Infinity });
  }

  /** The KL coefficient the next rollout uses. */
  get klCoef(): number {
    return this.klController ? this.klController.value : this.klCoefFixed;
  }

  protected trainableParameters(): Tensor[] {
    return [...this.model.parameters(), ...this.valueModel.parameters()].filter((p) => p.requiresGrad);
  }
  protected checkpointModels() {
    return { model: this.model, value_model: this.valueModel };
  }
  protected dataState(): unknown {
    return this.loader.state();
  }
  protected restoreDataState(state: unknown): void {
    this.loader = DataLoader.fromState(this.dataset, state as LoaderState);
    this.iterator = null;
  }
  protected override extraState(): Record<string, unknown> {
    return { klCoef: this.klCoef };
  }
  protected override restoreExtraState(extra: Record<string, unknown>): void {
    if (typeof extra.klCoef === 'number') {
      if (this.klController) this.klController.value = extra.klCoef;
      else this.klCoefFixed = extra.klCoef;
    }
  }
  /** Loads the checkpoint's policy and critic weights in place (the optimiser keeps its parameters). */
  protected override onResumed(dir: string): void {
    reloadWeights(this.model, path.join(dir, 'model'));
    reloadWeights(this.valueModel, path.join(dir, 'value_model'));
  }

  private async nextRows(): Promise<Row[]> {
    this.iterator ??= this.loader[Symbol.asyncIterator]();
    const r = await this.iterator.next();
    if (r.done) throw new Error('PPOTrainer: the dataset is empty');
    return r.value;
  }

  /** Critic values `[B, L]` at the positions that predict the completion tokens (as the log-probs). */
  private criticValues(b: CompletionBatch): Tensor {
    const P = b.promptIds.shape[1];
    const L = b.completionIds.shape[1];
    return tidy(() => {
      const { values, hidden } = this.valueModel.forward(cat([b.promptIds, b.completionIds], 1), { attentionMask: cat([b.promptMask, b.completionMask], 1) });
      hidden.dispose();
      return values.narrow(1, P - 1, L);
    });
  }

  /**
   * Loss of one prepared batch (ALGORITHMS.md §4a + §6, − entCoef·entropy via §5 token_mean): `{ loss,
   * metrics }`, loss back-propagatable into the policy and the critic. `normalizer`: the valid-token
   * count of the whole mini-batch when this is one of its micro-batches (exact gradient accumulation).
   */
  computeLoss(batch: PPOBatch, opts: { normalizer?: number } = {}): { loss: Tensor; metrics: Metrics } {
    const c = this.config;
    const mask = batch.completionMask;
    const { logprobs, entropy } = completionLogprobs(this.model, batch, { temperature: c.temperature, withEntropy: true });
    const old = batch.oldLogprobs ?? logprobs.detach();
    const pol = clippedSurrogate(logprobs, old, batch.advantages, mask, {
      epsLow: c.cliprange, epsHigh: c.cliprangeHigh ?? c.cliprange, dualClip: c.dualClip, level: 'token',
      aggregation: 'token_mean', normalizer: opts.normalizer,
    });
    const values = this.criticValues(batch);
    const vl = valueLoss(values, batch.oldValues, batch.returns, mask, { clip: c.cliprangeValue, normalizer: opts.normalizer });
    let loss = pol.loss.add(vl.loss.mul(c.vfCoef));
    if (c.entCoef > 0) loss = loss.sub(lossAgg(entropy!, mask, { aggregation: 'token_mean', normalizer: opts.normalizer }).mul(c.entCoef));
    const m = pol.metrics;
    const metrics: Metrics = {
      'policy/loss': pol.loss.item(), 'policy/clipFrac': m.clipFrac.item(), 'policy/clipFracLow': m.clipFracLow.item(),
      'policy/clipFracHigh': m.clipFracHigh.item(), 'policy/approxKl': m.approxKl.item(),
      'policy/entropy': maskedMean(entropy!, mask),
      'value/loss': vl.loss.item(), 'value/clipFrac': vl.clipFrac.item(),
    };
    return { loss, metrics };
  }

  /** Scores of the completions: reward model and/or reward functions (NaN-aware sum; NaN = unscored). */
  private async scores(rows: Row[], prompts: string[], texts: string[], completionIds: number[][], b: CompletionBatch): Promise<{ total: number[]; perFunction: Record<string, number[]> }> {
    const parts: number[][] = [];
    const perFunction: Record<string, number[]> = {};
    if (this.rewardModel) {
      const rm = this.rewardModel;
      const s = noGrad(() => tidy(() => rm.score(cat([b.promptIds, b.completionIds], 1), { attentionMask: cat([b.promptMask, b.completionMask], 1) }).float().toArray() as number[]));
      parts.push(s);
      perFunction.model = s;
    }
    if (this.rewards.length > 0) {
      const rw = await computeRewards(this.rewards, texts, { prompts, completionIds, rows, step: this.step });
      parts.push(rw.total);
      Object.assign(perFunction, rw.perFunction);
    }
    const total = texts.map((_, i) => {
      const vals = parts.map((p) => p[i]).filter((v) => !Number.isNaN(v));
      return vals.length ? vals.reduce((a, v) => a + v, 0) : NaN;
    });
    return { total, perFunction };
  }

  /**
   * The rollout's advantages (no grad): per-token reward §3b `r_t = −klCoef·KL_t(ℓ_old ‖ ℓ_ref)` plus the
   * score (clipped to ±rewardClip when set) at each row's last valid token, optionally whitened (mean
   * kept) → GAE §3a (γ, λ) → advantages whitened §3c (default). `returns` = GAE's A + V (before
   * whitening). Completions are right-padded and contiguous; rows with an all-zero mask get nothing.
   * `refLogprobs` null = no KL term.
   */
  computeAdvantages(b: { oldLogprobs: Tensor; refLogprobs: Tensor | null; values: Tensor; scores: Tensor; completionMask: Tensor }, klCoef = this.klCoef): { rewards: Tensor; kl: Tensor | null; advantages: Tensor; returns: Tensor } {
    const c = this.config;
    const mask = b.completionMask;
    return noGrad(() => tidy(() => {
      let score = b.scores.to(b.oldLogprobs.dtype);
      if (c.rewardClip !== null) score = score.clamp(-c.rewardClip, c.rewardClip);
      const kl = b.refLogprobs ? klPenalty(b.oldLogprobs, b.refLogprobs, { estimator: c.klEstimator, mask }) : null;
      let rewards = kl ? kl.mul(-klCoef) : zerosLike(b.oldLogprobs);
      const last = mask.ne(0).sum(1).sub(1).clamp(0, null).unsqueeze(1);
      rewards = rewards.scatterAdd(1, last, score.unsqueeze(1)).mul(mask.ne(0).to(rewards.dtype));
      if (c.whitenRewards) rewards = maskedWhiten(rewards, mask, { shiftMean: false });
      const g = gae(rewards, b.values, mask, { gamma: c.gamma, lambda: c.lam });
      const advantages = c.whitenAdvantages ? maskedWhiten(g.advantages, mask) : g.advantages;
      return { rewards, kl, advantages, returns: g.returns };
    }));
  }

  protected async trainingStep(): Promise<Metrics> {
    const c = this.config;
    const t0 = performance.now();
    const rows = await this.nextRows();
    // ---- generation (no graph) ----
    const prompts = collatePrompts(this.tokenizer, rows, { maxPromptLength: c.maxPromptLength, maxCompletionLength: c.maxCompletionLength });
    const B = prompts.rows.length;
    const gen = tidy(() => {
      const g = this.model.generate(prompts.promptIds, {
        attentionMask: prompts.promptMask, maxNewTokens: c.maxCompletionLength, doSample: true, temperature: c.temperature,
        topK: c.topK > 0 ? c.topK : null, topP: c.topP < 1 ? c.topP : null,
        eosTokenId: this.tokenizer.eosTokenId, padTokenId: this.tokenizer.padTokenId,
      });
      // Generation runs in inference mode; clone so autograd may save these tensors later.
      return { completionIds: g.completionIds.clone(), completionMask: g.completionMask.clone() };
    });
    const base: CompletionBatch = { promptIds: prompts.promptIds, promptMask: prompts.promptMask, completionIds: gen.completionIds, completionMask: gen.completionMask };
    const idsRows = gen.completionIds.toArray() as number[][];
    const maskRows = gen.completionMask.toArray() as number[][];
    const completionIds = idsRows.map((r, b) => r.filter((_, t) => maskRows[b][t] === 1));
    const eos = this.tokenizer.eosTokenId;
    const finished = completionIds.map((r) => r.length > 0 && r[r.length - 1] === eos);
    const texts = completionIds.map((r) => this.tokenizer.decode(r, { skipSpecialTokens: true }));
    // ---- scores ----
    const sc = await this.scores(prompts.rows, prompts.prompts, texts, completionIds, base);
    const raw = sc.total.map((s, i) => (c.missingEosPenalty !== null && !finished[i] ? s - c.missingEosPenalty : s));
    const valid = raw.map((s) => Number.isFinite(s));
    const klCoef = this.klCoef;
    // ---- rollout: ℓ_old, ℓ_ref, V_old → per-token reward (§3b) → GAE (§3a) → whitening (§3c) ----
    const ro = noGrad(() => tidy(() => {
      // Completions without a score (every reward function returned NaN) are dropped from the loss.
      const mask = gen.completionMask.mul(tensor(valid.map(Number), { dtype: 'int64' }).unsqueeze(1));
      const b: CompletionBatch = { ...base, completionMask: mask };
      const oldLogprobs = completionLogprobs(this.model, b, { temperature: c.temperature }).logprobs;
      const oldValues = this.criticValues(b);
      const refLogprobs = this.refModel ? completionLogprobs(this.refModel, b, { temperature: c.temperature }).logprobs : null;
      const score = tensor(raw.map((s) => (Number.isFinite(s) ? s : 0)));
      const { kl, advantages, returns } = this.computeAdvantages({ oldLogprobs, refLogprobs, values: oldValues, scores: score, completionMask: mask }, klCoef);
      const seqKl = kl ? (kl.sum(1).toArray() as number[]) : raw.map(() => 0);
      const stats = {
        klMean: kl ? maskedMean(kl, mask) : 0,
        klSeq: seqKl.filter((_, i) => valid[i]),
        valueMean: maskedMean(oldValues, mask),
        returnMean: maskedMean(returns, mask),
      };
      const rollout: Rollout = { ...base, completionMask: mask, oldLogprobs, oldValues, advantages, returns };
      return { rollout, stats };
    }));
    const r = ro.rollout;
    // ---- ppoEpochs × numMiniBatches optimiser steps ----
    const totals: Metrics = {};
    let lossSum = 0;
    let nSteps = 0;
    const nMb = Math.min(c.numMiniBatches, B);
    for (let epoch = 0; epoch < c.ppoEpochs; epoch++) {
      const perm = permutation(B, c.seed * 1_000_003 + this.step * 1009 + epoch);
      for (let k = 0; k < nMb; k++) {
        const ids = perm.slice(Math.floor((k * B) / nMb), Math.floor(((k + 1) * B) / nMb));
        const mbB = ids.length;
        const mbIdx = tensor(ids, { dtype: 'int64' });
        const mb = tidy(() => {
          const sel = (t: Tensor) => t.indexSelect(0, mbIdx);
          return {
            promptIds: sel(r.promptIds), promptMask: sel(r.promptMask), completionIds: sel(r.completionIds), completionMask: sel(r.completionMask),
            oldLogprobs: sel(r.oldLogprobs), oldValues: sel(r.oldValues), advantages: sel(r.advantages), returns: sel(r.returns),
          };
        });
        mbIdx.dispose();
        const normalizer = noGrad(() => mb.completionMask.sum().item());
        const micro = c.microBatchSize > 0 ? c.microBatchSize : mbB;
        let mbLoss = 0;
        for (const [s, e] of microBatches(mbB, micro)) {
          const out = tidy(() => {
            const sl = (t: Tensor) => t.narrow(0, s, e - s);
            const { loss, metrics } = this.computeLoss({
              promptIds: sl(mb.promptIds), promptMask: sl(mb.promptMask), completionIds: sl(mb.completionIds), completionMask: sl(mb.completionMask),
              oldLogprobs: sl(mb.oldLogprobs), oldValues: sl(mb.oldValues), advantages: sl(mb.advantages), returns: sl(mb.returns),
            }, { normalizer });
            loss.backward();
            return { loss: loss.item(), metrics };
          });
          mbLoss += out.loss;
          // Micro-batch metrics are partial sums under the shared normaliser for losses; means for the rest.
          const w = (e - s) / B;
          for (const [key, v] of Object.entries(out.metrics)) {
            const partial = key === 'policy/loss' || key === 'value/loss';
            totals[key] = (totals[key] ?? 0) + (partial ? v / (nMb * c.ppoEpochs) : (w * v) / c.ppoEpochs);
          }
        }
        for (const t of Object.values(mb)) t.dispose();
        lossSum += mbLoss;
        nSteps += 1;
        const st = this.optimizerStep();
        totals.gradNorm = (totals.gradNorm ?? 0) + (st.gradNorm ?? NaN) / (nMb * c.ppoEpochs);
        totals.lr = st.lr;
      }
    }
    // ---- adaptive KL (Ziegler et al.): from this rollout's per-sequence KL ----
    const klSeqMean = ro.stats.klSeq.length ? ro.stats.klSeq.reduce((a, v) => a + v, 0) / ro.stats.klSeq.length : 0;
    if (this.klController) this.klController.update(klSeqMean, B);
    const rs = finiteStats(raw);
    const lengths = completionIds.map((x) => x.length);
    const genTokens = lengths.reduce((a, v) => a + v, 0);
    const metrics: Metrics = {
      loss: lossSum / nSteps,
      'reward/mean': rs.mean, 'reward/std': rs.std, 'reward/nanFrac': rs.nanFrac,
      ...Object.fromEntries(Object.entries(sc.perFunction).map(([k, v]) => [`reward/${k}`, finiteStats(v).mean])),
      'reward/nonScore': -klCoef * klSeqMean,
      'reward/rlhf': rs.mean - klCoef * klSeqMean,
      'kl/mean': ro.stats.klMean, 'kl/seqSum': klSeqMean, 'kl/coef': klCoef,
      'value/mean': ro.stats.valueMean, 'value/returnsMean': ro.stats.returnMean,
      'completions/meanLength': genTokens / B,
      'completions/clippedFrac': finished.filter((f) => !f).length / B,
      ...totals,
      'perf/tokensPerSec': genTokens / ((performance.now() - t0) / 1000),
    };
    if (Number.isNaN(metrics.gradNorm)) delete metrics.gradNorm;
    // The rollout is discarded after the epochs (on-policy); it holds the prompt and completion tensors too.
    for (const t of Object.values(r)) t.dispose();
    gen.completionMask.dispose();
    return metrics;
  }
}
