// preferenceLoss — the DPO family of pairwise preference losses (ALGORITHMS.md §7), the fused
// `llmrl::preference_loss` op (native/ops/preference_loss): one pass over the pairs computes the loss and
// the metrics; the backward writes both log-probs' gradients in one pass. Numbers match TRL's DPOTrainer.
import { native, type Handle } from '../native/addon.js';
import { Tensor, w, handleOf, describe } from '../tensor/tensor.js';

export type PreferenceLossType = 'sigmoid' | 'ipo' | 'hinge' | 'robust';
const TYPES: readonly PreferenceLossType[] = ['sigmoid', 'ipo', 'hinge', 'robust'];

export interface PreferenceLossOptions {
  /**
   * 'sigmoid' (DPO, default; cDPO with labelSmoothing), 'ipo' (needs lengths), 'hinge' (SLiC),
   * 'robust' (robust DPO, with labelSmoothing).
   */
  type?: PreferenceLossType;
  /** β > 0, the strength of the implicit KL constraint (default 0.1). */
  beta?: number;
  /** ε, the assumed label-flip rate: [0, 0.5] for 'sigmoid', [0, 0.5) for 'robust', 0 otherwise (default 0). */
  labelSmoothing?: number;
  /** Completion token counts `[B]` (integer or float, > 0) of the chosen responses; required for 'ipo'. */
  chosenLengths?: Tensor | null;
  /** Completion token counts `[B]` of the rejected responses; required for 'ipo'. */
  rejectedLengths?: Tensor | null;
  /** Use logπ_ref = 0 (the reference log-probs are ignored and may be null). Default false. */
  referenceFree?: boolean;
}

export interface PreferenceLossResult {
  /** Mean loss over the pairs, 0-dim: float32 (float64 for float64 inputs), differentiable. */
  loss: Tensor;
  /** 0-dim, no gradient, in the loss dtype. */
  metrics: {
    /** `rewards/chosen` = mean βρ_c. */
    rewardsChosen: Tensor;
    /** `rewards/rejected` = mean βρ_r. */
    rewardsRejected: Tensor;
    /** `rewards/accuracies` = mean 1[ρ_c > ρ_r]. */
    accuracy: Tensor;
    /** `rewards/margins` = mean β(ρ_c − ρ_r). */
    margin: Tensor;
  };
}

let handle = -1;

function optTensor(t: unknown, name: string): Handle | null {
  if (t === undefined || t === null) return null;
  return handleOf(t, 'preferenceLoss', name);
}

/**
 * DPO-family loss from sequence log-probs `[B]` (sums of token log-probs over each completion):
 * ρ_c = logπ(y_c) − logπ_ref(y_c), ρ_r likewise (referenceFree: logπ_ref = 0), z = β(ρ_c − ρ_r), ε =
 * labelSmoothing; per pair
 * - `sigmoid`: −(1−ε)·logσ(z) − ε·logσ(−z)  (ε = 0: DPO; ε > 0: cDPO)
 * - `robust`:  [−(1−ε)·logσ(z) + ε·logσ(−z)] / (1 − 2ε)
 * - `hinge`:   max(0, 1 − z)
 * - `ipo`:     (ρ_c/|y_c| − ρ_r/|y_r| − 1/(2β))², on per-token averaged log-ratios; for 'ipo' the metrics
 *   use the averaged ratios too (as in TRL, which averages the log-probs before everything else).
 *
 * loss = mean over pairs; at policy == reference the 'sigmoid' loss is ln 2 = 0.693147. Gradients flow to
 * `chosenLogps` and `rejectedLogps` only (the reference log-probs and lengths are constants). Inputs share
 * one floating dtype; per-pair math in float32 (float64 for float64), batch sums in float64; the loss and
 * metrics are float32 even for bfloat16/float16 inputs (float64 for float64).
 *
 * RPO's `sftWeight` (an NLL term on the chosen completion) is not part of this op: the trainer adds it
 * from the token log-probs.
 * @example
 * const { loss, metrics } = ops.preferenceLoss(chosenLogps, rejectedLogps, refChosenLogps, refRejectedLogps,
 *   { type: 'sigmoid', beta: 0.1 });
 * loss.backward();
 * @example
 * ops.preferenceLoss(c, r, rc, rr, { type: 'ipo', chosenLengths, rejectedLengths }); // lengths required
 */
