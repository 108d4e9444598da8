// Unfused float64 oracles for ops.clippedSurrogate (ALGORITHMS.md §4a, §4b, §4c), composed from plain
// tensor ops so autograd gives the reference gradients: per-token losses at the three levels and the
// clip metrics as numbers. Test-only: never imported by src/.
import { where, zerosLike, type Tensor } from '../../src/index.js';

export interface SurrogateRefOptions {
  epsLow?: number;
  epsHigh?: number;
  dualClip?: number;
  delta?: number;
}

/** −min(w_u·A, clamp(w, 1−ε_low, 1+ε_high)·A), w_u = min(w, δ); dual-clip: A < 0 → min(L, −c·A). */
export function surrogateRef(w: Tensor, A: Tensor, o: SurrogateRefOptions = {}): Tensor {
  const el = o.epsLow ?? 0.2, eh = o.epsHigh ?? el;
  const wu = o.delta === undefined ? w : w.clamp(null, o.delta);
  let L = wu.mul(A).minimum(w.clamp(1 - el, 1 + eh).mul(A)).neg();
  if (o.dualClip !== undefined) L = where(A.lt(0), L.minimum(A.mul(-o.dualClip)), L);
  return L;
}

const expandAdv = (adv: Tensor, lp: Tensor) => (adv.ndim === 1 ? adv.unsqueeze(1).expand(lp.shape) : adv);

/** Per-token loss [B, T] at 'token', 'sequence' or 'sequence_token' level (masked = 0). */
export function clippedSurrogateRef(lp: Tensor, old: Tensor, adv: Tensor, mask: Tensor,
  level: 'token' | 'sequence' | 'sequence_token', o: SurrogateRefOptions = {}): Tensor {
  const m = mask.bool();
  const zero = zerosLike(lp);
  let L: Tensor;
  if (level === 'token') {
    L = surrogateRef(lp.sub(old).clamp(-20, 20).exp(), expandAdv(adv, lp), o);
  } else {
    const x = where(m, lp.sub(old).clamp(-20, 20), zero);
    const logS = x.sum(1).div(m.sum(1).to(lp.dtype).clamp(1)); // NOT detached
    if (level === 'sequence') {
      L = surrogateRef(logS.exp(), adv, o).unsqueeze(1).expand(lp.shape);
    } else {
      const logW = logS.detach().unsqueeze(1).add(lp).sub(lp.detach());
      L = surrogateRef(logW.exp(), expandAdv(adv, lp), o);
    }
  }
  return where(m, L, zero);
}

/** §4c metrics [clipFrac, clipFracLow, clipFracHigh, approxKl] as numbers. */
export function surrogateMetricsRef(lp: Tensor, old: Tensor, adv: Tensor, mask: Tensor,
  level: 'token' | 'sequence' | 'sequence_token', o: SurrogateRefOptions = {}): number[] {
  const el = o.epsLow ?? 0.2, eh = o.epsHigh ?? el;
  const m = mask.bool();
  const zero = zerosLike(lp);
  const sq = where(m, lp.sub(old).square(), zero);
  if (level === 'token' || level === 'sequence_token') {
    let w = lp.sub(old).clamp(-20, 20).exp();
    if (level === 'sequence_token') {
      const n = m.sum(1).to(lp.dtype).clamp(1);
      w = where(m, lp.sub(old).clamp(-20, 20), zero).sum(1).div(n).exp().unsqueeze(1).expand(lp.shape);
    }
    const A = expandAdv(adv, lp);
    const N = m.sum().item();
    const low = w.lt(1 - el).logicalAnd(A.lt(0)).logicalAnd(m).sum().item() / N;
    const high = w.gt(1 + eh).logicalAnd(A.gt(0)).logicalAnd(m).sum().item() / N;
    return [low + high, low, high, (0.5 * sq.sum().item()) / N];
  }
  const n = m.sum(1).to(lp.dtype);
  const valid = n.gt(0);
  const S = valid.sum().item();
  const s = where(m, lp.sub(old).clamp(-20, 20), zero).sum(1).div(n.clamp(1)).exp();
  const low = s.lt(1 - el).logicalAnd(adv.lt(0)).logicalAnd(valid).sum().item() / S;
  const high = s.gt(1 + eh).logicalAnd(adv.gt(0)).logicalAnd(valid).sum().item() / S;
  const kl = where(valid, sq.sum(1).div(n.clamp(1)), zerosLike(n)).sum().item();
  return [low + high, low, high, (0.5 * kl) / S];
}
