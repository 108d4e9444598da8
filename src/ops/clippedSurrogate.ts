// clippedSurrogate — the PPO/GRPO/GSPO clipped policy loss (ALGORITHMS.md §4, §5), the fused
// `llmrl::clipped_surrogate` (token level) and `llmrl::sequence_clipped_surrogate` (GSPO) ops chained with
// `llmrl::loss_agg`. With x = clamp(ℓ − ℓ_old, −20, 20), w = exp(x):
//   token           L_t = −min(w_t·A, clamp(w_t, 1−ε_low, 1+ε_high)·A)   (+ dual-clip: A<0 → min(L, −c·A);
//                   + delta: w ← min(w, δ) in the unclipped term)
//   sequence        log s_b = Σ_t m·x_t / max(1, n_b) (not detached), L_b = the same at ratio s_b with A_b;
//                   every valid token of row b carries L_b in `perToken`
//   sequence_token  log w_t = sg[log s_b] + ℓ_t − sg[ℓ_t]: value s_b, per-token gradient and advantages
// then `loss` = lossAgg(perToken, mask, aggregation). Metrics (§4c): clipFrac{,Low,High}, approxKl.
import { native } from '../native/addon.js';
import { Tensor, w, handleOf, describe } from '../tensor/tensor.js';
import { checkAggOptions, checkSameShape, lossAgg, type LossAggregation } from './lossAgg.js';

export type SurrogateLevel = 'token' | 'sequence' | 'sequence_token';
const LEVELS: readonly SurrogateLevel[] = ['token', 'sequence', 'sequence_token'];

export interface ClippedSurrogateOptions {
  /** ε_low: lower clip 1 − ε_low (default 0.2). */
  epsLow?: number;
  /** ε_high: upper clip 1 + ε_high (default ε_low; DAPO's "clip-higher" uses e.g. 0.28). */
  epsHigh?: number;
  /** Dual-clip constant c > 1 (Ye et al. 2020): for A < 0 the loss is capped at −c·A. Off when absent. */
  dualClip?: number | null;
  /** Cap δ on the ratio in the unclipped term (INTELLECT-2 / TRL `delta`; use δ > 1 + ε_high). Off when absent. */
  delta?: number | null;
  /** 'token' (PPO/GRPO, default), 'sequence' (GSPO) or 'sequence_token' (GSPO-token). */
  level?: SurrogateLevel;
  /**
   * How `perToken` becomes `loss` (see ops.lossAgg). Default 'token_mean' (DAPO), except at level
   * 'sequence', where it is 'seq_mean_token_mean' — the GSPO paper's mean over sequences of L_b.
   * GRPO's paper objective is 'seq_mean_token_mean': trainers pass their configured aggregation.
   */
  aggregation?: LossAggregation;
  /** seq_mean_token_sum_norm's L_max (default T). */
  maxLength?: number;
  /** token_mean's denominator instead of Σ mask: the global valid-token count when micro-batching. */
  normalizer?: number;
  /** seq_* modes' denominator instead of this batch's valid sequences: the global count when micro-batching. */
  numSequences?: number;
}

/**
 * §4c metrics as 0-d tensors without gradient (float32; float64 for float64 inputs). Tensors, not numbers,
 * so computing the loss never forces a device sync; call `.item()` when logging. Masked token means at
 * levels 'token' and 'sequence_token', means over sequences with a valid token at level 'sequence'.
 */
export interface SurrogateMetrics {
  /** Fraction clipped either way (clipFracLow + clipFracHigh). */
  clipFrac: Tensor;
  /** Fraction with w < 1 − ε_low and A < 0. */
  clipFracLow: Tensor;
  /** Fraction with w > 1 + ε_high and A > 0. */
  clipFracHigh: Tensor;
  /** ½·mean((ℓ − ℓ_old)²) (at level 'sequence': mean over sequences of each sequence's token mean). */
  approxKl: Tensor;
}

export interface ClippedSurrogateResult {
  /** Scalar loss (float32; float64 for float64 inputs), differentiable with respect to logprobs. */
  loss: Tensor;
  /** Per-token loss `[B, T]` in the logprobs' dtype, 0 at masked positions (add per-token terms such as β·KL here, then ops.lossAgg). */
  perToken: Tensor;
  metrics: SurrogateMetrics;
}

const handles: Record<'token' | 'sequence', number> = { token: -1, sequence: -1 };

function checkNumber(name: string, v: unknown, ok: (x: number) => boolean, what: string): void {
  if (typeof v !== 'number' || !Number.isFinite(v) || !ok(v)) {
    throw new RangeError(`clippedSurrogate: '${name}' must be ${what}, got ${typeof v === 'number' ? v : describe(v)}`);
  }
}

