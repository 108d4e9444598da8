// Building blocks of the causal LMs, with Hugging Face's parameter names and layouts so state dicts
// equal transformers' (`model.layers.0.self_attn.q_proj.weight`, …) and save/load is a rename-free copy.
// Parameters come from a ParamSource instead of being initialised in the constructor: loading hands
// over the checkpoint's tensors as they are (no random init, no second copy), creating draws HF's init.
//   Dense      HF nn.Linear: weight [out, in], y = x·Wᵀ + b
//   Conv1D     HF GPT-2 Conv1D: weight [in, out] (stored as HF stores it), y = x·W + b, computed as
//              linear(x, Wᵀ view) — addmm reads W in place, no transpose copy
//   Embedding  weight [V, H] (rows; paddingIdx row gets no gradient, like nn.Embedding)
//   RMSNorm / LayerNorm  weight (and bias) [H]
import {
  Tensor, linear, embedding, rmsNorm, layerNorm, type DType, type Device,
} from '../tensor/index.js';
import { Module } from '../nn/index.js';
import type { Activation } from './config.js';

/** How a fresh parameter is initialised (HF `_init_weights`): N(0, std²) with an optional zero row
 *  (an embedding's padding_idx), zeros or ones. */
export type Init = { normal: number; zeroRow?: number } | 'zeros' | 'ones';

/** Where a model's parameters come from (random init, a checkpoint, or a shape-only dry run). */
export interface ParamSource {
  readonly dtype: DType;
  readonly device: Device;
  /** The tensor for the parameter with full dotted name `name` and `shape` (the caller owns it). */
  take(name: string, shape: number[], init: Init): Tensor;
}

const join = (prefix: string, name: string) => (prefix ? `${prefix}.${name}` : name);

/** `y = x·Wᵀ + b`: x `[.., in]` → `[.., out]`, weight `[out, in]`. */
export class Dense extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  constructor(src: ParamSource, name: string, inFeatures: number, outFeatures: number, bias: boolean, std: number) {
    super();
    this.weight = this.registerParameter('weight', src.take(join(name, 'weight'), [outFeatures, inFeatures], { normal: std }));
    this.bias = bias ? this.registerParameter('bias', src.take(join(name, 'bias'), [outFeatures], 'zeros')) : null;
  }
  forward(x: Tensor): Tensor {
    return linear(x, this.weight, this.bias);
  }
}

/** GPT-2's Conv1D: `y = x·W + b` with weight `[in, out]`. */
export class Conv1D extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor;
  constructor(src: ParamSource, name: string, inFeatures: number, outFeatures: number, std: number) {
    super();
    this.weight = this.registerParameter('weight', src.take(join(name, 'weight'), [inFeatures, outFeatures], { normal: std }));
    this.bias = this.registerParameter('bias', src.take(join(name, 'bias'), [outFeatures], 'zeros'));
  }
  forward(x: Tensor): Tensor {
    return linear(x, this.weight.t(), this.bias);
  }
}

/** Token or position embedding table `[num, dim]`. */
export class EmbeddingTable extends Module {
  weight: Tensor;
  readonly paddingIdx: number | undefined;
  constructor(src: ParamSource, name: string, num: number, dim: number, std: number, paddingIdx?: number | null) {
    super();
    this.paddingIdx = paddingIdx !== null && paddingIdx !== undefined && paddingIdx >= 0 && paddingIdx < num ? paddingIdx : undefined;
    this.weight = this.registerParameter('weight', src.take(join(name, 'weight'), [num, dim], { normal: std, zeroRow: this.paddingIdx }));
  }
  forward(ids: Tensor): Tensor {
    return embedding(this.weight, ids, { paddingIdx: this.paddingIdx });
  }
}

/** RMSNorm `x / √(mean(x²) + eps) · γ` over the last dim. */
export class RMSNormLayer extends Module {
  readonly weight: Tensor;
  constructor(src: ParamSource, name: string, dim: number, readonly eps: number) {
    super();
    this.weight = this.registerParameter('weight', src.take(join(name, 'weight'), [dim], 'ones'));
  }
  forward(x: Tensor): Tensor {
    return rmsNorm(x, [this.weight.shape[0]], { weight: this.weight, eps: this.eps });
  }
}

/** LayerNorm `(x − mean) / √(var + eps) · γ + β` over the last dim. */
export class LayerNormLayer extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor;
  constructor(src: ParamSource, name: string, dim: number, readonly eps: number) {
    super();
    this.weight = this.registerParameter('weight', src.take(join(name, 'weight'), [dim], 'ones'));
    this.bias = this.registerParameter('bias', src.take(join(name, 'bias'), [dim], 'zeros'));
  }
  forward(x: Tensor): Tensor {
    return layerNorm(x, [this.weight.shape[0]], { weight: this.weight, bias: this.bias, eps: this.eps });
  }
}

/** The MLP nonlinearity named by the config. */
export function activate(x: Tensor, act: Activation): Tensor {
  switch (act) {
    case 'silu': return x.silu();
    case 'gelu': return x.gelu();
    case 'gelu_tanh': return x.gelu({ approximate: 'tanh' });
    case 'relu': return x.relu();
  }
}

export { join as joinName };
