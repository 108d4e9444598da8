// Unfused float64 oracle for ops.valueLoss (ALGORITHMS.md §6; TRL's PPO value loss), composed from plain
// tensor ops so autograd gives the reference gradient. Test-only: never imported by src/.
import { where, zerosLike, type Tensor } from '../../src/index.js';

export function valueLossRef(v: Tensor, vOld: Tensor, R: Tensor, mask: Tensor, clip = 0.2, normalizer?: number): { loss: Tensor; clipFrac: number } {
  const m = mask.bool();
  const zero = zerosLike(v);
  const vClip = vOld.add(v.sub(vOld).clamp(-clip, clip));
  const l1 = v.sub(R).square();
  const l2 = vClip.sub(R).square();
  const n = m.sum().item();
  const loss = where(m, l1.maximum(l2), zero).sum().mul(0.5).div(normalizer ?? n);
  const clipFrac = l2.gt(l1).logicalAnd(m).sum().item() / n;
  return { loss, clipFrac };
}
