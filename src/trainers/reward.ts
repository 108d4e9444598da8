// Reward-model training (ALGORITHMS.md §8, §9 "Reward"), as TRL's RewardTrainer: a scalar head on the
// last real token scores prompt+chosen and prompt+rejected, and the Bradley–Terry loss
// −mean logσ(r_c − r_r − margin) (+ centerRewardsCoefficient·mean((r_c + r_r)²)) comes from
// ops.bradleyTerryLoss. Rows may carry a `margin` column (Llama 2's margin loss). Micro-batches scale
// their mean by their share of the step's pairs, so any split gives the full batch's gradient.
import { collatePreference, type Dataset, type Row } from '../data/index.js';
import type { RewardModel } from '../models/index.js';
import { bradleyTerryLoss } from '../ops/index.js';
import { cat, noGrad, type Tensor } from '../tensor/index.js';
import type { Tokenizer } from '../tokenizer/index.js';
import { describeSchema, resolveConfig, type Schema } from './config.js';
import type { Metrics } from './metrics.js';
import { offlineSchema, OfflineTrainer, type OfflineConfig, type Prepared } from './offline.js';

export interface RewardConfig extends OfflineConfig {
  /** Truncate prompt+completion sequences to this many tokens, keeping the start (null: off). [max_length] */
  maxLength: number | null;
  /** Coefficient of mean((r_c + r_r)²), pushing rewards towards mean zero (0: off; 0.01 is the
   *  recommended value). [center_rewards_coefficient] */
  centerRewardsCoefficient: number;
}

const positiveOrNull = (v: number | null) => (v === null || (Number.isInteger(v) && v > 0) ? null : 'must be a positive integer or null');

/** RewardConfig fields: defaults follow TRL's RewardConfig (learning_rate 1e-4, max_length 1024). */
export const REWARD_SCHEMA: Schema<RewardConfig> = {
  ...offlineSchema({ learningRate: 1e-4 }),
  maxLength: { default: 1024, check: positiveOrNull, doc: 'truncate prompt+completion to this many tokens (keeps the start; null: off)', trl: 'max_length' },
  centerRewardsCoefficient: {
    default: 0, check: (v) => (typeof v === 'number' && v >= 0 && Number.isFinite(v) ? null : 'must be ≥ 0 (0: off; try 0.01)'),
    doc: 'coefficient of mean((r_c + r_r)²) (0: off)', trl: 'center_rewards_coefficient (None = 0)',
  },
};

export const describeRewardConfig = (): string => describeSchema(REWARD_SCHEMA);

export interface RewardTrainerOptions {
  /** The reward model (createRewardModel / loadRewardModel / loadValueModel with a fresh head). */
  model: RewardModel;
  tokenizer: Tokenizer;
  /** Preference rows: prompt (optional), chosen, rejected, optional margin. */
  trainDataset: Dataset | Row[];
  config?: Partial<RewardConfig>;
}

/** A prepared reward batch (collatePreference's fields; the completion masks are not needed). */
export interface RewardBatch {
  /** `[B, T]` prompt+chosen, right-padded, and its attention mask. */
  chosenIds: Tensor;
  chosenMask: Tensor;
  rejectedIds: Tensor;
  rejectedMask: Tensor;
  /** `[B]` margins (rows with a `margin` column). */
  margin?: Tensor | null;
}

interface RewardTotals { pairs: number }

export class RewardTrainer extends OfflineTrainer<RewardConfig, RewardBatch, RewardTotals> {
  readonly model: RewardModel;
  readonly tokenizer: Tokenizer;

  constructor(opts: RewardTrainerOptions) {
    const config = resolveConfig('RewardConfig', REWARD_SCHEMA, opts.config ?? {});
    if (!opts.model || typeof (opts.model as RewardModel).score !== 'function') {
      throw new TypeError("RewardConfig: 'model' must be a reward model (createRewardModel / loadRewardModel, or loadValueModel(dir) for a causal LM with a fresh score head)");
    }
    if (!opts.tokenizer || typeof opts.tokenizer.encode !== 'function') throw new TypeError("RewardTrainer: 'tokenizer' must be a Tokenizer (loadTokenizer / createCharTokenizer)");
    super('RewardTrainer', config, opts.model, opts.trainDataset);
    this.model = opts.model;
    this.tokenizer = opts.tokenizer;
  }

  /**
   * Bradley–Terry loss of a prepared batch (ALGORITHMS.md §8): `{ loss, metrics }` with metrics
   * `accuracy` (r_c > r_r), `margin` (mean r_c − r_r), `rewards/chosen`, `rewards/rejected` (means).
   * `numPairs` (default the batch's) is the pair count the mean divides by: the whole step's for a micro-batch.
   */
  computeLoss(batch: RewardBatch, opts: { numPairs?: number } = {}): { loss: Tensor; metrics: Metrics } {
    const n = batch.chosenIds.shape[0];
    const scores = this.model.score(cat([batch.chosenIds, batch.rejectedIds], 0), { attentionMask: cat([batch.chosenMask, batch.rejectedMask], 0) });
    const chosen = scores.narrow(0, 0, n);
    const rejected = scores.narrow(0, n, n);
    const bt = bradleyTerryLoss(chosen, rejected, { margin: batch.margin ?? null, centerCoef: this.config.centerRewardsCoefficient });
    const share = opts.numPairs !== undefined ? n / opts.numPairs : 1;
    const loss = share === 1 ? bt.loss : bt.loss.mul(share);
    const metrics: Metrics = noGrad(() => ({
      accuracy: bt.accuracy.item(),
      margin: bt.meanMargin.item(),
      'rewards/chosen': chosen.mean().item(),
      'rewards/rejected': rejected.mean().item(),
    }));
    return { loss, metrics };
  }

  protected collate(rows: Row[]): Prepared<RewardBatch> {
    const c = this.config;
    const b = collatePreference(this.tokenizer, rows, {
      ...(c.maxLength !== null ? { maxLength: c.maxLength, truncationMode: 'keep_start' as const } : {}), overlong: c.overlong,
    });
    b.chosenCompletionMask.dispose();
    b.rejectedCompletionMask.dispose();
    const tokens = b.rows.length === 0 ? 0 : noGrad(() => b.chosenMask.sum().item() + b.rejectedMask.sum().item());
    return {
      batch: { chosenIds: b.chosenIds, chosenMask: b.chosenMask, rejectedIds: b.rejectedIds, rejectedMask: b.rejectedMask, margin: b.margin ?? null },
      size: b.rows.length, tokens, skipped: b.skipped.length,
    };
  }

  protected totals(p: Prepared<RewardBatch>): RewardTotals {
    return { pairs: p.size };
  }

  protected microLoss(batch: RewardBatch, totals: RewardTotals): { loss: Tensor; metrics: Metrics } {
    return this.computeLoss(batch, { numPairs: totals.pairs });
  }

  protected metricWeight(batch: RewardBatch, totals: RewardTotals): number {
    return batch.chosenIds.shape[0] / totals.pairs;
  }
}
