// Unfused float64 oracle for klPenalty (ALGORITHMS.md §2), composed from plain tensor ops.
// Test-only: never imported by src/.
import { where, zerosLike, type Tensor } from '../../src/index.js';

export function klPenaltyRef(lp: Tensor, ref: Tensor, est: 'k1' | 'k2' | 'k3' | 'abs', mask?: Tensor, old?: Tensor): Tensor {
  const d = ref.sub(lp).clamp(-20, 20);
  let k = est === 'k1' ? d.neg() : est === 'k2' ? d.square().mul(0.5) : est === 'k3' ? d.exp().sub(d).sub(1) : d.abs();
  if (old) k = k.mul(lp.sub(old).clamp(-20, 20).exp());
  if (mask) k = where(mask, k, zerosLike(k));
  return k;
}
