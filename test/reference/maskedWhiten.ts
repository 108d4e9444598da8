// Unfused float64 oracle for ops.maskedWhiten (ALGORITHMS.md §3c): TRL's masked_mean / masked_var
// (unbiased) / masked_whiten composed from plain tensor ops, masked positions then set to 0, so autograd
// gives the reference gradient. Test-only: never imported by src/.
import { where, zerosLike, type Tensor } from '../../src/index.js';

export function maskedWhitenRef(x: Tensor, mask: Tensor, shiftMean = true): Tensor {
  const m = mask.bool();
  const zero = zerosLike(x);
  const n = m.sum().to(x.dtype);
  const mean = where(m, x, zero).sum().div(n);
  const variance = where(m, x.sub(mean), zero).square().sum().div(n.sub(1));
  let y = x.sub(mean).mul(variance.add(1e-8).rsqrt());
  if (!shiftMean) y = y.add(mean);
  return where(m, y, zero);
}
