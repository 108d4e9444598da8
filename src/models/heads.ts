// Reward and value models: a transformer backbone + `score`, Linear(hidden, 1, bias=false), laid out
// exactly as transformers' *ForSequenceClassification with num_labels = 1 (`model.*` or
// `transformer.*` + `score.weight` [1, H]), so checkpoints move between llmrl, transformers and TRL.
//   values(ids) = score(hidden)                                  [B, T]   per-token (PPO critic)
//   score(ids)  = values[b, last real token of row b]            [B]      sequence reward
// "Last real token" is the last position whose attention mask is 1: for right padding the end of
// the text, for left padding the final column. transformers picks the rightmost token that is not
// pad_token_id, which is the same position whenever padding uses the pad id; without a mask we do
// exactly that (or take the last token when the config has no pad_token_id).
import { Tensor, arange, tidy } from '../tensor/index.js';
import type { ModelConfig } from './config.js';
import { Dense, type ParamSource } from './layers.js';
import { PretrainedModel, type ForwardOptions } from './base.js';

export interface ScoreOptions {
  /** `[B, T]`, 1 on real tokens. Default: tokens ≠ pad_token_id (all tokens when the config has none). */
  attentionMask?: Tensor | null;
  /** `[B, T]` int64; default cumsum(mask) − 1 (see ForwardOptions). */
  positionIds?: Tensor | null;
}

export interface ValueOutput {
  /** Per-token scalar outputs `[B, T]`. */
  values: Tensor;
  /** Final-norm hidden states `[B, T, H]`. */
  hidden: Tensor;
}

/**
 * Backbone + scalar `score` head (transformers' *ForSequenceClassification, num_labels 1): a reward
 * model (`score()` → one reward per sequence) or a PPO value model (`forward()` → a value per token).
 * `ValueModel` is the same class.
 */
export class RewardModel extends PretrainedModel {
  /** The `score` Linear: weight `[1, H]`, no bias. */
  readonly scoreHead: Dense;

  constructor(src: ParamSource, config: ModelConfig, extraConfig: Record<string, unknown> = {}) {
    super(src, { ...config, numLabels: 1 }, 'score', extraConfig);
    this.scoreHead = this.registerModule('score', new Dense(src, 'score', config.hiddenSize, 1, false, config.initializerRange));
  }

  /** Per-token values `[B, T]` and hidden states. Pass `cache` etc. as for CausalLM.forward. */
  forward(inputIds: Tensor, opts: ForwardOptions = {}): ValueOutput {
    const hidden = this.runBackbone(`${this.constructor.name}.forward`, inputIds, opts);
    const values = tidy(() => this.scoreHead.forward(hidden).squeeze(-1));
    return { values, hidden };
  }

  /**
   * One score per sequence `[B]`: the head's output at each row's last real token.
   * @example const rewards = rm.score(ids, { attentionMask: mask }); // [B]
   */
  score(inputIds: Tensor, opts: ScoreOptions = {}): Tensor {
    const owner = `${this.constructor.name}.score`;
    let mask = opts.attentionMask ?? null;
    return tidy(() => {
      const pad = this.config.padTokenId;
      if (!mask && pad !== null && inputIds instanceof Tensor) mask = inputIds.ne(pad);
      const { values, hidden } = this.forward(inputIds, { attentionMask: opts.attentionMask ?? null, positionIds: opts.positionIds });
      hidden.dispose();
      const t = values.shape[1];
      // Index of the last real token: argmax over j of j·mask[b, j] (the rightmost 1).
      const last = mask
        ? arange(0, t, 1, { device: values.device }).mul(mask.ne(0).long()).argmax(1, { keepdim: true })
        : arange(t - 1, t, 1, { device: values.device }).unsqueeze(0).expand(values.shape[0], 1);
      if (mask && mask.shape[1] !== t) throw new RangeError(`${owner}: 'attentionMask' must have shape [B, ${t}]`);
      return values.gather(1, last).squeeze(1);
    });
  }
}

/** A PPO critic: the same backbone + scalar head as RewardModel; use `forward(...).values` `[B, T]`. */
export const ValueModel = RewardModel;
export type ValueModel = RewardModel;
