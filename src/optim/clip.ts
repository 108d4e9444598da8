// Gradient clipping by global norm (torch.nn.utils.clip_grad_norm_; Pascanu et al. 2013): with
// n = ‖(‖g₁‖ₚ, …, ‖gₖ‖ₚ)‖ₚ over every gradient, each gradient is scaled in place by
// min(1, maxNorm / (n + 1e-6)). The norm is accumulated in float64 (native/binding/optim.cpp).
import { native } from '../native/addon.js';
import { Tensor } from '../tensor/index.js';

/**
 * Clips the gradients of `params` in place so that their joint p-norm is at most `maxNorm`;
 * parameters without a gradient are skipped. Returns the total norm *before* clipping (a number;
 * 0 when no parameter has a gradient). `normType` is p > 0, or Infinity for the max-abs norm.
 * @example const gradNorm = clipGradNorm(model.parameters(), 1.0);
 */
export function clipGradNorm(params: Tensor[], maxNorm: number, normType = 2): number {
  if (!Array.isArray(params)) {
    throw new TypeError(`clipGradNorm: 'params' must be an array of Tensors (e.g. model.parameters()), got ${params === null ? 'null' : typeof params}`);
  }
  params.forEach((p, i) => {
    if (!(p instanceof Tensor)) throw new TypeError(`clipGradNorm: params[${i}] must be a Tensor, got ${p === null ? 'null' : typeof p}`);
  });
  if (typeof maxNorm !== 'number' || !Number.isFinite(maxNorm) || maxNorm < 0) {
    throw new RangeError(`clipGradNorm: 'maxNorm' must be a finite number >= 0, got ${maxNorm}`);
  }
  if (typeof normType !== 'number' || !(normType > 0)) {
    throw new RangeError(`clipGradNorm: 'normType' must be a number > 0 or Infinity, got ${normType}`);
  }
  return native().clipGradNorm(params.map((p) => p._h), maxNorm, normType);
}
