// Tensor: the TypeScript facade over one libtorch tensor (native/binding). Methods follow PyTorch's
// names (camelCase), argument order and defaults; keyword arguments become an options object.
// Every method returns a new Tensor (tracked by the innermost tidy scope), except in-place methods
// (trailing underscore), which return `this`.
import { native, type Handle } from '../native/addon.js';
import { type DType, type Device, dtypeCode, dtypeName, checkDevice, isFloating } from './dtype.js';
import { ops } from './optable.js';
import { track } from './scope.js';

export type Scalar = number | boolean;
export type Shape = readonly number[];
export type TensorLike = Tensor | Scalar;
export type NestedArray = number | boolean | NestedArray[];

export interface ToOptions {
  dtype?: DType;
  device?: Device | string;
  copy?: boolean;
}

export class Tensor {
  /** @internal native handle; swapped in place by `_replace` (module.to(), loading weights). */
  _h: Handle;

  /** @internal use the creation functions (`tensor`, `zeros`, …) instead. */
  constructor(h: Handle) {
    this._h = h;
    track(this);
  }

  /** @internal wraps a native result. */
  static _wrap(h: Handle): Tensor {
    return new Tensor(h);
  }

  /** @internal points this Tensor at another native tensor (disposing the old handle). */
  _replace(other: Tensor): void {
    const old = this._h;
    this._h = other._h;
    other._h = old;
    other.dispose();
  }

  // ---- metadata ----
  get shape(): number[] { return native().shape(this._h); }
  get dtype(): DType { return dtypeName(native().dtype(this._h)); }
  get device(): Device { return native().device(this._h) as Device; }
  get ndim(): number { return this.shape.length; }
  dim(): number { return this.shape.length; }
  get numel(): number { return this.shape.reduce((a, b) => a * b, 1); }
  size(dim?: number): number | number[] {
    const s = this.shape;
    if (dim === undefined) return s;
    const d = dim < 0 ? dim + s.length : dim;
    if (d < 0 || d >= s.length) throw new RangeError(`size: dim ${dim} out of range for a ${s.length}-d tensor`);
    return s[d];
  }

  // ---- lifetime ----
  /** Releases this tensor's native memory now (views and autograd may keep the storage alive). */
  dispose(): void { native().dispose(this._h); }
  get isDisposed(): boolean { return native().isDisposed(this._h); }

  // ---- autograd ----
  get requiresGrad(): boolean { return native().requiresGrad(this._h); }
  set requiresGrad(v: boolean) { native().setRequiresGrad(this._h, v); }
  /** Sets requiresGrad (on a leaf) and returns this, like PyTorch's `requires_grad_()`. */
  requiresGrad_(v = true): this { this.requiresGrad = v; return this; }
  get isLeaf(): boolean { return native().isLeaf(this._h); }
  /** The accumulated gradient (a new handle to it each access), or null. */
  get grad(): Tensor | null {
    const g = native().grad(this._h);
    return g ? new Tensor(g) : null;
  }
  set grad(g: Tensor | null) { native().setGrad(this._h, g ? g._h : null); }
  /** Back-propagates from this tensor (a scalar unless `gradient` is given). */
  backward(gradient?: Tensor | null, opts: { retainGraph?: boolean; createGraph?: boolean } = {}): void {
    native().backward(this._h, gradient ? gradient._h : null, opts.retainGraph ?? false, opts.createGraph ?? false);
  }
  detach(): Tensor { return c1('detach', this); }

