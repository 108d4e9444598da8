// Benchmarks for ops.tokenLogprobs (ALGORITHMS.md §1) against the same math composed from plain llmrl
// tensor ops (the first variant, the baseline):
//   logprobs: logits.logSoftmax(-1).gather(-1, targets.unsqueeze(-1))
//   entropy:  −Σ exp(lsm)·lsm over the same log-softmax
// forward (no grad) and forward+backward (Σ outputs, then backward; the logits grad is dropped after
// each round so rounds do not accumulate). Peak extra memory includes the logits gradient [N, V] in
// forward+backward, which both variants must produce; subtract N·V·itemsize for the memory beyond it.
import type { BenchCase } from '../ops.js';
import * as ops from '../../ops/index.js';
import { noGrad, randint, randn, tidy, type DType, type Tensor } from '../../tensor/index.js';

function composed(logits: Tensor, targets: Tensor, withEntropy: boolean): Tensor {
  const lsm = logits.logSoftmax(-1);
  const lp = lsm.gather(-1, targets.unsqueeze(-1)).squeeze(-1);
  return withEntropy ? lp.sum().add(lsm.exp().mul(lsm).sum(-1).neg().sum()) : lp.sum();
}

function fused(logits: Tensor, targets: Tensor, withEntropy: boolean): Tensor {
  const { logprobs, entropy } = ops.tokenLogprobs(logits, targets, { withEntropy });
  return entropy ? logprobs.sum().add(entropy.sum()) : logprobs.sum();
}

export function cases(quick: boolean): BenchCase[] {
  const shapes: [number, number][] = quick ? [[64, 1000], [16, 5003]] : [[8 * 512, 32000], [4 * 1024, 151936]];
  const out: BenchCase[] = [];
  for (const [n, v] of shapes) {
    const big = n * v >= 2 ** 28;
    for (const dtype of ['float32', 'bfloat16'] as DType[]) {
      let logits: Tensor;
      let targets: Tensor;
      const setup = (grad: boolean) => () => {
        logits = tidy(() => randn([n, v]).mul(3).to(dtype)); // frees the float32 temporaries now
        if (grad) logits.requiresGrad_();
        targets = randint(0, v, [n], { dtype: 'int64' });
        return () => { logits.dispose(); targets.dispose(); };
      };
      const step = (f: typeof composed, withEntropy: boolean) => () => {
        const loss = f(logits, targets, withEntropy);
        loss.backward();
        logits.grad = null;
      };
      const shape = `[${n}, ${v}] ${dtype}`;
      const repeats = quick ? 5 : big ? 2 : 3;
      out.push({
        name: `tokenLogprobs fwd ${shape}`,
        setup: setup(false),
        repeats,
        variants: [
          { variant: 'composed (logSoftmax + gather)', fn: () => { noGrad(() => composed(logits, targets, false)); } },
          { variant: 'fused', fn: () => { noGrad(() => fused(logits, targets, false)); } },
        ],
      });
      out.push({
        name: `tokenLogprobs fwd+bwd ${shape}`,
        setup: setup(true),
        repeats,
        variants: [
          { variant: 'composed (logSoftmax + gather)', fn: step(composed, false) },
          { variant: 'fused', fn: step(fused, false) },
        ],
      });
      if (!big) {
        out.push({
          name: `tokenLogprobs+entropy fwd+bwd ${shape}`,
          setup: setup(true),
          repeats,
          variants: [
            { variant: 'composed (logSoftmax + gather, −Σ p·log p)', fn: step(composed, true) },
            { variant: 'fused (withEntropy)', fn: step(fused, true) },
          ],
        });
      }
    }
  }
  return out;
}
