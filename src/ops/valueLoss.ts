// valueLoss — PPO's clipped value (critic) loss (ALGORITHMS.md §6), the fused `llmrl::value_loss` op
// (native/ops/value_loss), as in TRL's PPOTrainer:
//   v_clip = V_old + clamp(V − V_old, −clip, clip);   L_v = ½·max((V − R)², (v_clip − R)²), masked mean.
// clipFrac = fraction of valid tokens where the clipped term is larger (TRL's vf_clipfrac). Gradient flows
// to `values` only; masked positions are never read (NaN there is harmless) and get gradient 0.
import { native } from '../native/addon.js';
import { Tensor, w, handleOf, describe } from '../tensor/tensor.js';
import { checkSameShape } from './lossAgg.js';

export interface ValueLossOptions {
  /** ε_v, the clip range around the old values (default 0.2). */
  clip?: number;
  /**
   * Token count to divide by instead of this batch's Σ mask — with micro-batches, the valid-token count
   * of the whole optimisation batch, so accumulated gradients equal the full batch's.
   */
  normalizer?: number;
}

export interface ValueLossResult {
  /** The scalar loss (float32; float64 for float64 inputs), differentiable with respect to `values`. */
  loss: Tensor;
  /** 0-d tensor, no gradient: fraction of valid tokens where the clipped term was used. Read with `.item()` when logging. */
  clipFrac: Tensor;
}

let handle = -1;

/**
 * Clipped value loss of the critic's `values` against `returns` (all `[B, T]`, or any common shape).
 * `values`, `oldValues` and `returns` must share a dtype; `mask` is bool or nonzero.
 * @example const { loss: vfLoss, clipFrac } = ops.valueLoss(values, oldValues, returns, mask, { clip: 0.2 });
 *          total = policyLoss.add(vfLoss.mul(0.1));
 */
export function valueLoss(values: Tensor, oldValues: Tensor, returns: Tensor, mask: Tensor, opts: ValueLossOptions = {}): ValueLossResult {
  const hv = handleOf(values, 'valueLoss', 'values');
  const ho = handleOf(oldValues, 'valueLoss', 'oldValues');
  const hr = handleOf(returns, 'valueLoss', 'returns');
  const hm = handleOf(mask, 'valueLoss', 'mask');
  const clip = opts.clip ?? 0.2;
  if (typeof clip !== 'number' || !Number.isFinite(clip) || clip < 0) {
    throw new RangeError(`valueLoss: 'clip' must be a finite number >= 0, got ${typeof clip === 'number' ? clip : describe(clip)}`);
  }
  const norm = opts.normalizer;
  if (norm !== undefined && norm !== null && !(typeof norm === 'number' && Number.isFinite(norm) && norm >= 0)) {
    throw new RangeError(`valueLoss: 'normalizer' must be a finite number >= 0, got ${typeof norm === 'number' ? norm : describe(norm)}`);
  }
  checkSameShape('valueLoss', values, 'values', oldValues, 'oldValues');
  checkSameShape('valueLoss', values, 'values', returns, 'returns');
  checkSameShape('valueLoss', values, 'values', mask, 'mask');
  const n = native();
  if (handle < 0) handle = n.opHandle('llmrl::value_loss', '');
  const [loss, clipFrac] = n.call(handle, hv, ho, hr, hm, clip, norm ?? null);
  return { loss: w(loss), clipFrac: w(clipFrac) };
}