  // ---- data out ----
  /** The single value of a one-element tensor. */
  item(): number {
    return native().item(this._h) as number;
  }
  /** A copy of the data as a TypedArray (bfloat16/float16 come back as Float32Array). */
  toTypedArray(): Float32Array | Float64Array | BigInt64Array | Int32Array | Int16Array | Int8Array | Uint8Array {
    const d = this.dtype;
    if (d === 'bfloat16' || d === 'float16') {
      const f = this.to({ dtype: 'float32' });
      try { return f.toTypedArray(); } finally { f.dispose(); }
    }
    const buf = native().toBuffer(this._h);
    switch (d) {
      case 'float32': return new Float32Array(buf);
      case 'float64': return new Float64Array(buf);
      case 'int64': return new BigInt64Array(buf);
      case 'int32': return new Int32Array(buf);
      case 'int16': return new Int16Array(buf);
      case 'int8': return new Int8Array(buf);
      default: return new Uint8Array(buf); // uint8, bool
    }
  }
  /** A copy of the data as nested JS arrays (int64 as numbers, bool as booleans). */
  toArray(): NestedArray {
    const flat = this.toTypedArray();
    const isBool = this.dtype === 'bool';
    const get = flat instanceof BigInt64Array ? (i: number) => Number(flat[i]) : isBool ? (i: number) => flat[i] !== 0 : (i: number) => flat[i] as number;
    const shape = this.shape;
    if (shape.length === 0) return get(0);
    let pos = 0;
    const build = (d: number): NestedArray[] => {
      const out: NestedArray[] = new Array(shape[d]);
      for (let i = 0; i < shape[d]; i++) out[i] = d === shape.length - 1 ? get(pos++) : build(d + 1);
      return out;
    };
    return build(0);
  }
  toString(): string {
    if (this.isDisposed) return 'Tensor(disposed)';
    const body = this.numel <= 64 ? JSON.stringify(this.toArray()) : `[${this.shape.join(', ')}]`;
    return `Tensor(${body}, dtype=${this.dtype}, device=${this.device}${this.requiresGrad ? ', requiresGrad' : ''})`;
  }
  [Symbol.for('nodejs.util.inspect.custom')](): string { return this.toString(); }

  // ---- conversion ----
  /** Converts dtype and/or device: `to('float64')`, `to('cuda')`, `to({ dtype, device })`. */
  to(target: DType | Device | ToOptions): Tensor {
    const o: ToOptions = typeof target === 'string' ? (isDeviceName(target) ? { device: target } : { dtype: target as DType }) : target;
    const dt = o.dtype === undefined ? undefined : dtypeCode(o.dtype, 'to');
    const dev = o.device === undefined ? undefined : checkDevice(o.device, 'to');
    return w(native().call(ops().to, this._h, dt, undefined, dev, undefined, false, o.copy ?? false));
  }
  float(): Tensor { return this.to('float32'); }
  double(): Tensor { return this.to('float64'); }
  long(): Tensor { return this.to('int64'); }
  bool(): Tensor { return this.to('bool'); }
  clone(): Tensor { return c1('clone', this); }
  contiguous(): Tensor { return c1('contiguous', this); }
  get isFloatingPoint(): boolean { return isFloating(this.dtype); }

  // ---- arithmetic (broadcasting; scalars allowed) ----
  add(other: TensorLike, alpha: number = 1): Tensor { return bin('add', 'addS', this, other, alpha); }
  sub(other: TensorLike, alpha: number = 1): Tensor { return bin('sub', 'subS', this, other, alpha); }
  /** `other - this`. */
  rsub(other: Scalar): Tensor { return w(native().call(ops().rsubS, this._h, other)); }
  mul(other: TensorLike): Tensor { return bin('mul', 'mulS', this, other); }
  div(other: TensorLike): Tensor { return bin('div', 'divS', this, other); }
  pow(exponent: TensorLike): Tensor { return bin('pow', 'powS', this, exponent); }
  remainder(other: Scalar): Tensor { return w(native().call(ops().remainderS, this._h, other)); }
  neg(): Tensor { return c1('neg', this); }
  abs(): Tensor { return c1('abs', this); }
  sqrt(): Tensor { return c1('sqrt', this); }
  rsqrt(): Tensor { return c1('rsqrt', this); }
  square(): Tensor { return c1('square', this); }
  reciprocal(): Tensor { return c1('reciprocal', this); }
  exp(): Tensor { return c1('exp', this); }
  log(): Tensor { return c1('log', this); }
  log1p(): Tensor { return c1('log1p', this); }
  expm1(): Tensor { return c1('expm1', this); }
  sin(): Tensor { return c1('sin', this); }
  cos(): Tensor { return c1('cos', this); }
  erf(): Tensor { return c1('erf', this); }
  sign(): Tensor { return c1('sign', this); }
  floor(): Tensor { return c1('floor', this); }
  ceil(): Tensor { return c1('ceil', this); }
  round(): Tensor { return c1('round', this); }
  tanh(): Tensor { return c1('tanh', this); }
  sigmoid(): Tensor { return c1('sigmoid', this); }
  logSigmoid(): Tensor { return c1('logsigmoid', this); }
  relu(): Tensor { return c1('relu', this); }
  silu(): Tensor { return c1('silu', this); }
  gelu(opts: { approximate?: 'none' | 'tanh' } = {}): Tensor {
    return w(native().call(ops().gelu, this._h, opts.approximate ?? 'none'));
  }
  clamp(min?: number | null, max?: number | null): Tensor { return w(native().call(ops().clamp, this._h, min ?? null, max ?? null)); }
  maximum(other: Tensor): Tensor { return w(native().call(ops().maximum, this._h, other._h)); }
  minimum(other: Tensor): Tensor { return w(native().call(ops().minimum, this._h, other._h)); }
  nanToNum(opts: { nan?: number; posinf?: number; neginf?: number } = {}): Tensor {
    return w(native().call(ops().nanToNum, this._h, opts.nan ?? null, opts.posinf ?? null, opts.neginf ?? null));
  }