export function preferenceLoss(chosenLogps: Tensor, rejectedLogps: Tensor, refChosenLogps: Tensor | null,
  refRejectedLogps: Tensor | null, opts: PreferenceLossOptions = {}): PreferenceLossResult {
  const type = opts.type ?? 'sigmoid';
  if (!TYPES.includes(type)) {
    throw new TypeError(`preferenceLoss: 'type' must be one of ${TYPES.map((t) => `'${t}'`).join(', ')}, got ${JSON.stringify(type)}`);
  }
  const beta = opts.beta ?? 0.1;
  if (typeof beta !== 'number' || !Number.isFinite(beta) || beta <= 0) {
    throw new RangeError(`preferenceLoss: 'beta' must be a finite number > 0, got ${String(beta)}`);
  }
  const eps = opts.labelSmoothing ?? 0;
  if (typeof eps !== 'number' || !Number.isFinite(eps)) {
    throw new RangeError(`preferenceLoss: 'labelSmoothing' must be a finite number, got ${String(eps)}`);
  }
  if (type === 'sigmoid' && !(eps >= 0 && eps <= 0.5)) {
    throw new RangeError(`preferenceLoss: 'labelSmoothing' must be in [0, 0.5] for 'sigmoid', got ${eps}`);
  }
  if (type === 'robust' && !(eps >= 0 && eps < 0.5)) {
    throw new RangeError(`preferenceLoss: 'labelSmoothing' must be in [0, 0.5) for 'robust' (it divides by 1 − 2ε), got ${eps}`);
  }
  if ((type === 'ipo' || type === 'hinge') && eps !== 0) {
    throw new RangeError(`preferenceLoss: 'labelSmoothing' applies only to 'sigmoid' and 'robust'; it must be 0 for '${type}', got ${eps}`);
  }
  const referenceFree = opts.referenceFree ?? false;
  if (typeof referenceFree !== 'boolean') {
    throw new TypeError(`preferenceLoss: 'referenceFree' must be a boolean, got ${describe(referenceFree)}`);
  }
  const c = handleOf(chosenLogps, 'preferenceLoss', 'chosenLogps');
  const r = handleOf(rejectedLogps, 'preferenceLoss', 'rejectedLogps');
  const rc = optTensor(refChosenLogps, 'refChosenLogps');
  const rr = optTensor(refRejectedLogps, 'refRejectedLogps');
  if (!referenceFree && (rc === null || rr === null)) {
    throw new TypeError(`preferenceLoss: 'refChosenLogps' and 'refRejectedLogps' are required unless referenceFree is true, got ${describe(refChosenLogps)} and ${describe(refRejectedLogps)}`);
  }
  const lc = optTensor(opts.chosenLengths, 'chosenLengths');
  const lr = optTensor(opts.rejectedLengths, 'rejectedLengths');
  if (type === 'ipo' && (lc === null || lr === null)) {
    throw new TypeError(`preferenceLoss: 'ipo' averages the log-ratios per token, so 'chosenLengths' and 'rejectedLengths' (completion token counts [B]) are required`);
  }
  const n = native();
  if (handle < 0) handle = n.opHandle('llmrl::preference_loss', '');
  const [loss, rewardsChosen, rewardsRejected, accuracy, margin] =
    n.call(handle, c, r, referenceFree ? null : rc, referenceFree ? null : rr, type, beta, eps, lc, lr, referenceFree) as Handle[];
  return {
    loss: w(loss),
    metrics: { rewardsChosen: w(rewardsChosen), rewardsRejected: w(rewardsRejected), accuracy: w(accuracy), margin: w(margin) },
  };
}
