// Direct Preference Optimisation and its relatives (ALGORITHMS.md §7, §9 "DPO"), as TRL's DPOTrainer:
// sequence log-probs logπ(y) = Σ_t m·ℓ_t of chosen and rejected completions (one forward over both,
// fused linear log-prob op, masked sum over the completion tokens), the same for the reference model
// (computed once up front and cached — precomputeRefLogps — or on the fly), then ops.preferenceLoss:
// 'sigmoid' (DPO/cDPO), 'ipo', 'hinge', 'robust', optional reference-free, plus RPO's sftWeight × mean
// token NLL of the chosen completions (ops.lossAgg). Micro-batches scale the pair mean by their share of
// the step's pairs and the NLL by the step's chosen-token count, so any split gives the same gradient.
import { createHash } from 'node:crypto';
import { collatePreference, type Dataset, type Row } from '../data/index.js';
import type { CausalLM } from '../models/index.js';
import { lossAgg, preferenceLoss } from '../ops/index.js';
import { cat, noGrad, Tensor, tensor, tidy, type DType } from '../tensor/index.js';
import type { Tokenizer } from '../tokenizer/index.js';
import { frozenCopy } from './common.js';
import { describeSchema, inRange, oneOf, positive, positiveInt, resolveConfig, type Schema } from './config.js';
import type { TrainResult } from './base.js';
import type { Metrics } from './metrics.js';
import { nextTokenLogprobs, offlineSchema, OfflineTrainer, type OfflineConfig, type Prepared } from './offline.js';

export type DPOLossType = 'sigmoid' | 'ipo' | 'hinge' | 'robust';

export interface DPOConfig extends OfflineConfig {
  /** β: strength of the implicit KL to the reference. [beta] */
  beta: number;
  /** ALGORITHMS.md §7. [loss_type] */
  lossType: DPOLossType;
  /** ε of cDPO ('sigmoid', ≤ 0.5) and robust DPO ('robust', < 0.5). [label_smoothing] */
  labelSmoothing: number;
  /** RPO: adds sftWeight × mean token NLL of the chosen completions (0: off). [rpo_alpha (None = 0)] */
  sftWeight: number;
  /** Use logπ_ref = 0 (no reference model). [reference_free] */
  referenceFree: boolean;
  /** Compute the reference log-probs of the whole dataset once before training and cache them (true), or
   *  per batch (false). [precompute_ref_log_probs — TRL's default is false] */
  precomputeRefLogps: boolean;
  /** Rows per reference forward when precomputing (null: batchSize). [precompute_ref_batch_size] */
  refBatchSize: number | null;
  /** Prompt tokens kept (the end). [max_prompt_length] */
  maxPromptLength: number | null;
  /** Completion tokens kept (the start, EOS included). [max_completion_length] */
  maxCompletionLength: number | null;
  /** Prompt+completion tokens kept, per truncationMode. [max_length] */
  maxLength: number | null;
  /** Which end of an over-long sequence maxLength keeps. [truncation_mode] */
  truncationMode: 'keep_end' | 'keep_start';
}

const positiveOrNull = (v: number | null) => (v === null || (Number.isInteger(v) && v > 0) ? null : 'must be a positive integer or null');

/** DPOConfig fields: defaults follow TRL's DPOConfig (learning_rate 1e-6, beta 0.1, sigmoid, max_length 1024, max_prompt_length 512). */
export const DPO_SCHEMA: Schema<DPOConfig> = {
  ...offlineSchema({ learningRate: 1e-6 }),
  beta: { default: 0.1, check: positive, doc: 'β, the KL strength (must be > 0)', trl: 'beta' },
  lossType: { default: 'sigmoid', check: oneOf('sigmoid', 'ipo', 'hinge', 'robust'), doc: 'preference loss (§7)', trl: 'loss_type' },
  labelSmoothing: {
    default: 0,
    check: (v, all) => {
      const bad = inRange(0, 0.5)(v);
      if (bad) return bad;
      if (all.lossType === 'robust' && v >= 0.5) return "must be < 0.5 for lossType 'robust'";
      if (v > 0 && all.lossType !== 'sigmoid' && all.lossType !== 'robust') return "is used by lossType 'sigmoid' and 'robust' only; set it to 0";
      return null;
    },
    doc: 'ε of cDPO / robust DPO', trl: 'label_smoothing',
  },
  sftWeight: { default: 0, check: (v) => (typeof v === 'number' && v >= 0 && Number.isFinite(v) ? null : 'must be ≥ 0 (0: off)'), doc: 'RPO weight of the chosen NLL', trl: 'rpo_alpha' },
  referenceFree: { default: false, doc: 'logπ_ref = 0 (no reference model)', trl: 'reference_free' },
  precomputeRefLogps: { default: true, doc: 'reference log-probs computed once up front and cached (false: per batch)', trl: 'precompute_ref_log_probs (TRL default false)' },
  refBatchSize: { default: null, check: positiveOrNull, doc: 'rows per reference forward when precomputing (null: batchSize)', trl: 'precompute_ref_batch_size' },
  maxPromptLength: { default: 512, check: positiveOrNull, doc: 'prompt tokens kept (the end; null: all)', trl: 'max_prompt_length' },
  maxCompletionLength: { default: null, check: positiveOrNull, doc: 'completion tokens kept (the start; null: all)', trl: 'max_completion_length' },
  maxLength: { default: 1024, check: positiveOrNull, doc: 'prompt+completion tokens kept (null: all)', trl: 'max_length' },
  truncationMode: { default: 'keep_end', check: oneOf('keep_end', 'keep_start'), doc: 'which end maxLength keeps', trl: 'truncation_mode' },
};

