// The Llama-family decoder (LlamaModel, and Qwen2 / Mistral, which differ only in config): one
// implementation behind LlamaForCausalLM, Qwen2ForCausalLM and MistralForCausalLM (and their
// *ForSequenceClassification twins). Parameter names are transformers' (`model.layers.0.self_attn.q_proj.weight`).
//   h = embed_tokens(ids)                                                           [B, T, H]
//   per layer:  h = h + o_proj(attn(rope(q_proj(n)), rope(k_proj(n)), v_proj(n)))   n = input_layernorm(h)
//               h = h + down_proj(act(gate_proj(n)) · up_proj(n))                   n = post_attention_layernorm(h)
//   hidden = norm(h)                                                                [B, T, H]
// q `[B, Hq, T, D]`, k/v `[B, Hkv, T, D]`: grouped-query attention through sdpa's `enableGqa` (each
// kv head serves Hq/Hkv query heads, never materialised). Biases: Qwen2 on q/k/v, Llama per
// `attention_bias` / `mlp_bias`, Mistral none. Sliding windows come in as masks (attention.ts).
import { Tensor, scaledDotProductAttention, tensor, tidy } from '../tensor/index.js';
import { Module, ModuleList } from '../nn/index.js';
import type { ModelConfig } from './config.js';
import { Dense, EmbeddingTable, RMSNormLayer, activate, joinName, type ParamSource } from './layers.js';
import { applyRope, ropeInvFreq, ropeTables, type RopeTables } from './rope.js';
import type { AttentionContext, MaskSpec } from './attention.js';

export class LlamaAttention extends Module {
  readonly qProj: Dense;
  readonly kProj: Dense;
  readonly vProj: Dense;
  readonly oProj: Dense;
  private readonly nH: number;
  private readonly nKv: number;
  private readonly d: number;

  constructor(src: ParamSource, name: string, c: ModelConfig, readonly layerIdx: number) {
    super();
    const std = c.initializerRange;
    this.nH = c.numHeads;
    this.nKv = c.numKvHeads;
    this.d = c.headDim;
    this.qProj = this.registerModule('q_proj', new Dense(src, joinName(name, 'q_proj'), c.hiddenSize, c.numHeads * c.headDim, c.qkvBias, std));
    this.kProj = this.registerModule('k_proj', new Dense(src, joinName(name, 'k_proj'), c.hiddenSize, c.numKvHeads * c.headDim, c.qkvBias, std));
    this.vProj = this.registerModule('v_proj', new Dense(src, joinName(name, 'v_proj'), c.hiddenSize, c.numKvHeads * c.headDim, c.qkvBias, std));
    this.oProj = this.registerModule('o_proj', new Dense(src, joinName(name, 'o_proj'), c.numHeads * c.headDim, c.hiddenSize, c.oBias, std));
  }

  /** x `[B, T, H]` → `[B, T, H]`. */
  forward(x: Tensor, b: number, t: number, rope: RopeTables, spec: MaskSpec, ctx: AttentionContext): Tensor {
    const q = applyRope(this.qProj.forward(x).view(b, t, this.nH, this.d).transpose(1, 2), rope); //   [B, Hq, T, D]
    let k = applyRope(this.kProj.forward(x).view(b, t, this.nKv, this.d).transpose(1, 2), rope); //   [B, Hkv, T, D]
    let v = this.vProj.forward(x).view(b, t, this.nKv, this.d).transpose(1, 2);
    if (ctx.cache) ({ k, v } = ctx.cache.update(this.layerIdx, k, v)); //                             [B, Hkv, Tk, D]
    const o = scaledDotProductAttention(q, k, v, { attnMask: spec.mask, isCausal: spec.isCausal, enableGqa: this.nKv !== this.nH });
    return this.oProj.forward(o.transpose(1, 2).reshape(b, t, this.nH * this.d));
  }
}

