// Unfused oracle for ops.tokenLogprobs (ALGORITHMS.md §1): log_softmax(logits/τ) + gather, and the
// entropy −Σ p·log p, from plain tensor ops (differentiable, so tests compare gradients too). Run it in
// float64 for reference values. log p is floored at −1e4 inside the entropy so that a −inf logit adds
// 0·(−1e4) = 0 (and its gradient stays finite) instead of 0·(−inf) = NaN. Test-only: never imported by src/.
import type { Tensor } from '../../src/index.js';

export function tokenLogprobsRef(logits: Tensor, targets: Tensor, temperature = 1): { logprobs: Tensor; entropy: Tensor } {
  const lsm = logits.div(temperature).logSoftmax(-1);
  const logprobs = lsm.gather(-1, targets.unsqueeze(-1)).squeeze(-1);
  const entropy = lsm.exp().mul(lsm.clamp(-1e4)).sum(-1).neg();
  return { logprobs, entropy };
}
