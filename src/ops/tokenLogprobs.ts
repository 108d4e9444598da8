// tokenLogprobs — log-probabilities of the target tokens, and optionally the entropy, from logits
// (ALGORITHMS.md §1), the fused `llmrl::token_logprobs` op (native/ops/token_logprobs). Per position,
// with z = logits / τ:
//   logp = z[target] − logsumexp(z)  (≤ 0)        entropy H = logsumexp(z) − Σ softmax(z)·z  (≥ 0, nats)
// One pass over each row with an online logsumexp: no [..., V] intermediate (log-softmax, softmax) is
// ever written, in the forward or the backward (which recomputes softmax from the logits it keeps).
import { native, type Handle } from '../native/addon.js';
import { Tensor, w, handleOf } from '../tensor/tensor.js';

export interface TokenLogprobsOptions {
  /** Sampling temperature τ > 0 the logits are divided by (default 1). */
  temperature?: number;
  /** Also return the entropy of softmax(logits/τ) per position (default false). */
  withEntropy?: boolean;
}

export interface TokenLogprobsResult {
  /** log π(target) per position, targets' shape (e.g. `[B, T]`), logits' dtype. */
  logprobs: Tensor;
  /** Entropy per position (nats), targets' shape, logits' dtype; present when `withEntropy`. */
  entropy?: Tensor;
}

let handle = -1;

/**
 * Token log-probs `[B, T]` from logits `[B, T, V]` (or `[N, V]`, any leading dims) and int64 targets of
 * the leading shape. Differentiable w.r.t. logits (through both outputs); the gradient is
 * `(1[v = target] − p_v)/τ` for logprobs and `−p_v·(log p_v + H)/τ` for the entropy.
 * Accumulates in float32 (float64 for float64 logits); float32/float64/bfloat16/float16 logits.
 * Logits may be a view with unit stride on V (e.g. `logits.slice(1, 0, -1)`): read in place.
 * `−Infinity` logits (masked vocabulary) are fine: p = 0 there and everything stays finite.
 * A target outside `[0, V)` throws.
 * @example
 * const { logprobs, entropy } = ops.tokenLogprobs(logits, completionIds, { temperature: 0.7, withEntropy: true });
 */
export function tokenLogprobs(logits: Tensor, targets: Tensor, opts: TokenLogprobsOptions = {}): TokenLogprobsResult {
  const temperature = opts.temperature ?? 1;
  if (typeof temperature !== 'number' || !Number.isFinite(temperature) || temperature <= 0) {
    throw new RangeError(`tokenLogprobs: 'temperature' must be a positive finite number, got ${String(temperature)}`);
  }
  const withEntropy = opts.withEntropy ?? false;
  if (typeof withEntropy !== 'boolean') {
    throw new TypeError(`tokenLogprobs: 'withEntropy' must be a boolean, got ${String(withEntropy)}`);
  }
  const l = handleOf(logits, 'tokenLogprobs', 'logits');
  const t = handleOf(targets, 'tokenLogprobs', 'targets');
  if (logits.ndim < 1) throw new RangeError(`tokenLogprobs: 'logits' must have shape [..., V], got a scalar`);
  const lead = logits.shape.slice(0, -1);
  const ts = targets.shape;
  if (ts.length !== lead.length || ts.some((d, i) => d !== lead[i])) {
    throw new RangeError(`tokenLogprobs: 'targets' must have shape [${lead.join(', ')}] (the leading dims of 'logits' [${logits.shape.join(', ')}]), got [${ts.join(', ')}]`);
  }
  if (targets.dtype !== 'int64') {
    throw new TypeError(`tokenLogprobs: 'targets' must be int64, got ${targets.dtype} (use targets.long())`);
  }
  const n = native();
  if (handle < 0) handle = n.opHandle('llmrl::token_logprobs', '');
  const [lp, ent] = n.call(handle, l, t, temperature, withEntropy) as [Handle, Handle | null];
  return ent ? { logprobs: w(lp), entropy: w(ent) } : { logprobs: w(lp) };
}
