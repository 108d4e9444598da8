// bradleyTerryLoss — the reward-model pairwise loss (ALGORITHMS.md §8), the fused
// `llmrl::bradley_terry_loss` op (native/ops/bradley_terry_loss): one pass computes the loss, accuracy and
// mean margin; the backward writes both scores' gradients in one pass. TRL's RewardTrainer numbers.
import { native, type Handle } from '../native/addon.js';
import { full } from '../tensor/create.js';
import { Tensor, w, handleOf, describe } from '../tensor/tensor.js';

export interface BradleyTerryLossOptions {
  /**
   * Required score gap m: `[B]` tensor (any floating dtype; a constant, no gradient) or one number for
   * every pair (Llama 2's margin). Default none (0).
   */
  margin?: Tensor | number | null;
  /** Weight of the centering term mean((r_c + r_r)²) (TRL's center_rewards_coefficient), ≥ 0; default 0. */
  centerCoef?: number;
}

export interface BradleyTerryLossResult {
  /** 0-dim mean loss, float32 (float64 for float64 scores), differentiable w.r.t. both scores. */
  loss: Tensor;
  /** 0-dim mean 1[r_c > r_r] (the margin plays no part), no gradient. */
  accuracy: Tensor;
  /** 0-dim mean (r_c − r_r), no gradient. */
  meanMargin: Tensor;
}

let handle = -1;

/**
 * Bradley–Terry loss on reward scores `[B]` of the chosen and rejected responses:
 * L = −mean logσ(r_c − r_r − m) + centerCoef · mean((r_c + r_r)²).
 * Scores share one floating dtype; per-pair math in float32 (float64 for float64), sums in float64; the
 * outputs are float32 even for bfloat16/float16 scores (float64 for float64). Equal scores → ln 2.
 * @example
 * const { loss, accuracy } = ops.bradleyTerryLoss(chosenScores, rejectedScores);
 * loss.backward();
 * @example ops.bradleyTerryLoss(rc, rr, { margin: marginsTensor, centerCoef: 0.01 });
 */
export function bradleyTerryLoss(chosenScores: Tensor, rejectedScores: Tensor,
  opts: BradleyTerryLossOptions = {}): BradleyTerryLossResult {
  const c = handleOf(chosenScores, 'bradleyTerryLoss', 'chosenScores');
  const r = handleOf(rejectedScores, 'bradleyTerryLoss', 'rejectedScores');
  const centerCoef = opts.centerCoef ?? 0;
  if (typeof centerCoef !== 'number' || !Number.isFinite(centerCoef) || centerCoef < 0) {
    throw new RangeError(`bradleyTerryLoss: 'centerCoef' must be a finite number ≥ 0, got ${String(centerCoef)}`);
  }
  let margin: Handle | null = null;
  let owned: Tensor | null = null;
  const m = opts.margin;
  if (typeof m === 'number') {
    if (!Number.isFinite(m)) throw new RangeError(`bradleyTerryLoss: 'margin' must be finite, got ${m}`);
    if (m !== 0) {
      // One value for every pair, in the accumulation precision (float64 scores → float64, else float32).
      const shape = chosenScores.shape;
      owned = full(shape, m, { dtype: chosenScores.dtype === 'float64' ? 'float64' : 'float32', device: chosenScores.device });
      margin = owned._h;
    }
  } else if (m !== undefined && m !== null) {
    if (!(m instanceof Tensor)) throw new TypeError(`bradleyTerryLoss: 'margin' must be a Tensor or a number, got ${describe(m)}`);
    margin = m._h;
  }
  const n = native();
  if (handle < 0) handle = n.opHandle('llmrl::bradley_terry_loss', '');
  try {
    const [loss, accuracy, meanMargin] = n.call(handle, c, r, margin, centerCoef) as Handle[];
    return { loss: w(loss), accuracy: w(accuracy), meanMargin: w(meanMargin) };
  } finally {
    owned?.dispose();
  }
}