export const describeDPOConfig = (): string => describeSchema(DPO_SCHEMA);

export interface DPOTrainerOptions {
  /** The policy to train (loadCausalLM / createCausalLM). */
  model: CausalLM;
  /** The reference policy; default a frozen copy of `model` at construction (none with referenceFree). */
  refModel?: CausalLM | null;
  tokenizer: Tokenizer;
  /** Preference rows: prompt (optional: TRL's implicit prompt), chosen, rejected. */
  trainDataset: Dataset | Row[];
  config?: Partial<DPOConfig>;
}

/**
 * A prepared DPO batch (the testability contract: computeLoss takes exactly this). Field names are
 * collatePreference's; chosen and rejected share T.
 */
export interface DPOBatch {
  /** `[B, T]` prompt+chosen, right-padded; attention mask; completion (loss) mask. */
  chosenIds: Tensor;
  chosenMask: Tensor;
  chosenCompletionMask: Tensor;
  rejectedIds: Tensor;
  rejectedMask: Tensor;
  rejectedCompletionMask: Tensor;
  /** `[B]` reference sequence log-probs; absent = computed here with the reference model. */
  refChosenLogps?: Tensor | null;
  refRejectedLogps?: Tensor | null;
}

interface DPOTotals { pairs: number; chosenTokens: number }

export class DPOTrainer extends OfflineTrainer<DPOConfig, DPOBatch, DPOTotals> {
  readonly model: CausalLM;
  readonly refModel: CausalLM | null;
  readonly tokenizer: Tokenizer;
  /** Cached reference log-probs [chosen, rejected] by row content (precomputeRefLogps). */
  private refCache: Map<string, [number, number]> | null = null;

  constructor(opts: DPOTrainerOptions) {
    const config = resolveConfig('DPOConfig', DPO_SCHEMA, opts.config ?? {});
    if (!opts.model || typeof (opts.model as CausalLM).lmHeadWeight !== 'function') throw new TypeError("DPOTrainer: 'model' must be a causal LM (loadCausalLM / createCausalLM)");
    if (!opts.tokenizer || typeof opts.tokenizer.encode !== 'function') throw new TypeError("DPOTrainer: 'tokenizer' must be a Tokenizer (loadTokenizer / createCharTokenizer)");
    if (opts.refModel && config.referenceFree) throw new TypeError('DPOTrainer: a refModel was given with referenceFree: true; drop one of them');
    if (opts.refModel === opts.model && opts.model) throw new TypeError('DPOTrainer: refModel is the policy itself; pass a separate (frozen) model, or leave refModel out for a frozen copy');
    // The frozen copy is taken before anything trains (and before resume reloads the policy's weights).
    const refModel = config.referenceFree ? null : opts.refModel ?? frozenCopy(opts.model);
    super('DPOTrainer', config, opts.model, opts.trainDataset);
    this.model = opts.model;
    this.refModel = refModel;
    this.tokenizer = opts.tokenizer;
  }

