// Unfused float64 oracle for bradleyTerryLoss (ALGORITHMS.md §8), composed from plain tensor ops.
// Test-only: never imported by src/.
import type { Tensor } from '../../src/index.js';

export function bradleyTerryLossRef(c: Tensor, r: Tensor, margin?: Tensor | number, centerCoef = 0):
  { loss: Tensor; accuracy: Tensor; meanMargin: Tensor } {
  let d = c.sub(r);
  if (margin !== undefined) d = d.sub(typeof margin === 'number' ? margin : margin.to(d.dtype));
  let loss = d.logSigmoid().mean().neg();
  if (centerCoef !== 0) loss = loss.add(c.add(r).square().mean().mul(centerCoef));
  return { loss, accuracy: c.gt(r).to(c.dtype).mean(), meanMargin: c.sub(r).mean() };
}