export class LlamaMLP extends Module {
  readonly gateProj: Dense;
  readonly upProj: Dense;
  readonly downProj: Dense;
  constructor(src: ParamSource, name: string, private readonly c: ModelConfig) {
    super();
    const std = c.initializerRange;
    this.gateProj = this.registerModule('gate_proj', new Dense(src, joinName(name, 'gate_proj'), c.hiddenSize, c.intermediateSize, c.mlpBias, std));
    this.upProj = this.registerModule('up_proj', new Dense(src, joinName(name, 'up_proj'), c.hiddenSize, c.intermediateSize, c.mlpBias, std));
    this.downProj = this.registerModule('down_proj', new Dense(src, joinName(name, 'down_proj'), c.intermediateSize, c.hiddenSize, c.mlpBias, std));
  }
  forward(x: Tensor): Tensor {
    return this.downProj.forward(activate(this.gateProj.forward(x), this.c.activation).mul(this.upProj.forward(x)));
  }
}

export class LlamaDecoderLayer extends Module {
  readonly selfAttn: LlamaAttention;
  readonly mlp: LlamaMLP;
  readonly inputLayernorm: RMSNormLayer;
  readonly postAttentionLayernorm: RMSNormLayer;
  /** 0 for full attention, else the sliding window. */
  readonly window: number;

  constructor(src: ParamSource, name: string, c: ModelConfig, i: number) {
    super();
    this.window = c.slidingWindow[i] ?? 0;
    this.selfAttn = this.registerModule('self_attn', new LlamaAttention(src, joinName(name, 'self_attn'), c, i));
    this.mlp = this.registerModule('mlp', new LlamaMLP(src, joinName(name, 'mlp'), c));
    this.inputLayernorm = this.registerModule('input_layernorm', new RMSNormLayer(src, joinName(name, 'input_layernorm'), c.hiddenSize, c.normEps));
    this.postAttentionLayernorm = this.registerModule('post_attention_layernorm',
      new RMSNormLayer(src, joinName(name, 'post_attention_layernorm'), c.hiddenSize, c.normEps));
  }

  forward(h: Tensor, b: number, t: number, rope: RopeTables, ctx: AttentionContext): Tensor {
    const spec = ctx.masks.get(this.window)!;
    const h1 = h.add(this.selfAttn.forward(this.inputLayernorm.forward(h), b, t, rope, spec, ctx));
    return h1.add(this.mlp.forward(this.postAttentionLayernorm.forward(h1)));
  }
}

/** The backbone (`model.*`): token ids `[B, T]` → final-norm hidden states `[B, T, H]`. */
export class LlamaModel extends Module {
  readonly embedTokens: EmbeddingTable;
  readonly layers: ModuleList;
  readonly norm: RMSNormLayer;
  /** RoPE inverse frequencies `[D/2]`, kept in JS: derived from the config (transformers does not
   *  save them either) and out of reach of `module.to(dtype)`, which must not round them. */
  private readonly invFreq: Float32Array;

  constructor(src: ParamSource, name: string, readonly config: ModelConfig) {
    super();
    const c = config;
    this.embedTokens = this.registerModule('embed_tokens',
      new EmbeddingTable(src, joinName(name, 'embed_tokens'), c.vocabSize, c.hiddenSize, c.initializerRange, c.padTokenId));
    this.layers = this.registerModule('layers', new ModuleList());
    for (let i = 0; i < c.numLayers; i++) this.layers.push(new LlamaDecoderLayer(src, joinName(name, `layers.${i}`), c, i));
    this.norm = this.registerModule('norm', new RMSNormLayer(src, joinName(name, 'norm'), c.hiddenSize, c.normEps));
    this.invFreq = ropeInvFreq(c.rope!, c.headDim);
  }

  /** The input embedding table `[V, H]`. */
  get embedWeight(): Tensor { return this.embedTokens.weight; }

  forward(inputIds: Tensor, ctx: AttentionContext): Tensor {
    const [b, t] = inputIds.shape;
    let h = this.embedTokens.forward(inputIds);
    const rope = tidy(() => ropeTables(tensor(this.invFreq, { device: h.device }), ctx.positionIds, h.dtype));
    for (const layer of this.layers) {
      const next = tidy(() => (layer as LlamaDecoderLayer).forward(h, b, t, rope, ctx));
      h.dispose();
      h = next;
    }
    const out = this.norm.forward(h);
    h.dispose();
    rope.cos.dispose();
    rope.sinSigned.dispose();
    return out;
  }
}
