// linearTokenLogprobs — token log-probs (and entropy) straight from hidden states and the lm_head,
// without materialising the [N, V] logits (ALGORITHMS.md §1b), the fused `llmrl::linear_token_logprobs`
// op (native/ops/linear_token_logprobs). Same numbers as tokenLogprobs on logits = hidden·Wᵀ (+ bias):
//   z = (hidden·Wᵀ + bias) / τ,  logp = z[target] − logsumexp(z),  H = logsumexp(z) − Σ softmax(z)·z
// The tokens are processed in chunks of `chunkSize` rows through one reused [chunk, V] buffer; backward
// recomputes each chunk's logits, so peak extra memory is O(chunk·V) instead of O(N·V).
import { native, type Handle } from '../native/addon.js';
import { Tensor, w, handleOf } from '../tensor/tensor.js';

export interface LinearTokenLogprobsOptions {
  /** lm_head bias `[V]` (most LLM heads have none). Same dtype as hidden. */
  bias?: Tensor | null;
  /** Sampling temperature τ > 0 (default 1): log-probs of softmax(logits / τ). */
  temperature?: number;
  /**
   * Rows (tokens) per chunk. 0 or undefined = auto: as many rows as fit a 64 MiB `[chunk, V]` logits
   * buffer but at least 256 (thinner chunks slow the matmuls down), e.g. 256 rows (148 MiB) for
   * V = 151936 in float32, 524 rows for V = 32000. Smaller saves memory; results do not depend on it
   * beyond float rounding.
   */
  chunkSize?: number;
  /** Also return the per-token entropy `H` (nats), differentiable like the log-probs. Default false. */
  withEntropy?: boolean;
}

export interface LinearTokenLogprobsResult {
  /** log π(target) `[...]` (targets' shape), ≤ 0, in hidden's dtype. */
  logprobs: Tensor;
  /** Entropy of softmax(logits / τ) `[...]`, ≥ 0, in hidden's dtype (only with `withEntropy`). */
  entropy?: Tensor;
}

let handle = -1;

/**
 * Log-probs of `targets` under softmax((hidden·Wᵀ + bias) / τ), fused with the lm_head matmul.
 * hidden `[..., H]` (e.g. `[N, H]` or `[B, T, H]`), weight `[V, H]`, targets int64 `[...]` with hidden's
 * leading dims, each in `[0, V)`. Gradients flow to hidden, weight and bias (through the log-probs and,
 * when requested, the entropy). float32/float64/bfloat16/float16; for half types the matmuls run in that
 * dtype and the softmax math in float32.
 * @example
 * const { logprobs, entropy } = ops.linearTokenLogprobs(hidden, lmHead.weight, targets, { temperature: 0.7, withEntropy: true });
 */
export function linearTokenLogprobs(hidden: Tensor, weight: Tensor, targets: Tensor,
  opts: LinearTokenLogprobsOptions = {}): LinearTokenLogprobsResult {
  const temperature = opts.temperature ?? 1;
  if (typeof temperature !== 'number' || !Number.isFinite(temperature) || temperature <= 0) {
    throw new RangeError(`linearTokenLogprobs: 'temperature' must be a finite number > 0, got ${String(temperature)}`);
  }
  const chunkSize = opts.chunkSize ?? 0;
  if (typeof chunkSize !== 'number' || !Number.isInteger(chunkSize) || chunkSize < 0) {
    throw new RangeError(`linearTokenLogprobs: 'chunkSize' must be an integer ≥ 0 (0 = auto), got ${String(chunkSize)}`);
  }
  const withEntropy = opts.withEntropy ?? false;
  if (typeof withEntropy !== 'boolean') {
    throw new TypeError(`linearTokenLogprobs: 'withEntropy' must be a boolean, got ${String(withEntropy)}`);
  }
  const h = handleOf(hidden, 'linearTokenLogprobs', 'hidden');
  const wt = handleOf(weight, 'linearTokenLogprobs', 'weight');
  const t = handleOf(targets, 'linearTokenLogprobs', 'targets');
  const b = opts.bias ? handleOf(opts.bias, 'linearTokenLogprobs', 'bias') : null;
  const n = native();
  if (handle < 0) handle = n.opHandle('llmrl::linear_token_logprobs', '');
  const [lp, ent] = n.call(handle, h, wt, t, b, temperature, chunkSize, withEntropy) as [Handle, Handle | null];
  const logprobs = w(lp);
  return withEntropy && ent ? { logprobs, entropy: w(ent) } : { logprobs };
}
