// PretrainedModel (backbone + config + save) and CausalLM (backbone + lm_head + generate): the
// classes behind GPT2LMHeadModel, LlamaForCausalLM, Qwen2ForCausalLM and MistralForCausalLM.
//   forward(inputIds [B, T], { attentionMask [B, past+T], positionIds [B, T], cache, logitsToKeep })
//     → { logits [B, T', V], hidden [B, T, H] }
// `hidden` is the final-norm output for every position, so trainers can skip the `[B, T, V]` logits
// (logitsToKeep: 0) and compute log-probs with a fused op over `hidden` and `lmHeadWeight()`.
// Tied embeddings (tie_word_embeddings): lm_head has no parameter of its own; lmHeadWeight() is the
// embedding table, and state dicts / saved files omit `lm_head.weight`, as transformers' do.
import { Tensor, linear, tidy, type DType, type Device } from '../tensor/index.js';
import { Module } from '../nn/index.js';
import { backbonePrefix, toHfConfig, type HeadKind, type ModelConfig } from './config.js';
import { Dense, type ParamSource } from './layers.js';
import { LlamaModel } from './llama.js';
import { GPT2Model } from './gpt2.js';
import { attentionContext, checkInputIds } from './attention.js';
import { writeModelFolder } from './folder.js';
import type { KVCache } from '../generation/cache.js';
import { generate, type GenerateOptions, type GenerateOutput } from '../generation/generate.js';

export type Backbone = LlamaModel | GPT2Model;

export interface ForwardOptions {
  /** `[B, past + T]`, 1 (or true) for real tokens, 0 for padding (left or right). Default: all ones. */
  attentionMask?: Tensor | null;
  /** `[B, T]` (or `[1, T]`) int64. Default: cumsum(attentionMask) − 1 (padding at 1), or past..past+T−1. */
  positionIds?: Tensor | null;
  /** Keys/values of earlier tokens; updated in place (its `length` grows by T). */
  cache?: KVCache | null;
  /** Compute logits for the last k positions only (0: none, an empty `[B, 0, V]`). Default: all T.
   *  (transformers' `logits_to_keep` reads 0 as "all"; here 0 means none.) */
  logitsToKeep?: number;
}

export interface CausalLMOutput {
  /** `[B, T', V]` in the model dtype, T' = logitsToKeep ?? T. */
  logits: Tensor;
  /** Final-norm hidden states `[B, T, H]`. */
  hidden: Tensor;
}

/** @internal the options generation passes to `_decode` (already checked). */
export interface DecodeOptions {
  attentionMask: Tensor | null;
  positionIds: Tensor;
  cache: KVCache;
}

/** A transformer backbone with its configuration and Hugging Face save format. */
export abstract class PretrainedModel extends Module {
  readonly config: ModelConfig;
  readonly head: HeadKind;
  readonly backbone: Backbone;
  /** The config.json fields llmrl does not interpret, written back by save(). */
  protected readonly extraConfig: Record<string, unknown>;

  constructor(src: ParamSource, config: ModelConfig, head: HeadKind, extraConfig: Record<string, unknown> = {}) {
    super();
    this.config = config;
    this.head = head;
    this.extraConfig = extraConfig;
    const prefix = backbonePrefix(config.modelType);
    this.backbone = this.registerModule(prefix, config.modelType === 'gpt2' ? new GPT2Model(src, prefix, config) : new LlamaModel(src, prefix, config));
  }

  /** transformers' class name, e.g. 'Qwen2ForCausalLM'. */
  get architecture(): string {
    return String((this.hfConfig().architectures as string[])[0]);
  }

  /** The parameters' floating dtype. */
  get dtype(): DType { return this.backbone.embedWeight.dtype; }
  get device(): Device { return this.backbone.embedWeight.device; }

  /** The config.json this model saves (transformers 4.x and 5.x read it). */
  hfConfig(): Record<string, unknown> {
    return toHfConfig(this.config, this.head, this.dtype, this.extraConfig);
  }

  /**
   * Writes a Hugging Face folder: config.json and model.safetensors (tied weights omitted, as
   * transformers saves them). Each file is written to a temporary name and renamed into place, so an
   * interrupted save never leaves a torn file; other files in `dir` (tokenizer, …) are kept.
   */
  save(dir: string): void {
    writeModelFolder(dir, this.stateDict(), this.hfConfig());
  }

