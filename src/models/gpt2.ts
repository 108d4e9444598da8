// GPT-2 (Radford et al. 2019) as transformers' GPT2Model, parameter for parameter
// (`transformer.h.0.attn.c_attn.weight`, …). Its linear layers are Conv1D: weight `[in, out]`, kept in
// that layout so checkpoints load and save without transposes (layers.ts).
//   h = wte(ids) + wpe(positions)                                                   [B, T, H]
//   per block:  h = h + c_proj(attn(split(c_attn(ln_1(h)))))    q/k/v `[B, heads, T, D]` from one fused c_attn
//               h = h + mlp.c_proj(gelu_tanh(mlp.c_fc(ln_2(h))))                    ("gelu_new")
//   hidden = ln_f(h)                                                                [B, T, H]
// Learned absolute positions: position ids index wpe (left padding shifts them, see attention.ts).
import { Tensor, scaledDotProductAttention, tidy } from '../tensor/index.js';
import { Module, ModuleList } from '../nn/index.js';
import type { ModelConfig } from './config.js';
import { Conv1D, EmbeddingTable, LayerNormLayer, activate, joinName, type ParamSource } from './layers.js';
import type { AttentionContext } from './attention.js';

export class GPT2Attention extends Module {
  readonly cAttn: Conv1D;
  readonly cProj: Conv1D;
  private readonly nH: number;
  private readonly d: number;
  private readonly scale: number;

  constructor(src: ParamSource, name: string, c: ModelConfig, readonly layerIdx: number) {
    super();
    this.nH = c.numHeads;
    this.d = c.headDim;
    this.scale = (c.scaleAttnWeights ? 1 / Math.sqrt(c.headDim) : 1) / (c.scaleAttnByInverseLayerIdx ? layerIdx + 1 : 1);
    this.cAttn = this.registerModule('c_attn', new Conv1D(src, joinName(name, 'c_attn'), c.hiddenSize, 3 * c.hiddenSize, c.initializerRange));
    // GPT-2's init scales residual projections by 1/√(2·layers).
    this.cProj = this.registerModule('c_proj', new Conv1D(src, joinName(name, 'c_proj'), c.hiddenSize, c.hiddenSize,
      c.initializerRange / Math.sqrt(2 * c.numLayers)));
  }

  /** x `[B, T, H]` → `[B, T, H]`. */
  forward(x: Tensor, b: number, t: number, ctx: AttentionContext): Tensor {
    const hidden = this.nH * this.d;
    const [q, k0, v0] = this.cAttn.forward(x).split(hidden, 2).map((p) => p.view(b, t, this.nH, this.d).transpose(1, 2)); // [B, heads, T, D]
    let k = k0;
    let v = v0;
    if (ctx.cache) ({ k, v } = ctx.cache.update(this.layerIdx, k, v));
    const spec = ctx.masks.get(0)!;
    const o = scaledDotProductAttention(q, k, v, { attnMask: spec.mask, isCausal: spec.isCausal, scale: this.scale });
    return this.cProj.forward(o.transpose(1, 2).reshape(b, t, hidden));
  }
}

export class GPT2MLP extends Module {
  readonly cFc: Conv1D;
  readonly cProj: Conv1D;
  constructor(src: ParamSource, name: string, private readonly c: ModelConfig) {
    super();
    this.cFc = this.registerModule('c_fc', new Conv1D(src, joinName(name, 'c_fc'), c.hiddenSize, c.intermediateSize, c.initializerRange));
    this.cProj = this.registerModule('c_proj', new Conv1D(src, joinName(name, 'c_proj'), c.intermediateSize, c.hiddenSize,
      c.initializerRange / Math.sqrt(2 * c.numLayers)));
  }
  forward(x: Tensor): Tensor {
    return this.cProj.forward(activate(this.cFc.forward(x), this.c.activation));
  }
}

export class GPT2Block extends Module {
  readonly ln1: LayerNormLayer;
  readonly attn: GPT2Attention;
  readonly ln2: LayerNormLayer;
  readonly mlp: GPT2MLP;
  constructor(src: ParamSource, name: string, c: ModelConfig, i: number) {
    super();
    this.ln1 = this.registerModule('ln_1', new LayerNormLayer(src, joinName(name, 'ln_1'), c.hiddenSize, c.normEps));
    this.attn = this.registerModule('attn', new GPT2Attention(src, joinName(name, 'attn'), c, i));
    this.ln2 = this.registerModule('ln_2', new LayerNormLayer(src, joinName(name, 'ln_2'), c.hiddenSize, c.normEps));
    this.mlp = this.registerModule('mlp', new GPT2MLP(src, joinName(name, 'mlp'), c));
  }
  forward(h: Tensor, b: number, t: number, ctx: AttentionContext): Tensor {
    const h1 = h.add(this.attn.forward(this.ln1.forward(h), b, t, ctx));
    return h1.add(this.mlp.forward(this.ln2.forward(h1)));
  }
}

/** The backbone (`transformer.*`): token ids `[B, T]` → final-norm hidden states `[B, T, H]`. */
export class GPT2Model extends Module {
  readonly wte: EmbeddingTable;
  readonly wpe: EmbeddingTable;
  readonly h: ModuleList;
  readonly lnF: LayerNormLayer;

  constructor(src: ParamSource, name: string, readonly config: ModelConfig) {
    super();
    const c = config;
    this.wte = this.registerModule('wte', new EmbeddingTable(src, joinName(name, 'wte'), c.vocabSize, c.hiddenSize, c.initializerRange));
    this.wpe = this.registerModule('wpe', new EmbeddingTable(src, joinName(name, 'wpe'), c.maxPositionEmbeddings, c.hiddenSize, c.initializerRange));
    this.h = this.registerModule('h', new ModuleList());
    for (let i = 0; i < c.numLayers; i++) this.h.push(new GPT2Block(src, joinName(name, `h.${i}`), c, i));
    this.lnF = this.registerModule('ln_f', new LayerNormLayer(src, joinName(name, 'ln_f'), c.hiddenSize, c.normEps));
  }

  get embedWeight(): Tensor { return this.wte.weight; }

  forward(inputIds: Tensor, ctx: AttentionContext): Tensor {
    const [b, t] = inputIds.shape;
    let h = tidy(() => this.wte.forward(inputIds).add(this.wpe.forward(ctx.positionIds)));
    for (const block of this.h) {
      const next = tidy(() => (block as GPT2Block).forward(h, b, t, ctx));
      h.dispose();
      h = next;
    }
    const out = this.lnF.forward(h);
    h.dispose();
    return out;
  }
}