  /**
   * Sequence log-probs `[B]` (Σ over completion tokens of log π, no temperature) of both halves of a
   * batch, from one forward over the 2B sequences, and the per-token log-probs and masks behind them.
   */
  sequenceLogps(model: CausalLM, b: DPOBatch): { chosen: Tensor; rejected: Tensor; tokenLogps: Tensor; tokenMask: Tensor } {
    const n = b.chosenIds.shape[0];
    const T = b.chosenIds.shape[1];
    const ids = cat([b.chosenIds, b.rejectedIds], 0);
    const attn = cat([b.chosenMask, b.rejectedMask], 0);
    const mask = cat([b.chosenCompletionMask, b.rejectedCompletionMask], 0).narrow(1, 1, T - 1);
    const tokenLogps = nextTokenLogprobs(model, ids, attn).logprobs;
    // Masked sum per sequence, accumulated in float32 (float64 for float64 models) — plumbing: the loss
    // itself is ops.preferenceLoss.
    const acc = seqDtype(tokenLogps.dtype);
    const seq = tokenLogps.to(acc).mul(mask.to(acc)).sum(1);
    return { chosen: seq.narrow(0, 0, n), rejected: seq.narrow(0, n, n), tokenLogps, tokenMask: mask };
  }

  /** Reference sequence log-probs (no graph): `{ chosen [B], rejected [B] }`. */
  referenceLogps(b: DPOBatch): { chosen: Tensor; rejected: Tensor } {
    if (!this.refModel) throw new Error('DPOTrainer: no reference model (referenceFree is on)');
    const ref = this.refModel;
    return noGrad(() => tidy(() => {
      const r = this.sequenceLogps(ref, b);
      return { chosen: r.chosen.contiguous(), rejected: r.rejected.contiguous() };
    }));
  }

  /**
   * DPO-family loss of a prepared batch (ALGORITHMS.md §7): `{ loss, metrics }`, loss a back-propagatable
   * scalar; metrics `rewards/chosen`, `rewards/rejected`, `rewards/accuracies`, `rewards/margins`,
   * `logps/chosen`, `logps/rejected` (means over pairs) and, with sftWeight, `nll`. Without
   * refChosenLogps/refRejectedLogps the reference model computes them. `numPairs` and `chosenTokens`
   * (default: the batch's own) are the whole step's counts when this batch is a micro-batch of it.
   */
  computeLoss(batch: DPOBatch, opts: { numPairs?: number; chosenTokens?: number } = {}): { loss: Tensor; metrics: Metrics } {
    const c = this.config;
    const n = batch.chosenIds.shape[0];
    const pol = this.sequenceLogps(this.model, batch);
    let refC: Tensor | null = null;
    let refR: Tensor | null = null;
    if (!c.referenceFree) {
      if (batch.refChosenLogps && batch.refRejectedLogps) {
        refC = batch.refChosenLogps;
        refR = batch.refRejectedLogps;
      } else {
        const r = this.referenceLogps(batch);
        refC = r.chosen;
        refR = r.rejected;
      }
    }
    const lengths = pol.tokenMask.sum(1).to(pol.chosen.dtype);
    const pref = preferenceLoss(pol.chosen, pol.rejected, refC, refR, {
      type: c.lossType, beta: c.beta, labelSmoothing: c.labelSmoothing, referenceFree: c.referenceFree,
      chosenLengths: lengths.narrow(0, 0, n), rejectedLengths: lengths.narrow(0, n, n),
    });
    const share = opts.numPairs !== undefined ? n / opts.numPairs : 1;
    let loss = share === 1 ? pref.loss : pref.loss.mul(share);
    const m = pref.metrics;
    const metrics: Metrics = {
      'rewards/chosen': m.rewardsChosen.item(), 'rewards/rejected': m.rewardsRejected.item(),
      'rewards/accuracies': m.accuracy.item(), 'rewards/margins': m.margin.item(),
      ...noGrad(() => ({ 'logps/chosen': pol.chosen.mean().item(), 'logps/rejected': pol.rejected.mean().item() })),
    };
    if (c.sftWeight > 0) {
      const nll = lossAgg(pol.tokenLogps.narrow(0, 0, n).neg(), pol.tokenMask.narrow(0, 0, n), { aggregation: 'token_mean', normalizer: opts.chosenTokens });
      // As a metric: this batch's part of the step's token mean, divided by its pair share, so the step's
      // pair-weighted sum of micro-batch metrics is exactly the step's token mean.
      metrics.nll = noGrad(() => nll.item()) / share;
      loss = loss.add(nll.mul(c.sftWeight));
    }
    return { loss, metrics };
  }

  /** The reference cache key of a row: a hash of what collation reads. */
  private static key(row: Row): string {
    const r = row as Record<string, unknown>;
    return createHash('sha1').update(JSON.stringify([r.prompt ?? null, r.chosen, r.rejected])).digest('base64');
  }

