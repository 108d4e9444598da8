// Standard layers over the functional ops of src/tensor/create.ts, with PyTorch's parameter names,
// shapes and default initialisation, so weights load from and save to Hugging Face checkpoints.
//   Linear     y = x·Wᵀ + b, W [out, in]; init kaiming_uniform(a=√5) ⇒ W, b ~ U(−1/√in, 1/√in)
//   Embedding  rows of W [V, H]; init N(0, 1), padding row zero
//   LayerNorm  (x − mean) / √(var + eps) · γ + β   (Ba et al. 2016)
//   RMSNorm    x / √(mean(x²) + eps) · γ          (Zhang & Sennrich 2019)
//   Dropout, Sequential, ModuleList, and activation modules ReLU, GELU, SiLU, Tanh.
import {
  Tensor, tidy, noGrad, rand, randn, ones, zeros, linear, embedding, layerNorm, rmsNorm, dropout,
  isFloating, type DType, type Device,
} from '../tensor/index.js';
import { Module } from './module.js';

/** Where new parameters are created. */
export interface FactoryOptions {
  /** Default 'float32'. */
  dtype?: DType;
  /** Default 'cpu'. */
  device?: Device;
}

function checkPositiveInt(owner: string, arg: string, v: unknown, allowZero = false): void {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < (allowZero ? 0 : 1)) {
    throw new RangeError(`${owner}: '${arg}' must be a ${allowZero ? 'non-negative' : 'positive'} integer, got ${String(v)}`);
  }
}

function checkInput(owner: string, x: unknown, wantFloat: Tensor | null): asserts x is Tensor {
  if (!(x instanceof Tensor)) {
    throw new TypeError(`${owner}.forward: 'input' must be a Tensor, got ${x === null ? 'null' : Array.isArray(x) ? 'an array' : typeof x}; create one with tensor(...)`);
  }
  if (wantFloat && x.dtype !== wantFloat.dtype) {
    throw new TypeError(`${owner}.forward: 'input' has dtype ${x.dtype} but the layer's weights are ${wantFloat.dtype}; convert with input.to('${wantFloat.dtype}') or module.to('${x.dtype}')`);
  }
}

/** U(−bound, bound) of the given shape (one tensor; the intermediates are freed). */
function uniform(shape: number[], bound: number, f: FactoryOptions): Tensor {
  return noGrad(() => tidy(() => rand(shape, { dtype: f.dtype, device: f.device }).mul(2 * bound).sub(bound)));
}

export interface LinearOptions extends FactoryOptions {
  /** Learn an additive bias (default true). */
  bias?: boolean;
}

/** `y = x·Wᵀ + b`: input `[.., in]` → output `[.., out]`; weight `[out, in]`, bias `[out]`. */
export class Linear extends Module {
  readonly inFeatures: number;
  readonly outFeatures: number;

  constructor(inFeatures: number, outFeatures: number, opts: LinearOptions = {}) {
    super();
    checkPositiveInt('Linear', 'inFeatures', inFeatures, true);
    checkPositiveInt('Linear', 'outFeatures', outFeatures, true);
    this.inFeatures = inFeatures;
    this.outFeatures = outFeatures;
    // kaiming_uniform_(a=√5): gain = √(2/(1+a²)) = √(1/3), bound = gain·√(3/fanIn) = 1/√fanIn;
    // PyTorch draws the bias from the same range. fanIn = 0 leaves a zero-width range.
    const bound = inFeatures > 0 ? 1 / Math.sqrt(inFeatures) : 0;
    this.registerParameter('weight', uniform([outFeatures, inFeatures], bound, opts));
    this.registerParameter('bias', opts.bias === false ? null : uniform([outFeatures], bound, opts));
  }

  /** `[out, in]`. */
  get weight(): Tensor { return this.param('weight')!; }
  /** `[out]`, or null when built with `bias: false`. */
  get bias(): Tensor | null { return this.param('bias'); }

  forward(input: Tensor): Tensor {
    const wgt = this.weight;
    checkInput('Linear', input, wgt);
    return linear(input, wgt, this.bias);
  }
}

export interface EmbeddingOptions extends FactoryOptions {
  /** Row whose vector is zero at init and gets no gradient (negative counts from the end). */
  paddingIdx?: number;
}

/** Lookup table: integer indices `[..]` → vectors `[.., dim]`; weight `[numEmbeddings, dim]`. */
export class Embedding extends Module {
  readonly numEmbeddings: number;
  readonly embeddingDim: number;
  readonly paddingIdx: number | undefined;