  /** @internal runs the backbone: final-norm hidden states `[B, T, H]`, advancing the cache. */
  protected runBackbone(owner: string, inputIds: Tensor, opts: ForwardOptions, trusted = false): Tensor {
    const [b, t] = trusted ? (inputIds.shape as [number, number]) : checkInputIds(owner, inputIds);
    if (!trusted && opts.cache !== undefined && opts.cache !== null && typeof (opts.cache as KVCache).update !== 'function') {
      throw new TypeError(`${owner}: 'cache' must be a KVCache (new KVCache({ maxLength })), got ${typeof opts.cache}`);
    }
    const hidden = tidy(() => {
      const ctx = attentionContext(owner, b, t, {
        attentionMask: opts.attentionMask, positionIds: opts.positionIds, cache: opts.cache,
        windows: this.config.slidingWindow, device: this.device, trusted,
      });
      if (!trusted) this.checkIds(owner, inputIds, ctx.positionIds);
      return this.backbone.forward(inputIds, ctx);
    });
    opts.cache?.advance(t);
    return hidden;
  }

  private checkIds(owner: string, ids: Tensor, pos: Tensor): void {
    const v = this.config.vocabSize;
    const lo = ids.min().item();
    const hi = ids.max().item();
    if (lo < 0 || hi >= v) throw new RangeError(`${owner}: 'inputIds' holds token id ${lo < 0 ? lo : hi}, outside the vocabulary [0, ${v})`);
    if (this.config.modelType === 'gpt2') {
      const p = pos.max().item();
      if (p >= this.config.maxPositionEmbeddings) {
        throw new RangeError(`${owner}: position ${p} is beyond GPT-2's ${this.config.maxPositionEmbeddings} learned positions (n_positions)`);
      }
    }
  }
}

/** A decoder-only language model: backbone + lm_head (tied to the embeddings or not). */
export class CausalLM extends PretrainedModel {
  private readonly lmHead: Dense | null;

  constructor(src: ParamSource, config: ModelConfig, extraConfig: Record<string, unknown> = {}) {
    super(src, config, 'causal', extraConfig);
    this.lmHead = config.tieWordEmbeddings ? null
      : this.registerModule('lm_head', new Dense(src, 'lm_head', config.hiddenSize, config.vocabSize, false, config.initializerRange));
  }

  /** The output projection `[V, H]` (the embedding table when tied). The model owns it: do not dispose. */
  lmHeadWeight(): Tensor {
    return this.lmHead ? this.lmHead.weight : this.backbone.embedWeight;
  }

  /**
   * Runs the model: `{ logits [B, T', V], hidden [B, T, H] }`. Under autograd it records the graph
   * (call it inside noGrad / inferenceMode for inference).
   * @example const { logits } = model.forward(ids, { attentionMask: mask, logitsToKeep: 1 });
   */
  forward(inputIds: Tensor, opts: ForwardOptions = {}): CausalLMOutput {
    const owner = `${this.constructor.name}.forward`;
    const n = opts.logitsToKeep;
    if (n !== undefined && n !== null && (!Number.isInteger(n) || n < 0)) {
      throw new RangeError(`${owner}: 'logitsToKeep' must be a non-negative integer, got ${String(n)}`);
    }
    const hidden = this.runBackbone(owner, inputIds, opts);
    const t = hidden.shape[1];
    const k = n === undefined || n === null ? t : Math.min(n, t);
    const logits = tidy(() => linear(k === t ? hidden : hidden.narrow(1, t - k, k), this.lmHeadWeight()));
    return { logits, hidden };
  }

  /** @internal generation's step: logits of the last position `[B, 1, V]` (inputs pre-checked). */
  _decode(inputIds: Tensor, opts: DecodeOptions): Tensor {
    const hidden = this.runBackbone('generate', inputIds, opts, true);
    const t = hidden.shape[1];
    const logits = tidy(() => linear(t === 1 ? hidden : hidden.narrow(1, t - 1, 1), this.lmHeadWeight()));
    hidden.dispose();
    return logits;
  }

  /**
   * Generates continuations of left-padded prompts (see generation/generate.ts):
   * `{ completionIds [B, L], completionMask [B, L], logprobs [B, L] }`.
   */
  generate(inputIds: Tensor, opts: GenerateOptions): GenerateOutput {
    return generate(this, inputIds, opts);
  }
}

/** transformers' GPT2LMHeadModel. */
export class GPT2LMHeadModel extends CausalLM {}
/** transformers' LlamaForCausalLM. */
export class LlamaForCausalLM extends CausalLM {}
/** transformers' Qwen2ForCausalLM (q/k/v bias). */
export class Qwen2ForCausalLM extends CausalLM {}
/** transformers' MistralForCausalLM (sliding-window attention). */
export class MistralForCausalLM extends CausalLM {}

/** The class for a model type. */
export function causalLMClass(t: ModelConfig['modelType']): typeof CausalLM {
  return { gpt2: GPT2LMHeadModel, llama: LlamaForCausalLM, qwen2: Qwen2ForCausalLM, mistral: MistralForCausalLM }[t];
}
