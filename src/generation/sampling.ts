// Logit processing for sampling, in transformers' order and with its tie rules:
//   temperature  scores / T
//   top-k        keep scores ≥ the k-th largest (ties at the threshold kept), others −∞   (TopKLogitsWarper)
//   top-p        sort ascending, drop the tokens whose cumulative probability is ≤ 1 − p, always keep
//                the most likely token                                                   (TopPLogitsWarper)
// then softmax and one multinomial draw per row. All on `[B, V]` float32 scores.
import { Tensor, multinomial } from '../tensor/index.js';

/** Keeps the `k` largest scores per row (and ties with the k-th); the rest become −∞. */
export function topKFilter(scores: Tensor, k: number): Tensor {
  const v = scores.shape[1];
  if (k >= v) return scores;
  const kth = scores.topk(k, -1).values.narrow(1, k - 1, 1); //   [B, 1]
  return scores.maskedFill(scores.lt(kth), -Infinity);
}

/** Nucleus filtering: keeps the smallest set of top tokens whose probability mass exceeds `p`. */
export function topPFilter(scores: Tensor, p: number): Tensor {
  if (p >= 1) return scores;
  const v = scores.shape[1];
  const { values, indices } = scores.sort(-1, { descending: false }); //       ascending [B, V]
  const remove = values.softmax(-1).cumsum(-1).le(1 - p); //                    [B, V] bool
  remove.narrow(1, v - 1, 1).fill_(false); //                                   keep the most likely token
  return scores.maskedFill(remove.scatter(1, indices, remove), -Infinity);
}

/** One token id per row `[B]` (int64) sampled from the processed scores `[B, V]`. */
export function sampleTokens(scores: Tensor, opts: { topK?: number | null; topP?: number | null }): Tensor {
  let s = scores;
  if (opts.topK !== undefined && opts.topK !== null && opts.topK > 0) s = topKFilter(s, opts.topK);
  if (opts.topP !== undefined && opts.topP !== null) s = topPFilter(s, opts.topP);
  return multinomial(s.softmax(-1), 1).squeeze(1);
}
