// Supervised fine-tuning (ALGORITHMS.md §9 "SFT"): the mean token negative log-likelihood of the target
// tokens — completion tokens of prompt+completion rows (TRL's completion_only_loss), every token of text
// rows, all or only assistant turns of `messages` rows — as TRL's SFTTrainer. Per-token log-probs come
// from the fused linear log-prob op (no [B, T, V] logits) and the token mean from ops.lossAgg.
// Micro-batches normalise by the whole step's target-token count, so any split gives the same gradient.
import { collateSFT, type Dataset, type Row } from '../data/index.js';
import type { CausalLM } from '../models/index.js';
import { lossAgg } from '../ops/index.js';
import { noGrad, type Tensor } from '../tensor/index.js';
import type { Tokenizer } from '../tokenizer/index.js';
import { describeSchema, resolveConfig, type Schema } from './config.js';
import type { Metrics } from './metrics.js';
import { nextTokenLogprobs, offlineSchema, OfflineTrainer, type OfflineConfig, type Prepared } from './offline.js';

export interface SFTConfig extends OfflineConfig {
  /** Sequences are truncated to this many tokens, keeping the start (null: no limit). [max_length] */
  maxLength: number | null;
  /** Loss on completion tokens only for prompt+completion rows. [completion_only_loss] */
  completionOnlyLoss: boolean;
  /** Loss on assistant turns only for `messages` rows. [assistant_only_loss] */
  assistantOnlyLoss: boolean;
  /** Log `tokenAccuracy` (argmax = target over the loss tokens; one no-grad [T, V] block per row). */
  tokenAccuracy: boolean;
}

const positiveOrNull = (v: number | null) => (v === null || (Number.isInteger(v) && v > 0) ? null : 'must be a positive integer or null');

/** SFTConfig fields: defaults follow TRL's SFTConfig (learning_rate 2e-5, max_length 1024, linear decay). */
export const SFT_SCHEMA: Schema<SFTConfig> = {
  ...offlineSchema({ learningRate: 2e-5 }),
  maxLength: { default: 1024, check: positiveOrNull, doc: 'truncate sequences to this many tokens (keeps the start; null: off)', trl: 'max_length' },
  completionOnlyLoss: { default: true, doc: 'prompt+completion rows: loss on completion tokens only', trl: 'completion_only_loss' },
  assistantOnlyLoss: { default: false, doc: 'messages rows: loss on assistant turns only', trl: 'assistant_only_loss' },
  tokenAccuracy: { default: true, doc: 'log tokenAccuracy (argmax hits over loss tokens)', trl: 'mean_token_accuracy (always logged by TRL)' },
};

/** The SFTConfig documentation table (option, default, TRL name, meaning). */
export const describeSFTConfig = (): string => describeSchema(SFT_SCHEMA);

export interface SFTTrainerOptions {
  /** The causal LM to fine-tune (loadCausalLM / createCausalLM). */
  model: CausalLM;
  tokenizer: Tokenizer;
  /** Text, prompt+completion or messages rows (TRL's SFT formats). */
  trainDataset: Dataset | Row[];
  config?: Partial<SFTConfig>;
}

/** A prepared SFT batch (the testability contract: computeLoss takes exactly this; collateSFT's fields). */
export interface SFTTrainBatch {
  /** `[B, T]` int64 token ids, right-padded. */
  inputIds: Tensor;
  /** `[B, T]` 1 on real tokens. */
  attentionMask: Tensor;
  /** `[B, T]` 1 on target tokens (unshifted: position t is a target when lossMask[t] = 1). */
  lossMask: Tensor;
}

interface SFTTotals { tokens: number }

export class SFTTrainer extends OfflineTrainer<SFTConfig, SFTTrainBatch, SFTTotals> {
  readonly model: CausalLM;
  readonly tokenizer: Tokenizer;

  constructor(opts: SFTTrainerOptions) {
    const config = resolveConfig('SFTConfig', SFT_SCHEMA, opts.config ?? {});
    if (!opts.model || typeof (opts.model as CausalLM).lmHeadWeight !== 'function') throw new TypeError("SFTConfig: 'model' must be a causal LM (loadCausalLM / createCausalLM)");
    if (!opts.tokenizer || typeof opts.tokenizer.encode !== 'function') throw new TypeError("SFTTrainer: 'tokenizer' must be a Tokenizer (loadTokenizer / createCharTokenizer)");
    super('SFTTrainer', config, opts.model, opts.trainDataset);
    this.model = opts.model;
    this.tokenizer = opts.tokenizer;
  }

  /**
   * Mean token NLL of a prepared batch (ALGORITHMS.md §9 SFT, §5 token_mean): `{ loss, metrics }`, loss a
   * back-propagatable scalar. `normalizer` replaces the batch's own target-token count (the whole step's
   * count when this batch is a micro-batch of it).
   */
  computeLoss(batch: SFTTrainBatch, opts: { normalizer?: number } = {}): { loss: Tensor; metrics: Metrics } {
    const { inputIds, attentionMask, lossMask } = batch;
    const T = inputIds.shape[1];
    const mask = lossMask.narrow(1, 1, T - 1);
    const { logprobs, hits } = nextTokenLogprobs(this.model, inputIds, attentionMask, { hits: this.config.tokenAccuracy });
    const loss = lossAgg(logprobs.neg(), mask, { aggregation: 'token_mean', normalizer: opts.normalizer });
    const metrics: Metrics = {};
    if (hits) {
      metrics.tokenAccuracy = noGrad(() => {
        const n = mask.sum().item();
        return n > 0 ? hits.long().mul(mask).sum().item() / n : 0;
      });
    }
    return { loss, metrics };
  }

  protected collate(rows: Row[]): Prepared<SFTTrainBatch> {
    const c = this.config;
    const b = collateSFT(this.tokenizer, rows, {
      ...(c.maxLength !== null ? { maxLength: c.maxLength } : {}),
      completionOnlyLoss: c.completionOnlyLoss, assistantOnlyLoss: c.assistantOnlyLoss, overlong: c.overlong,
    });
    b.labels.dispose();
    return {
      batch: { inputIds: b.inputIds, attentionMask: b.attentionMask, lossMask: b.lossMask },
      size: b.rows.length,
      tokens: b.lengths.reduce((a, x) => a + x, 0),
      skipped: b.skipped.length,
    };
  }

  protected totals(p: Prepared<SFTTrainBatch>): SFTTotals {
    return { tokens: targetTokens(p.batch) };
  }

  protected microLoss(batch: SFTTrainBatch, totals: SFTTotals): { loss: Tensor; metrics: Metrics } {
    return this.computeLoss(batch, { normalizer: totals.tokens });
  }

  protected metricWeight(batch: SFTTrainBatch, totals: SFTTotals): number {
    return totals.tokens > 0 ? targetTokens(batch) / totals.tokens : 0;
  }
}

/** Target tokens of a batch (loss-mask ones after the first position, which nothing predicts). */
function targetTokens(b: SFTTrainBatch): number {
  return noGrad(() => b.lossMask.narrow(1, 1, b.lossMask.shape[1] - 1).sum().item());
}