  constructor(numEmbeddings: number, embeddingDim: number, opts: EmbeddingOptions = {}) {
    super();
    checkPositiveInt('Embedding', 'numEmbeddings', numEmbeddings);
    checkPositiveInt('Embedding', 'embeddingDim', embeddingDim);
    let pad = opts.paddingIdx;
    if (pad !== undefined) {
      if (!Number.isInteger(pad) || pad >= numEmbeddings || pad < -numEmbeddings) {
        throw new RangeError(`Embedding: 'paddingIdx' must be an integer in [${-numEmbeddings}, ${numEmbeddings - 1}], got ${pad}`);
      }
      if (pad < 0) pad += numEmbeddings;
    }
    this.numEmbeddings = numEmbeddings;
    this.embeddingDim = embeddingDim;
    this.paddingIdx = pad;
    const w = randn([numEmbeddings, embeddingDim], { dtype: opts.dtype, device: opts.device });
    if (pad !== undefined) noGrad(() => tidy(() => { w.select(0, pad!).zero_(); }));
    this.registerParameter('weight', w);
  }

  /** `[numEmbeddings, dim]`. */
  get weight(): Tensor { return this.param('weight')!; }

  forward(indices: Tensor): Tensor {
    checkInput('Embedding', indices, null);
    const dt = indices.dtype;
    if (dt !== 'int64' && dt !== 'int32') {
      throw new TypeError(`Embedding.forward: 'indices' must be an int64 or int32 tensor, got ${dt}; convert with indices.to('int64')`);
    }
    return embedding(this.weight, indices, { paddingIdx: this.paddingIdx });
  }
}

function normShape(owner: string, s: number | number[]): number[] {
  const shape = typeof s === 'number' ? [s] : s;
  if (!Array.isArray(shape) || shape.length === 0) throw new TypeError(`${owner}: 'normalizedShape' must be a positive integer or a non-empty array of them, got ${JSON.stringify(s)}`);
  for (const d of shape) checkPositiveInt(owner, 'normalizedShape', d);
  return [...shape];
}

function checkEps(owner: string, eps: number): void {
  if (typeof eps !== 'number' || !(eps >= 0) || !Number.isFinite(eps)) throw new RangeError(`${owner}: 'eps' must be a finite number >= 0, got ${eps}`);
}

function checkTrailing(owner: string, x: Tensor, shape: number[]): void {
  const s = x.shape;
  const tail = s.slice(s.length - shape.length);
  if (s.length < shape.length || tail.some((d, i) => d !== shape[i])) {
    throw new RangeError(`${owner}.forward: 'input' of shape [${s.join(', ')}] must end with normalizedShape [${shape.join(', ')}]`);
  }
}

export interface LayerNormOptions extends FactoryOptions {
  /** Default 1e-5 (PyTorch, GPT-2). */
  eps?: number;
  /** Learn a per-element scale γ (init 1) and, with `bias`, shift β (init 0). Default true. */
  elementwiseAffine?: boolean;
  /** Learn β (default true; only with elementwiseAffine). */
  bias?: boolean;
}

/** `(x − mean) / √(var + eps) · γ + β` over the trailing `normalizedShape` dims (biased variance). */
export class LayerNorm extends Module {
  readonly normalizedShape: number[];
  readonly eps: number;

  constructor(normalizedShape: number | number[], opts: LayerNormOptions = {}) {
    super();
    this.normalizedShape = normShape('LayerNorm', normalizedShape);
    this.eps = opts.eps ?? 1e-5;
    checkEps('LayerNorm', this.eps);
    const f = { dtype: opts.dtype, device: opts.device };
    const affine = opts.elementwiseAffine ?? true;
    this.registerParameter('weight', affine ? ones(this.normalizedShape, f) : null);
    this.registerParameter('bias', affine && (opts.bias ?? true) ? zeros(this.normalizedShape, f) : null);
  }

  get weight(): Tensor | null { return this.param('weight'); }
  get bias(): Tensor | null { return this.param('bias'); }

  forward(input: Tensor): Tensor {
    checkInput('LayerNorm', input, this.weight);
    checkTrailing('LayerNorm', input, this.normalizedShape);
    return layerNorm(input, this.normalizedShape, { weight: this.weight, bias: this.bias, eps: this.eps });
  }
}

export interface RMSNormOptions extends FactoryOptions {
  /** Default 1e-6, Hugging Face Llama's `rms_norm_eps` default (Qwen2 and Mistral configs use 1e-6 or
   *  1e-5: pass the checkpoint's value). PyTorch's nn.RMSNorm defaults to the dtype's machine epsilon. */
  eps?: number;
  /** Learn a per-element scale γ (init 1). Default true. */
  elementwiseAffine?: boolean;
}