  // ---- comparisons and logic ----
  eq(other: TensorLike): Tensor { return bin('eq', 'eqS', this, other); }
  ne(other: TensorLike): Tensor { return bin('ne', 'neS', this, other); }
  lt(other: TensorLike): Tensor { return bin('lt', 'ltS', this, other); }
  le(other: TensorLike): Tensor { return bin('le', 'leS', this, other); }
  gt(other: TensorLike): Tensor { return bin('gt', 'gtS', this, other); }
  ge(other: TensorLike): Tensor { return bin('ge', 'geS', this, other); }
  logicalNot(): Tensor { return c1('logicalNot', this); }
  logicalAnd(other: Tensor): Tensor { return w(native().call(ops().logicalAnd, this._h, other._h)); }
  logicalOr(other: Tensor): Tensor { return w(native().call(ops().logicalOr, this._h, other._h)); }
  isnan(): Tensor { return c1('isnan', this); }
  isfinite(): Tensor { return c1('isfinite', this); }
  /** Replaces elements where `mask` is true with `value`. */
  maskedFill(mask: Tensor, value: TensorLike): Tensor {
    return value instanceof Tensor
      ? w(native().call(ops().maskedFillT, this._h, mask._h, value._h))
      : w(native().call(ops().maskedFill, this._h, mask._h, value));
  }

  // ---- linear algebra ----
  matmul(other: Tensor): Tensor { return w(native().call(ops().matmul, this._h, handleOf(other, 'matmul', 'other'))); }

  // ---- reductions ----
  sum(dim?: number | number[] | null, opts: { keepdim?: boolean; dtype?: DType } = {}): Tensor {
    const dt = opts.dtype === undefined ? null : dtypeCode(opts.dtype, 'sum');
    return dim === undefined || dim === null
      ? w(native().call(ops().sum, this._h, dt))
      : w(native().call(ops().sumDim, this._h, dim, opts.keepdim ?? false, dt));
  }
  mean(dim?: number | number[] | null, opts: { keepdim?: boolean; dtype?: DType } = {}): Tensor {
    const dt = opts.dtype === undefined ? null : dtypeCode(opts.dtype, 'mean');
    return dim === undefined || dim === null
      ? w(native().call(ops().mean, this._h, dt))
      : w(native().call(ops().meanDim, this._h, dim, opts.keepdim ?? false, dt));
  }
  /** Max of all elements; with `dim`, `{ values, indices }` like PyTorch's `max(dim)`. */
  max(): Tensor;
  max(dim: number, opts?: { keepdim?: boolean }): { values: Tensor; indices: Tensor };
  max(dim?: number, opts: { keepdim?: boolean } = {}): Tensor | { values: Tensor; indices: Tensor } {
    if (dim === undefined) return c1('max', this);
    const [v, i] = native().call(ops().maxDim, this._h, dim, opts.keepdim ?? false);
    return { values: w(v), indices: w(i) };
  }
  min(): Tensor;
  min(dim: number, opts?: { keepdim?: boolean }): { values: Tensor; indices: Tensor };
  min(dim?: number, opts: { keepdim?: boolean } = {}): Tensor | { values: Tensor; indices: Tensor } {
    if (dim === undefined) return c1('min', this);
    const [v, i] = native().call(ops().minDim, this._h, dim, opts.keepdim ?? false);
    return { values: w(v), indices: w(i) };
  }
  amax(dim: number | number[], opts: { keepdim?: boolean } = {}): Tensor { return w(native().call(ops().amax, this._h, dim, opts.keepdim ?? false)); }
  amin(dim: number | number[], opts: { keepdim?: boolean } = {}): Tensor { return w(native().call(ops().amin, this._h, dim, opts.keepdim ?? false)); }
  logsumexp(dim: number | number[], opts: { keepdim?: boolean } = {}): Tensor {
    return w(native().call(ops().logsumexp, this._h, dim, opts.keepdim ?? false));
  }
  argmax(dim?: number | null, opts: { keepdim?: boolean } = {}): Tensor { return w(native().call(ops().argmax, this._h, dim ?? null, opts.keepdim ?? false)); }
  argmin(dim?: number | null, opts: { keepdim?: boolean } = {}): Tensor { return w(native().call(ops().argmin, this._h, dim ?? null, opts.keepdim ?? false)); }
  /** Variance with Bessel's correction by default (`correction: 1`), like PyTorch. */
  var(dim?: number | number[] | null, opts: { correction?: number; keepdim?: boolean } = {}): Tensor {
    return w(native().call(ops().var, this._h, dim ?? null, opts.correction ?? 1, opts.keepdim ?? false));
  }
  std(dim?: number | number[] | null, opts: { correction?: number; keepdim?: boolean } = {}): Tensor {
    return w(native().call(ops().std, this._h, dim ?? null, opts.correction ?? 1, opts.keepdim ?? false));
  }
  /** Vector p-norm over `dim` (all elements by default). */
  norm(ord = 2, dim?: number | number[] | null, opts: { keepdim?: boolean } = {}): Tensor {
    return w(native().call(ops().norm, this._h, ord, dim ?? null, opts.keepdim ?? false));
  }
  prod(): Tensor { return c1('prod', this); }
  all(): Tensor { return c1('all', this); }
  any(): Tensor { return c1('any', this); }
  cumsum(dim: number, opts: { dtype?: DType } = {}): Tensor {
    return w(native().call(ops().cumsum, this._h, dim, opts.dtype === undefined ? null : dtypeCode(opts.dtype, 'cumsum')));
  }
  softmax(dim: number): Tensor { return w(native().call(ops().softmax, this._h, dim, null)); }
  logSoftmax(dim: number): Tensor { return w(native().call(ops().logSoftmax, this._h, dim, null)); }
  topk(k: number, dim = -1, opts: { largest?: boolean; sorted?: boolean } = {}): { values: Tensor; indices: Tensor } {
    const [v, i] = native().call(ops().topk, this._h, k, dim, opts.largest ?? true, opts.sorted ?? true);
    return { values: w(v), indices: w(i) };
  }
  sort(dim = -1, opts: { descending?: boolean } = {}): { values: Tensor; indices: Tensor } {
    const [v, i] = native().call(ops().sort, this._h, dim, opts.descending ?? false);
    return { values: w(v), indices: w(i) };
  }

