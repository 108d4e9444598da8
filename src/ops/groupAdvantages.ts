// groupAdvantages — group-relative advantages for GRPO / GSPO / RLOO / Dr. GRPO (ALGORITHMS.md §3d), the
// fused `llmrl::group_advantages` op (native/ops/group_advantages). Rewards `[B]` form consecutive groups
// of G = groupSize completions of one prompt. Per group, over its non-NaN rewards: μ = mean, σ = Bessel std.
//   'group' (default): (R − μ)/(σ + 1e-4)   (ε added to σ: TRL's exact behaviour)
//   'batch':           (R − μ)/(σ_batch + 1e-4), σ_batch the Bessel std of all valid rewards
//   'none' (Dr. GRPO): R − μ
//   'rloo':            R_i − mean of the group's other valid rewards
// A NaN reward (a reward function returned nothing) is left out of μ/σ and gets advantage 0; a group
// without valid rewards gives 0s. No gradient: outputs never require grad.
import { native, type Handle } from '../native/addon.js';
import { Tensor, w, handleOf } from '../tensor/tensor.js';

export type AdvantageScale = 'group' | 'batch' | 'none' | 'rloo';
const SCALES: readonly AdvantageScale[] = ['group', 'batch', 'none', 'rloo'];

export interface GroupAdvantagesOptions {
  /** Completions per prompt G (B must be a multiple; ≥ 2 for 'group' and 'rloo'). */
  groupSize: number;
  /** How advantages are scaled (default 'group'). */
  scale?: AdvantageScale;
}

export interface GroupAdvantagesResult {
  /** Advantages `[B]` in the dtype of rewards (0 for NaN rewards). */
  advantages: Tensor;
  /**
   * Per-group reward std σ `[B / G]` (Bessel, over valid rewards; 0 with fewer than two) — whatever the
   * scale. For the trainers' `groups/zeroStdFrac` metric (TRL's frac_reward_zero_std uses isclose(σ, 0)):
   * `groupStd.le(1e-8).float().mean().item()`.
   */
  groupStd: Tensor;
}

let handle = -1;

/**
 * Group-relative advantages of rewards `[B]` (B = prompts × groupSize), accumulated in float64.
 * @example
 * // TRL's GRPO: [1, 0, 0, 1, 2, 2, 2, 2], G = 4 → [0.866, −0.866, −0.866, 0.866, 0, 0, 0, 0]; groupStd = [0.577, 0]
 * const { advantages, groupStd } = ops.groupAdvantages(rewards, { groupSize: 4 });
 */
export function groupAdvantages(rewards: Tensor, opts: GroupAdvantagesOptions): GroupAdvantagesResult {
  const r = handleOf(rewards, 'groupAdvantages', 'rewards');
  const scale = opts?.scale ?? 'group';
  if (!SCALES.includes(scale)) {
    throw new TypeError(`groupAdvantages: 'scale' must be one of ${SCALES.map((s) => `'${s}'`).join(', ')}, got ${JSON.stringify(scale)}`);
  }
  const G = opts?.groupSize;
  if (typeof G !== 'number' || !Number.isInteger(G) || G < 1) {
    throw new RangeError(`groupAdvantages: 'groupSize' must be a positive integer, got ${String(G)}`);
  }
  if (G < 2 && (scale === 'group' || scale === 'rloo')) {
    throw new RangeError(`groupAdvantages: 'groupSize' must be at least 2 with scale '${scale}' (it needs two completions per prompt), got ${G}`);
  }
  const shape = rewards.shape;
  if (shape.length !== 1) {
    throw new RangeError(`groupAdvantages: 'rewards' must have shape [B] (one reward per completion), got [${shape.join(', ')}]`);
  }
  if (shape[0] % G !== 0) {
    throw new RangeError(`groupAdvantages: the length of 'rewards' (B = ${shape[0]}) must be divisible by 'groupSize' (G = ${G}): B = number of prompts × G`);
  }
  const n = native();
  if (handle < 0) handle = n.opHandle('llmrl::group_advantages', '');
  const [a, s] = n.call(handle, r, G, scale) as [Handle, Handle];
  return { advantages: w(a), groupStd: w(s) };
}
