// klPenalty — per-token KL estimators between policy and reference (ALGORITHMS.md §2), the fused
// `llmrl::kl_penalty` op (native/ops/kl_penalty). With d = clamp(ℓ_ref − ℓ, −20, 20):
//   k1 = −d, k2 = ½d², k3 = e^d − d − 1 (default), abs = |d|; gradient flows through ℓ only.
// `oldLogprobs` turns on the ratio-weighted (bias-corrected) form: × exp(clamp(ℓ − ℓ_old, −20, 20)).
import { native } from '../native/addon.js';
import { Tensor, w, handleOf } from '../tensor/tensor.js';

export type KlEstimator = 'k1' | 'k2' | 'k3' | 'abs';
const ESTIMATORS: readonly KlEstimator[] = ['k1', 'k2', 'k3', 'abs'];

export interface KlPenaltyOptions {
  /** Which estimator (default 'k3', the low-variance one). */
  estimator?: KlEstimator;
  /** 1/true on real tokens; masked positions return 0 with zero gradient. Same shape as logprobs. */
  mask?: Tensor | null;
  /** Behaviour-policy log-probs: weights each token by π_θ/π_old (not detached). */
  oldLogprobs?: Tensor | null;
}

let handle = -1;

/**
 * Per-token KL penalty `[B, T]` (any shape; all inputs the same shape and dtype).
 * @example const kl = ops.klPenalty(logprobs, refLogprobs, { estimator: 'k3', mask });
 */
export function klPenalty(logprobs: Tensor, refLogprobs: Tensor, opts: KlPenaltyOptions = {}): Tensor {
  const estimator = opts.estimator ?? 'k3';
  if (!ESTIMATORS.includes(estimator)) {
    throw new TypeError(`klPenalty: 'estimator' must be one of ${ESTIMATORS.map((e) => `'${e}'`).join(', ')}, got ${JSON.stringify(estimator)}`);
  }
  const n = native();
  if (handle < 0) handle = n.opHandle('llmrl::kl_penalty', '');
  return w(n.call(handle, handleOf(logprobs, 'klPenalty', 'logprobs'), handleOf(refLogprobs, 'klPenalty', 'refLogprobs'),
    opts.mask ? handleOf(opts.mask, 'klPenalty', 'mask') : null,
    opts.oldLogprobs ? handleOf(opts.oldLogprobs, 'klPenalty', 'oldLogprobs') : null, estimator));
}