  // ---- shape and indexing ----
  reshape(...shape: number[] | [number[]]): Tensor { return w(native().call(ops().reshape, this._h, flatShape(shape))); }
  view(...shape: number[] | [number[]]): Tensor { return w(native().call(ops().view, this._h, flatShape(shape))); }
  permute(...dims: number[] | [number[]]): Tensor { return w(native().call(ops().permute, this._h, flatShape(dims))); }
  transpose(dim0: number, dim1: number): Tensor { return w(native().call(ops().transpose, this._h, dim0, dim1)); }
  /** 2-D transpose. */
  t(): Tensor { return this.transpose(0, 1); }
  squeeze(dim?: number): Tensor {
    return dim === undefined ? c1('squeeze', this) : w(native().call(ops().squeezeDim, this._h, dim));
  }
  unsqueeze(dim: number): Tensor { return w(native().call(ops().unsqueeze, this._h, dim)); }
  expand(...shape: number[] | [number[]]): Tensor { return w(native().call(ops().expand, this._h, flatShape(shape), false)); }
  flatten(startDim = 0, endDim = -1): Tensor { return w(native().call(ops().flatten, this._h, startDim, endDim)); }
  repeat(...repeats: number[] | [number[]]): Tensor { return w(native().call(ops().repeat, this._h, flatShape(repeats))); }
  chunk(chunks: number, dim = 0): Tensor[] { return (native().call(ops().chunk, this._h, chunks, dim) as Handle[]).map(w); }
  split(splitSize: number, dim = 0): Tensor[] { return (native().call(ops().split, this._h, splitSize, dim) as Handle[]).map(w); }
  /** Elements `start:end:step` along `dim` (a view), like Python's slicing. */
  slice(dim: number, start?: number | null, end?: number | null, step = 1): Tensor {
    return w(native().call(ops().slice, this._h, dim, start ?? null, end ?? null, step));
  }
  narrow(dim: number, start: number, length: number): Tensor { return w(native().call(ops().narrow, this._h, dim, start, length)); }
  /** The `index`-th slice along `dim`, removing that dim (PyTorch's `select`). */
  select(dim: number, index: number): Tensor { return w(native().call(ops().select, this._h, dim, index)); }
  indexSelect(dim: number, index: Tensor): Tensor { return w(native().call(ops().indexSelect, this._h, dim, handleOf(index, 'indexSelect', 'index'))); }
  gather(dim: number, index: Tensor): Tensor { return w(native().call(ops().gather, this._h, dim, handleOf(index, 'gather', 'index'), false)); }
  scatter(dim: number, index: Tensor, src: TensorLike): Tensor {
    return src instanceof Tensor
      ? w(native().call(ops().scatter, this._h, dim, index._h, src._h))
      : w(native().call(ops().scatterV, this._h, dim, index._h, src));
  }
  scatterAdd(dim: number, index: Tensor, src: Tensor): Tensor { return w(native().call(ops().scatterAdd, this._h, dim, index._h, src._h)); }
  /** Advanced indexing `x[i0, i1, …]` with index tensors (null = the whole dim). */
  index(indices: (Tensor | null)[]): Tensor { return w(native().call(ops().index, this._h, indices.map((t) => (t ? t._h : null)))); }
  triu(diagonal = 0): Tensor { return w(native().call(ops().triu, this._h, diagonal)); }
  tril(diagonal = 0): Tensor { return w(native().call(ops().tril, this._h, diagonal)); }

