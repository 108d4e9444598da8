// Unfused oracle for ops.linearTokenLogprobs (ALGORITHMS.md §1b): the [N, V] logits made whole with a
// matmul, then log_softmax + gather and the entropy, from plain tensor ops (differentiable, so tests
// compare gradients too). Run it in float64 for reference values. Test-only: never imported by src/.
import { where, zerosLike, type Tensor } from '../../src/index.js';

export function linearTokenLogprobsRef(hidden: Tensor, weight: Tensor, targets: Tensor,
  opts: { bias?: Tensor; temperature?: number } = {}): { logprobs: Tensor; entropy: Tensor } {
  let z = hidden.matmul(weight.t());
  if (opts.bias) z = z.add(opts.bias);
  z = z.div(opts.temperature ?? 1);
  const lsm = z.logSoftmax(-1);
  const logprobs = lsm.gather(-1, targets.unsqueeze(-1)).squeeze(-1);
  const p = lsm.exp();
  // p·log p with p = 0 (a −inf logit) counts 0, not 0·(−inf)
  const entropy = where(p.gt(0), p.mul(lsm), zerosLike(p)).sum(-1).neg();
  return { logprobs, entropy };
}
