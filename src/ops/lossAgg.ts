// lossAgg — scalar aggregation of a per-token loss (ALGORITHMS.md §5), the fused `llmrl::loss_agg` op
// (native/ops/loss_agg). With rowsum_b = Σ_t m·L, n_b = Σ_t m and S = rows with n_b > 0:
//   token_mean (DAPO, "bnpo")          Σ_b rowsum_b / N            N = normalizer ?? Σ_b n_b
//   seq_mean_token_mean (GRPO paper)   Σ_b (rowsum_b / n_b) / S'   S' = numSequences ?? S
//   seq_mean_token_sum_norm (Dr. GRPO) Σ_b rowsum_b / (S'·L_max)   L_max = maxLength ?? T
//   seq_mean_token_sum                 Σ_b rowsum_b / S'
// Fully masked rows contribute nothing and count in no denominator; a zero denominator gives 0 with zero
// gradient (never NaN). Differentiable with respect to the loss.
import { native } from '../native/addon.js';
import { Tensor, w, handleOf, describe } from '../tensor/tensor.js';

export type LossAggregation = 'token_mean' | 'seq_mean_token_mean' | 'seq_mean_token_sum_norm' | 'seq_mean_token_sum';
export const LOSS_AGGREGATIONS: readonly LossAggregation[] = ['token_mean', 'seq_mean_token_mean', 'seq_mean_token_sum_norm', 'seq_mean_token_sum'];

export interface LossAggOptions {
  /** How per-token losses become one scalar (default 'token_mean'). */
  aggregation?: LossAggregation;
  /**
   * token_mean only: the token count to divide by instead of this batch's Σ mask — with micro-batches,
   * the valid-token count of the WHOLE optimisation batch (all micro-batches and ranks), so the
   * accumulated gradient equals the full batch's. Ignored by the seq_* modes.
   */
  normalizer?: number;
  /**
   * seq_* modes only: the sequence count to divide by instead of this batch's number of sequences with
   * at least one valid token — with micro-batches, that count over the whole optimisation batch.
   * Ignored by token_mean. (A trainer may always pass both counts; each mode reads its own.)
   */
  numSequences?: number;
  /** seq_mean_token_sum_norm's L_max (Dr. GRPO: the max completion length); default T. Keep it fixed across micro-batches. */
  maxLength?: number;
}

let handle = -1;

/** @internal option checks shared with clippedSurrogate (JS names in the messages). */
export function checkAggOptions(op: string, opts: LossAggOptions): void {
  if (opts.aggregation !== undefined && !LOSS_AGGREGATIONS.includes(opts.aggregation)) {
    throw new TypeError(`${op}: 'aggregation' must be one of ${LOSS_AGGREGATIONS.map((a) => `'${a}'`).join(', ')}, got ${JSON.stringify(opts.aggregation)}`);
  }
  for (const key of ['normalizer', 'numSequences'] as const) {
    const v = opts[key];
    if (v !== undefined && v !== null && !(typeof v === 'number' && Number.isFinite(v) && v >= 0)) {
      throw new RangeError(`${op}: '${key}' must be a finite number >= 0, got ${typeof v === 'number' ? v : describe(v)}`);
    }
  }
  const L = opts.maxLength;
  if (L !== undefined && L !== null && !(Number.isInteger(L) && L > 0)) {
    throw new RangeError(`${op}: 'maxLength' must be a positive integer, got ${typeof L === 'number' ? L : describe(L)}`);
  }
}

/** @internal shape check: `t` must have the shape of `ref` (JS argument names in the message). */
export function checkSameShape(op: string, ref: Tensor, refName: string, t: Tensor, name: string): void {
  const a = ref.shape, b = t.shape;
  if (a.length !== b.length || a.some((d, i) => d !== b[i])) {
    throw new RangeError(`${op}: '${name}' must have the shape of '${refName}' [${a.join(', ')}], got [${b.join(', ')}]`);
  }
}

/**
 * Aggregates a per-token loss `[B, T]` into a scalar (float32; float64 for float64 input).
 * @example const loss = ops.lossAgg(perToken, mask, { aggregation: 'seq_mean_token_mean' });
 * @example // micro-batch k of a batch with N valid tokens in all: gradients accumulate to the full batch's
 *          ops.lossAgg(perTokenK, maskK, { aggregation: 'token_mean', normalizer: N }).backward();
 */
export function lossAgg(loss: Tensor, mask: Tensor, opts: LossAggOptions = {}): Tensor {
  const hl = handleOf(loss, 'lossAgg', 'loss');
  const hm = handleOf(mask, 'lossAgg', 'mask');
  checkAggOptions('lossAgg', opts);
  if (loss.ndim !== 2) throw new RangeError(`lossAgg: 'loss' must have shape [B, T], got [${loss.shape.join(', ')}]`);
  checkSameShape('lossAgg', loss, 'loss', mask, 'mask');
  const n = native();
  if (handle < 0) handle = n.opHandle('llmrl::loss_agg', '');
  return w(n.call(handle, hl, hm, opts.aggregation ?? 'token_mean', opts.normalizer ?? null, opts.numSequences ?? null, opts.maxLength ?? null));
}