  // ---- in place (return this) ----
  copy_(src: Tensor): this { native().call(ops().copy_, this._h, handleOf(src, 'copy_', 'src'), false); return this; }
  fill_(value: Scalar): this { native().call(ops().fill_, this._h, value); return this; }
  zero_(): this { native().call(ops().zero_, this._h); return this; }
  add_(other: Tensor, alpha: number = 1): this { native().call(ops().add_, this._h, other._h, alpha); return this; }
  sub_(other: Tensor, alpha: number = 1): this { native().call(ops().sub_, this._h, other._h, alpha); return this; }
  mul_(other: TensorLike): this {
    if (other instanceof Tensor) native().call(ops().mul_, this._h, other._h);
    else native().call(ops().mul_S, this._h, other);
    return this;
  }
}

const isDeviceName = (s: string) => s === 'cpu' || s.startsWith('cuda');

/** @internal wraps a native handle. */
export function w(h: Handle): Tensor {
  return new Tensor(h);
}

function c1(op: 'detach' | 'clone' | 'contiguous' | 'neg' | 'abs' | 'sqrt' | 'rsqrt' | 'square' | 'reciprocal' | 'exp' | 'log' | 'log1p' | 'expm1' | 'sin' | 'cos' | 'erf' | 'sign' | 'floor' | 'ceil' | 'round' | 'tanh' | 'sigmoid' | 'logsigmoid' | 'relu' | 'silu' | 'logicalNot' | 'isnan' | 'isfinite' | 'max' | 'min' | 'prod' | 'all' | 'any' | 'squeeze', t: Tensor): Tensor {
  return w(native().call(ops()[op], t._h));
}

type BinOp = 'add' | 'sub' | 'mul' | 'div' | 'pow' | 'eq' | 'ne' | 'lt' | 'le' | 'gt' | 'ge';
function bin(op: BinOp, opS: `${BinOp}S`, a: Tensor, b: TensorLike, alpha?: number): Tensor {
  const o = ops();
  if (b instanceof Tensor) return w(alpha === undefined ? native().call(o[op], a._h, b._h) : native().call(o[op], a._h, b._h, alpha));
  if (typeof b !== 'number' && typeof b !== 'boolean') {
    throw new TypeError(`${op}: argument 'other' must be a Tensor, a number or a boolean, got ${describe(b)}`);
  }
  return w(alpha === undefined ? native().call(o[opS], a._h, b) : native().call(o[opS], a._h, b, alpha));
}

/** @internal the native handle of a Tensor argument, or a TypeError naming the op and argument. */
export function handleOf(t: unknown, op: string, arg: string): Handle {
  if (t instanceof Tensor) return t._h;
  throw new TypeError(`${op}: argument '${arg}' must be a Tensor, got ${describe(t)}`);
}

export function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') return `an object (${(v as object).constructor?.name ?? 'Object'})`;
  return `${typeof v === 'undefined' ? 'undefined' : `a ${typeof v}`}`;
}

function flatShape(args: number[] | [number[]]): number[] {
  return Array.isArray(args[0]) ? (args[0] as number[]) : (args as number[]);
}