  /**
   * Computes and caches the reference log-probs of every row of the training data (one pass, batches of
   * refBatchSize rows). Called by train() when precomputeRefLogps is on; safe to call earlier.
   */
  async precomputeReferenceLogps(): Promise<void> {
    if (this.config.referenceFree || this.refCache) return;
    const cache = new Map<string, [number, number]>();
    const size = this.config.refBatchSize ?? this.config.batchSize;
    let rows: Row[] = [];
    const flush = () => {
      if (rows.length) this.cacheRows(cache, rows);
      rows = [];
    };
    for await (const row of this.dataset) {
      rows.push(row);
      if (rows.length === size) flush();
    }
    flush();
    this.refCache = cache;
  }

  private cacheRows(cache: Map<string, [number, number]>, rows: Row[]): void {
    const p = tidy(() => this.collate(rows, true));
    try {
      if (p.size === 0) return;
      const r = this.referenceLogps(p.batch);
      const c = r.chosen.toArray() as number[];
      const j = r.rejected.toArray() as number[];
      r.chosen.dispose();
      r.rejected.dispose();
      p.kept.forEach((row, i) => cache.set(DPOTrainer.key(row), [c[i], j[i]]));
    } finally {
      for (const t of Object.values(p.batch)) if (t instanceof Tensor) t.dispose();
    }
  }

  /** Precomputes the reference cache (precomputeRefLogps), then runs the shared loop. */
  override async train(opts: { signal?: AbortSignal } = {}): Promise<TrainResult> {
    if (this.config.precomputeRefLogps) await this.precomputeReferenceLogps();
    return super.train(opts);
  }

  protected override async beforeCollate(rows: Row[]): Promise<void> {
    // Rows the cache has not seen (e.g. an eval set) are added on first sight.
    if (!this.refCache) return;
    const missing = rows.filter((r) => !this.refCache!.has(DPOTrainer.key(r)));
    if (missing.length) this.cacheRows(this.refCache, missing);
  }

  protected collate(rows: Row[], noRef = false): Prepared<DPOBatch> & { kept: Row[] } {
    const c = this.config;
    const b = collatePreference(this.tokenizer, rows, {
      ...(c.maxPromptLength !== null ? { maxPromptLength: c.maxPromptLength } : {}),
      ...(c.maxCompletionLength !== null ? { maxCompletionLength: c.maxCompletionLength } : {}),
      ...(c.maxLength !== null ? { maxLength: c.maxLength } : {}),
      truncationMode: c.truncationMode, overlong: c.overlong,
    });
    b.margin?.dispose();
    const batch: DPOBatch = {
      chosenIds: b.chosenIds, chosenMask: b.chosenMask, chosenCompletionMask: b.chosenCompletionMask,
      rejectedIds: b.rejectedIds, rejectedMask: b.rejectedMask, rejectedCompletionMask: b.rejectedCompletionMask,
    };
    if (!noRef && this.refCache && b.rows.length > 0) {
      const refs = b.rows.map((r) => this.refCache!.get(DPOTrainer.key(r))!);
      const f64 = seqDtype(this.model.dtype) === 'float64';
      const col = (i: 0 | 1) => (f64 ? Float64Array.from(refs, (x) => x[i]) : Float32Array.from(refs, (x) => x[i]));
      batch.refChosenLogps = tensor(col(0));
      batch.refRejectedLogps = tensor(col(1));
    }
    const tokens = b.rows.length === 0 ? 0 : noGrad(() => b.chosenMask.sum().item() + b.rejectedMask.sum().item());
    return { batch, size: b.rows.length, tokens, skipped: b.skipped.length, kept: b.rows };
  }

  protected totals(p: Prepared<DPOBatch>): DPOTotals {
    return { pairs: p.size, chosenTokens: this.config.sftWeight > 0 ? chosenTokenCount(p.batch) : 0 };
  }

  protected microLoss(batch: DPOBatch, totals: DPOTotals): { loss: Tensor; metrics: Metrics } {
    return this.computeLoss(batch, { numPairs: totals.pairs, chosenTokens: this.config.sftWeight > 0 ? totals.chosenTokens : undefined });
  }

  protected metricWeight(batch: DPOBatch, totals: DPOTotals): number {
    return batch.chosenIds.shape[0] / totals.pairs;
  }
}

/** Chosen completion tokens that are predicted (completion-mask ones after position 0). */
function chosenTokenCount(b: DPOBatch): number {
  const m = b.chosenCompletionMask;
  return noGrad(() => m.narrow(1, 1, m.shape[1] - 1).sum().item());
}

/** The dtype sequence log-probs are summed and compared in. */
function seqDtype(d: DType): 'float32' | 'float64' {
  return d === 'float64' ? 'float64' : 'float32';
}
