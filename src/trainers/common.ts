// Helpers the trainers share: frozen copies of a model (reference policies), repeating prompts per
// group, splitting a batch into micro-batches, and masked means for metrics.
import { createCausalLM, type CausalLM } from '../models/index.js';
import { noGrad, tensor, type Tensor } from '../tensor/index.js';

/** A frozen copy (eval mode, no grads) of a causal LM: the reference policy. */
export function frozenCopy(model: CausalLM): CausalLM {
  const copy = createCausalLM(model.hfConfig(), { dtype: model.dtype, device: model.device });
  noGrad(() => copy.loadStateDict(model.stateDict()));
  for (const p of copy.parameters()) p.requiresGrad = false;
  copy.eval();
  return copy;
}

/** Row indices repeating each of `n` rows `g` times: [0,0,…,1,1,…] as int64 `[n·g]`. */
export function repeatIndex(n: number, g: number): Tensor {
  return tensor(Array.from({ length: n * g }, (_, i) => Math.floor(i / g)), { dtype: 'int64' });
}

/** [start, end) ranges of micro-batches of at most `size` rows over `total`. */
export function microBatches(total: number, size: number): [number, number][] {
  const out: [number, number][] = [];
  for (let s = 0; s < total; s += size) out.push([s, Math.min(total, s + size)]);
  return out;
}

/** Masked mean of `x` over `mask` (0 when nothing is valid), as a number (metrics only). */
export function maskedMean(x: Tensor, mask: Tensor): number {
  return noGrad(() => {
    const m = mask.to(x.dtype === 'float64' ? 'float64' : 'float32');
    const n = m.sum().item();
    return n > 0 ? x.detach().to(m.dtype).nanToNum().mul(m).sum().item() / n : 0;
  });
}

