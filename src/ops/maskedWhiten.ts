// maskedWhiten — whitening over the valid tokens (ALGORITHMS.md §3c), the fused `llmrl::masked_whiten`
// op (native/ops/masked_whiten); TRL's `masked_whiten`, used on PPO advantages.
//   y = (x − μ)/sqrt(var + 1e-8) over ALL valid positions (one global μ/var), var Bessel-corrected;
//   shiftMean = false adds μ back. Masked positions are 0. One valid token: var = 0 (y = 0, or x with
//   shiftMean = false) where TRL raises; no valid token: all zeros. Differentiable with respect to x.
import { native } from '../native/addon.js';
import { Tensor, w, handleOf, describe } from '../tensor/tensor.js';

export interface MaskedWhitenOptions {
  /** true (default): zero-mean output; false: whitened then + mean (TRL's shift_mean=False). */
  shiftMean?: boolean;
}

let handle = -1;

/**
 * Whitens `x` (any shape) over the positions where `mask` (same shape; bool or nonzero) is set.
 * Statistics accumulate in float64; the output keeps x's dtype.
 * @example const normAdv = ops.maskedWhiten(advantages, mask);            // PPO advantages
 * @example const y = ops.maskedWhiten(x, mask, { shiftMean: false });     // keep the mean
 */
export function maskedWhiten(x: Tensor, mask: Tensor, opts: MaskedWhitenOptions = {}): Tensor {
  const shiftMean = opts.shiftMean ?? true;
  if (typeof shiftMean !== 'boolean') {
    throw new TypeError(`maskedWhiten: 'shiftMean' must be a boolean, got ${describe(shiftMean)}`);
  }
  const hx = handleOf(x, 'maskedWhiten', 'x');
  const hm = handleOf(mask, 'maskedWhiten', 'mask');
  const n = native();
  if (handle < 0) handle = n.opHandle('llmrl::masked_whiten', '');
  return w(n.call(handle, hx, hm, shiftMean));
}
