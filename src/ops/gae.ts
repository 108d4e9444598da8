// gae — Generalized Advantage Estimation for PPO (ALGORITHMS.md §3a), the fused `llmrl::gae` op
// (native/ops/gae). Per row, a reverse scan over the VALID positions only:
//   δ_t = r_t + γ·V_next − V_t,   A_t = δ_t + γλ·A_next,   returns_t = A_t + V_t
// where V_next / A_next belong to the next valid position (masked gaps are skipped) and are 0 past the
// last valid token. Masked positions are 0 in both outputs. No gradient: the outputs are targets and
// never require grad, even for inputs that do (the inputs are treated as constants).
import { native, type Handle } from '../native/addon.js';
import { Tensor, w, handleOf } from '../tensor/tensor.js';

export interface GaeOptions {
  /** Discount γ in [0, 1] (default 1, as in TRL's PPO for LLMs). */
  gamma?: number;
  /** GAE λ in [0, 1] (default 0.95). λ = 0: one-step TD advantages; λ = 1: Monte-Carlo returns − V. */
  lambda?: number;
}

export interface GaeResult {
  /** A `[B, T]`, in the dtype of rewards; 0 at masked positions (whiten with `maskedWhiten` for PPO). */
  advantages: Tensor;
  /** `A + V` `[B, T]` (before any whitening) — the critic's regression targets; 0 at masked positions. */
  returns: Tensor;
}

let handle = -1;

function checkUnit(v: unknown, name: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v > 1) {
    throw new RangeError(`gae: '${name}' must be a number in [0, 1], got ${String(v)}`);
  }
  return v;
}

/**
 * GAE advantages and returns from per-token rewards `[B, T]`, values `[B, T]` and mask `[B, T]`
 * (bool, or any dtype with nonzero = valid). rewards and values share a floating dtype; accumulation is
 * float32 (float64 for float64 inputs).
 * @example
 * // λ = 0, γ = 1: r = [0, 0, 5], V = [1, 2, 3] → A = [1, 1, 2], returns = [2, 3, 5]
 * const { advantages, returns } = ops.gae(rewards, values, mask, { gamma: 1, lambda: 0.95 });
 */
export function gae(rewards: Tensor, values: Tensor, mask: Tensor, opts: GaeOptions = {}): GaeResult {
  const gamma = checkUnit(opts.gamma ?? 1, 'gamma');
  const lambda = checkUnit(opts.lambda ?? 0.95, 'lambda');
  const r = handleOf(rewards, 'gae', 'rewards');
  const v = handleOf(values, 'gae', 'values');
  const m = handleOf(mask, 'gae', 'mask');
  const n = native();
  if (handle < 0) handle = n.opHandle('llmrl::gae', '');
  const [a, ret] = n.call(handle, r, v, m, gamma, lambda) as [Handle, Handle];
  return { advantages: w(a), returns: w(ret) };
}
