// Unfused float64 oracles for preferenceLoss (ALGORITHMS.md §7), composed from plain tensor ops.
// ipo uses per-token averaged log-ratios, and its metrics the same averaged ratios (as TRL).
// Test-only: never imported by src/.
import type { Tensor } from '../../src/index.js';

export interface PreferenceRefOptions {
  type: 'sigmoid' | 'ipo' | 'hinge' | 'robust';
  beta: number;
  labelSmoothing?: number;
  chosenLengths?: Tensor;
  rejectedLengths?: Tensor;
  referenceFree?: boolean;
}

export interface PreferenceRef {
  loss: Tensor;
  rewardsChosen: Tensor;
  rewardsRejected: Tensor;
  accuracy: Tensor;
  margin: Tensor;
}

export function preferenceLossRef(c: Tensor, r: Tensor, rc: Tensor, rr: Tensor, o: PreferenceRefOptions): PreferenceRef {
  const b = o.beta;
  const e = o.labelSmoothing ?? 0;
  let xc = o.referenceFree ? c : c.sub(rc);
  let xr = o.referenceFree ? r : r.sub(rr);
  let losses: Tensor;
  if (o.type === 'ipo') {
    xc = xc.div(o.chosenLengths!.to(xc.dtype));
    xr = xr.div(o.rejectedLengths!.to(xr.dtype));
    losses = xc.sub(xr).sub(1 / (2 * b)).square();
  } else {
    const z = xc.sub(xr).mul(b);
    if (o.type === 'sigmoid') losses = z.logSigmoid().mul(-(1 - e)).sub(z.neg().logSigmoid().mul(e));
    else if (o.type === 'hinge') losses = z.rsub(1).relu();
    else losses = z.logSigmoid().mul(-(1 - e)).add(z.neg().logSigmoid().mul(e)).div(1 - 2 * e);
  }
  return {
    loss: losses.mean(),
    rewardsChosen: xc.mul(b).mean(),
    rewardsRejected: xr.mul(b).mean(),
    accuracy: xc.gt(xr).to(xc.dtype).mean(),
    margin: xc.sub(xr).mul(b).mean(),
  };
}