/**
 * Clipped surrogate policy loss. `logprobs` `[B, T]` (with grad), `oldLogprobs` `[B, T]` (same dtype),
 * `advantages` `[B]` (broadcast over T) or `[B, T]` (any floating dtype), `mask` `[B, T]` (bool or nonzero).
 * Gradient flows to `logprobs` only; masked positions are never read (NaN there is harmless).
 * @example // GRPO
 * const { loss, metrics } = ops.clippedSurrogate(logprobs, oldLogprobs, advantages, mask,
 *   { epsLow: 0.2, epsHigh: 0.28, aggregation: 'seq_mean_token_mean' });
 * loss.backward();
 * @example // GSPO (tiny ε, mean over sequences)
 * ops.clippedSurrogate(logprobs, oldLogprobs, advantages, mask, { level: 'sequence', epsLow: 3e-4, epsHigh: 4e-4 });
 */
export function clippedSurrogate(logprobs: Tensor, oldLogprobs: Tensor, advantages: Tensor, mask: Tensor,
  opts: ClippedSurrogateOptions = {}): ClippedSurrogateResult {
  const hl = handleOf(logprobs, 'clippedSurrogate', 'logprobs');
  const ho = handleOf(oldLogprobs, 'clippedSurrogate', 'oldLogprobs');
  const ha = handleOf(advantages, 'clippedSurrogate', 'advantages');
  const hm = handleOf(mask, 'clippedSurrogate', 'mask');
  const level = opts.level ?? 'token';
  if (!LEVELS.includes(level)) {
    throw new TypeError(`clippedSurrogate: 'level' must be one of ${LEVELS.map((l) => `'${l}'`).join(', ')}, got ${JSON.stringify(level)}`);
  }
  const epsLow = opts.epsLow ?? 0.2;
  checkNumber('epsLow', epsLow, (x) => x >= 0, 'a finite number >= 0');
  const epsHigh = opts.epsHigh ?? epsLow;
  checkNumber('epsHigh', epsHigh, (x) => x >= 0, 'a finite number >= 0');
  const dualClip = opts.dualClip ?? null;
  if (dualClip !== null) checkNumber('dualClip', dualClip, (x) => x > 1, 'a finite number > 1');
  const delta = opts.delta ?? null;
  if (delta !== null) checkNumber('delta', delta, (x) => x > 0, 'a finite number > 0');
  checkAggOptions('clippedSurrogate', opts);

  const shape = logprobs.shape;
  if (shape.length !== 2) throw new RangeError(`clippedSurrogate: 'logprobs' must have shape [B, T], got [${shape.join(', ')}]`);
  checkSameShape('clippedSurrogate', logprobs, 'logprobs', oldLogprobs, 'oldLogprobs');
  checkSameShape('clippedSurrogate', logprobs, 'logprobs', mask, 'mask');
  const as = advantages.shape;
  const perTokenAdv = as.length === 2 && as[0] === shape[0] && as[1] === shape[1];
  if (!perTokenAdv && !(as.length === 1 && as[0] === shape[0])) {
    throw new RangeError(`clippedSurrogate: 'advantages' must have shape [B] = [${shape[0]}] or [B, T] = [${shape.join(', ')}], got [${as.join(', ')}]`);
  }
  if (level === 'sequence' && perTokenAdv) {
    throw new RangeError(`clippedSurrogate: 'advantages' must have shape [B] = [${shape[0]}] at level 'sequence' (one advantage per sequence; use level 'sequence_token' for per-token advantages)`);
  }

  const n = native();
  let out: unknown[];
  if (level === 'token') {
    if (handles.token < 0) handles.token = n.opHandle('llmrl::clipped_surrogate', '');
    out = n.call(handles.token, hl, ho, ha, hm, epsLow, epsHigh, dualClip, delta);
  } else {
    if (handles.sequence < 0) handles.sequence = n.opHandle('llmrl::sequence_clipped_surrogate', '');
    out = n.call(handles.sequence, hl, ho, ha, hm, epsLow, epsHigh, dualClip, delta, level);
  }
  const [perToken, clipFrac, clipFracLow, clipFracHigh, approxKl] = out.map((h) => w(h as Parameters<typeof w>[0]));
  const aggregation = opts.aggregation ?? (level === 'sequence' ? 'seq_mean_token_mean' : 'token_mean');
  const loss = lossAgg(perToken, mask, { aggregation, normalizer: opts.normalizer, numSequences: opts.numSequences, maxLength: opts.maxLength });
  return { loss, perToken, metrics: { clipFrac, clipFracLow, clipFracHigh, approxKl } };
}
