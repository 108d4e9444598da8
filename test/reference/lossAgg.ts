// Unfused float64 oracle for ops.lossAgg (ALGORITHMS.md §5), composed from plain tensor ops (masked
// entries selected away, fully masked rows excluded from sequence counts), so autograd gives the
// reference gradient. Options as in ops.lossAgg. Test-only: never imported by src/.
import { where, zerosLike, type Tensor } from '../../src/index.js';

export type Aggregation = 'token_mean' | 'seq_mean_token_mean' | 'seq_mean_token_sum_norm' | 'seq_mean_token_sum';

export function lossAggRef(L: Tensor, mask: Tensor, aggregation: Aggregation,
  opts: { normalizer?: number; numSequences?: number; maxLength?: number } = {}): Tensor {
  const m = mask.bool();
  const Lm = where(m, L, zerosLike(L));
  const n = m.sum(1).to(L.dtype);
  const valid = n.gt(0);
  const S = opts.numSequences ?? valid.sum().item();
  if (aggregation === 'token_mean') return Lm.sum().div(opts.normalizer ?? n.sum().item());
  if (aggregation === 'seq_mean_token_mean') {
    const perSeq = Lm.sum(1).div(n.clamp(1));
    return where(valid, perSeq, zerosLike(perSeq)).sum().div(S);
  }
  if (aggregation === 'seq_mean_token_sum_norm') return Lm.sum().div(S * (opts.maxLength ?? L.shape[1]));
  return Lm.sum(1).sum().div(S);
}
