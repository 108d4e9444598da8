// Benchmarks for ops.linearTokenLogprobs (ALGORITHMS.md §1b) against the composition it replaces,
// through llmrl's own tensor layer: logits = hidden.matmul(weight.t()) [N, V] made whole, then
// logSoftmax(-1).gather(…) (and the entropy from the same log-softmax), forward and forward+backward.
// The full shape is Qwen2.5-0.5B's head (H = 896, V = 151936) on 4096 tokens: ~1.1 TFLOP per GEMM, so
// one repeat; the composed baseline holds several [4096, 151936] float32 tensors (~2.5 GB each).
import type { BenchCase } from '../ops.js';
import * as ops from '../../ops/index.js';
import { randint, randn, type Tensor } from '../../tensor/index.js';

function composed(h: Tensor, w: Tensor, t: Tensor, withEntropy: boolean): Tensor {
  const lsm = h.matmul(w.t()).logSoftmax(-1);
  const lp = lsm.gather(-1, t.unsqueeze(-1)).squeeze(-1);
  if (!withEntropy) return lp.sum();
  // H = −Σ p·log p, written as one would without the fused op (no −inf guard: the inputs have none)
  return lp.sum().add(lsm.exp().mul(lsm).sum().neg());
}

function fused(h: Tensor, w: Tensor, t: Tensor, withEntropy: boolean): Tensor {
  const { logprobs, entropy } = ops.linearTokenLogprobs(h, w, t, { withEntropy });
  return entropy ? logprobs.sum().add(entropy.sum()) : logprobs.sum();
}

function shapeCases(N: number, H: number, V: number, repeats: number, entropy: boolean): BenchCase[] {
  let h: Tensor, w: Tensor, t: Tensor;
  const setup = (grad: boolean) => () => {
    h = randn([N, H]).mul_(0.5).requiresGrad_(grad); // in place: no [V, H] temporary left to the GC
    w = randn([V, H]).mul_(0.05).requiresGrad_(grad);
    t = randint(0, V, [N], { dtype: 'int64' });
    return () => { h.dispose(); w.dispose(); t.dispose(); };
  };
  // fwd+bwd variants drop the grads after each call so every call starts from the same memory
  const bwd = (f: typeof fused) => () => { f(h, w, t, entropy).backward(); h.grad = null; w.grad = null; };
  const shape = `[${N}, ${H}] x [${V}, ${H}] float32${entropy ? ' +entropy' : ''}`;
  return [
    {
      name: `linearTokenLogprobs fwd ${shape}`,
      setup: setup(false),
      repeats,
      variants: [
        { variant: 'composed (matmul + logSoftmax + gather)', fn: () => { composed(h, w, t, entropy); } },
        { variant: 'fused (auto chunk)', fn: () => { fused(h, w, t, entropy); } },
      ],
    },
    {
      name: `linearTokenLogprobs fwd+bwd ${shape}`,
      setup: setup(true),
      repeats,
      variants: [
        { variant: 'composed (matmul + logSoftmax + gather)', fn: bwd(composed) },
        { variant: 'fused (auto chunk)', fn: bwd(fused) },
      ],
    },
  ];
}

export function cases(quick: boolean): BenchCase[] {
  if (quick) return [...shapeCases(256, 64, 4096, 5, false), ...shapeCases(256, 64, 4096, 5, true)];
  return [...shapeCases(1024, 512, 32000, 3, true), ...shapeCases(4096, 896, 151936, 1, false)];
}