/** `x / √(mean(x²) + eps) · γ` over the trailing `normalizedShape` dims; no mean subtraction, no bias. */
export class RMSNorm extends Module {
  readonly normalizedShape: number[];
  readonly eps: number;

  constructor(normalizedShape: number | number[], opts: RMSNormOptions = {}) {
    super();
    this.normalizedShape = normShape('RMSNorm', normalizedShape);
    this.eps = opts.eps ?? 1e-6;
    checkEps('RMSNorm', this.eps);
    const affine = opts.elementwiseAffine ?? true;
    this.registerParameter('weight', affine ? ones(this.normalizedShape, { dtype: opts.dtype, device: opts.device }) : null);
  }

  get weight(): Tensor | null { return this.param('weight'); }

  forward(input: Tensor): Tensor {
    checkInput('RMSNorm', input, this.weight);
    checkTrailing('RMSNorm', input, this.normalizedShape);
    return rmsNorm(input, this.normalizedShape, { weight: this.weight, eps: this.eps });
  }
}

/** Zeroes each element with probability `p` and scales the rest by 1/(1−p) in training mode; identity in eval mode. */
export class Dropout extends Module {
  readonly p: number;

  constructor(p = 0.5) {
    super();
    if (typeof p !== 'number' || !(p >= 0 && p <= 1)) throw new RangeError(`Dropout: 'p' must be in [0, 1], got ${p}`);
    this.p = p;
  }

  forward(input: Tensor): Tensor {
    checkInput('Dropout', input, null);
    if (!isFloating(input.dtype)) throw new TypeError(`Dropout.forward: 'input' must be a floating tensor, got ${input.dtype}`);
    return dropout(input, this.p, this.training && this.p > 0);
  }
}

/** Applies its children in order; children are named "0", "1", … (state-dict keys `0.weight`, …). */
export class Sequential extends Module {
  private readonly items: Module[];

  constructor(...modules: Module[]) {
    super();
    this.items = modules;
    modules.forEach((m, i) => this.registerModule(String(i), m));
  }

  get length(): number { return this.items.length; }
  /** The i-th child (negative counts from the end). */
  at(i: number): Module {
    const m = this.items.at(i);
    if (!m) throw new RangeError(`Sequential.at: index ${i} out of range for ${this.items.length} modules`);
    return m;
  }

  forward(input: Tensor): Tensor {
    // Each stage's output is a new tensor; free the intermediates except the last.
    return tidy(() => {
      let x = input;
      for (const m of this.items) x = m.forward(x) as Tensor;
      return x;
    });
  }
}

/** An indexable list of modules (children "0", "1", …) with no forward of its own, e.g. a
 *  transformer's `layers`. */
export class ModuleList extends Module {
  private readonly items: Module[] = [];

  constructor(modules: Module[] = []) {
    super();
    for (const m of modules) this.push(m);
  }

  push(m: Module): this {
    this.registerModule(String(this.items.length), m);
    this.items.push(m);
    return this;
  }
  get length(): number { return this.items.length; }
  at(i: number): Module {
    const m = this.items.at(i);
    if (!m) throw new RangeError(`ModuleList.at: index ${i} out of range for ${this.items.length} modules`);
    return m;
  }
  [Symbol.iterator](): Iterator<Module> { return this.items[Symbol.iterator](); }

  forward(): never {
    throw new Error('ModuleList has no forward: iterate over it and call each module\'s forward');
  }
}

export class ReLU extends Module {
  forward(input: Tensor): Tensor { checkInput('ReLU', input, null); return input.relu(); }
}

export class GELU extends Module {
  /** 'none' (exact erf form, default) or 'tanh' (GPT-2's `gelu_new`). */
  readonly approximate: 'none' | 'tanh';
  constructor(opts: { approximate?: 'none' | 'tanh' } = {}) {
    super();
    this.approximate = opts.approximate ?? 'none';
    if (this.approximate !== 'none' && this.approximate !== 'tanh') {
      throw new TypeError(`GELU: 'approximate' must be 'none' or 'tanh', got ${JSON.stringify(opts.approximate)}`);
    }
  }
  forward(input: Tensor): Tensor { checkInput('GELU', input, null); return input.gelu({ approximate: this.approximate }); }
}

/** x·σ(x) (a.k.a. swish), Llama's MLP activation. */
export class SiLU extends Module {
  forward(input: Tensor): Tensor { checkInput('SiLU', input, null); return input.silu(); }
}

export class Tanh extends Module {
  forward(input: Tensor): Tensor { checkInput('Tanh', input, null); return input.tanh(); }
}
