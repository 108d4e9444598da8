// Creating tensors (from arrays, TypedArrays, shapes, RNG) and the functional ops that take several
// tensors (cat, stack, where) or a weight (embedding, norms, attention, dropout).
import { native, type Handle } from '../native/addon.js';
import { type DType, type Device, dtypeCode, checkDevice, ITEMSIZE } from './dtype.js';
import { ops } from './optable.js';
import { Tensor, w, handleOf, describe, type NestedArray, type Scalar, type TensorLike } from './tensor.js';

export interface CreateOptions {
  dtype?: DType;
  device?: Device | string;
  requiresGrad?: boolean;
}

type Typed = Float32Array | Float64Array | BigInt64Array | Int32Array | Int16Array | Int8Array | Uint8Array;

function typedDtype(a: ArrayBufferView): DType | null {
  if (a instanceof Float32Array) return 'float32';
  if (a instanceof Float64Array) return 'float64';
  if (a instanceof BigInt64Array) return 'int64';
  if (a instanceof Int32Array) return 'int32';
  if (a instanceof Int16Array) return 'int16';
  if (a instanceof Int8Array) return 'int8';
  if (a instanceof Uint8Array) return 'uint8';
  return null;
}

function flatten(data: NestedArray, shape: number[], out: (number | boolean)[], depth: number): void {
  if (Array.isArray(data)) {
    if (shape.length === depth) shape.push(data.length);
    else if (shape[depth] !== data.length) {
      throw new RangeError(`tensor: ragged nested array: expected length ${shape[depth]} at depth ${depth}, got ${data.length}`);
    }
    for (const x of data) flatten(x, shape, out, depth + 1);
    return;
  }
  if (depth !== shape.length) throw new RangeError(`tensor: ragged nested array: a number at depth ${depth} where arrays of depth ${shape.length} were seen`);
  if (typeof data !== 'number' && typeof data !== 'boolean') {
    throw new TypeError(`tensor: 'data' must hold numbers or booleans, got ${describe(data)}`);
  }
  out.push(data);
}

function finish(h: Handle | Tensor, opts: CreateOptions): Tensor {
  const t = h instanceof Tensor ? h : w(h);
  if (opts.requiresGrad) t.requiresGrad = true;
  return t;
}

/**
 * Creates a tensor from nested arrays, a number, or a TypedArray (copied).
 * Numbers default to float32 (JS cannot tell 1 from 1.0); pass `dtype` for integers or booleans.
 * TypedArrays keep their type; a flat array or TypedArray takes an explicit `shape`.
 * @example tensor([[1, 2], [3, 4]]); tensor([0, 2], { dtype: 'int64' }); tensor(new Float32Array(6), { shape: [2, 3] })
 */
export function tensor(data: NestedArray | ArrayBufferView, opts: CreateOptions & { shape?: number[] } = {}): Tensor {
  const n = native();
  const device = opts.device === undefined ? undefined : checkDevice(opts.device, 'tensor');
  if (ArrayBuffer.isView(data)) {
    const src = typedDtype(data);
    if (!src) throw new TypeError(`tensor: unsupported TypedArray ${data.constructor.name}; use Float32Array, Float64Array, BigInt64Array, Int32Array, Int16Array, Int8Array or Uint8Array`);
    const count = data.byteLength / ITEMSIZE[src];
    const shape = opts.shape ?? [count];
    checkShape(shape, count, 'tensor');
    const h = n.fromBuffer(data, shape, dtypeCode(src));
    if ((opts.dtype && opts.dtype !== src) || device) {
      const t = w(h);
      const c = t.to({ dtype: opts.dtype, device });
      t.dispose();
      return finish(c, opts);
    }
    return finish(h, opts);
  }
  const shape: number[] = [];
  const flat: (number | boolean)[] = [];
  flatten(data, shape, flat, 0);
  if (opts.shape) {
    checkShape(opts.shape, flat.length, 'tensor');
    shape.length = 0;
    shape.push(...opts.shape);
  }
  const dtype = opts.dtype ?? (flat.length && typeof flat[0] === 'boolean' ? 'bool' : 'float32');
  let buf: Typed;
  let src: DType;
  if (dtype === 'float32') { buf = Float32Array.from(flat as number[], Number); src = 'float32'; }
  else if (dtype === 'bool' || dtype === 'uint8') { buf = Uint8Array.from(flat as number[], Number); src = dtype; }
  else if (dtype === 'int32') { buf = Int32Array.from(flat as number[], Number); src = 'int32'; }
  else { buf = Float64Array.from(flat as number[], Number); src = 'float64'; } // exact for int64 up to 2^53
  const h = n.fromBuffer(buf, shape, dtypeCode(src));
  if (src === dtype && !device) return finish(h, opts);
  const t = w(h);
  const c = t.to({ dtype, device });
  t.dispose();
  return finish(c, opts);
}

function checkShape(shape: readonly number[], count: number, what: string): void {
  const numel = shape.reduce((a, b) => a * b, 1);
  if (numel !== count) throw new RangeError(`${what}: 'shape' [${shape.join(', ')}] holds ${numel} elements but the data has ${count}`);
}

/** Creates a tensor from raw little-endian bytes in the dtype's own layout (bfloat16 included). */
export function fromBytes(bytes: ArrayBufferView | ArrayBuffer, shape: number[], dtype: DType, opts: { device?: Device | string } = {}): Tensor {
  return w(native().fromBuffer(bytes, shape, dtypeCode(dtype, 'fromBytes'), opts.device));
}

/** The raw bytes of a tensor (a contiguous CPU copy), for serialisation. */
export function toBytes(t: Tensor): Uint8Array {
  return new Uint8Array(native().toBuffer(handleOf(t, 'toBytes', 'tensor')));
}

function factory(op: 'zeros' | 'ones' | 'rand' | 'randn' | 'empty', shape: number[], opts: CreateOptions): Tensor {
  const dt = dtypeCode(opts.dtype ?? 'float32', op);
  const dev = opts.device === undefined ? null : checkDevice(opts.device, op);
  return finish(native().call(ops()[op], shape, dt, null, dev, null), opts);
}

export function zeros(shape: number[], opts: CreateOptions = {}): Tensor { return factory('zeros', shape, opts); }
export function ones(shape: number[], opts: CreateOptions = {}): Tensor { return factory('ones', shape, opts); }
export function empty(shape: number[], opts: CreateOptions = {}): Tensor { return factory('empty', shape, opts); }
/** Uniform [0, 1) samples (from the generator seeded by `manualSeed`). */
export function rand(shape: number[], opts: CreateOptions = {}): Tensor { return factory('rand', shape, opts); }
/** Standard normal samples. */
export function randn(shape: number[], opts: CreateOptions = {}): Tensor { return factory('randn', shape, opts); }
export function full(shape: number[], value: Scalar, opts: CreateOptions = {}): Tensor {
  const dt = dtypeCode(opts.dtype ?? (typeof value === 'boolean' ? 'bool' : 'float32'), 'full');
  const dev = opts.device === undefined ? null : checkDevice(opts.device, 'full');
  return finish(native().call(ops().full, shape, value, dt, null, dev, null), opts);
}
/** Integers uniformly in [low, high), int64 by default (PyTorch's `randint(low, high, size)`). */
export function randint(low: number, high: number, shape: number[], opts: CreateOptions = {}): Tensor {
  const dt = dtypeCode(opts.dtype ?? 'int64', 'randint');
  const dev = opts.device === undefined ? null : checkDevice(opts.device, 'randint');
  return finish(native().call(ops().randint, low, high, shape, dt, null, dev, null), opts);
}
/** Values from `start` to `end` (exclusive) by `step`; int64 unless a dtype is given. */
export function arange(start: number, end?: number, step = 1, opts: CreateOptions = {}): Tensor {
  if (end === undefined) { end = start; start = 0; }
  const integral = Number.isInteger(start) && Number.isInteger(end) && Number.isInteger(step);
  const dt = dtypeCode(opts.dtype ?? (integral ? 'int64' : 'float32'), 'arange');
  const dev = opts.device === undefined ? null : checkDevice(opts.device, 'arange');
  return finish(native().call(ops().arange, start, end, step, dt, null, dev, null), opts);
}
function like(op: 'zerosLike' | 'onesLike' | 'randLike' | 'randnLike', t: Tensor, opts: CreateOptions): Tensor {
  const dt = opts.dtype === undefined ? null : dtypeCode(opts.dtype, op);
  const dev = opts.device === undefined ? null : checkDevice(opts.device, op);
  return finish(native().call(ops()[op], handleOf(t, op, 'input'), dt, null, dev, null, null), opts);
}
export function zerosLike(t: Tensor, opts: CreateOptions = {}): Tensor { return like('zerosLike', t, opts); }
export function onesLike(t: Tensor, opts: CreateOptions = {}): Tensor { return like('onesLike', t, opts); }
export function randLike(t: Tensor, opts: CreateOptions = {}): Tensor { return like('randLike', t, opts); }
export function randnLike(t: Tensor, opts: CreateOptions = {}): Tensor { return like('randnLike', t, opts); }
export function fullLike(t: Tensor, value: Scalar, opts: CreateOptions = {}): Tensor {
  const dt = opts.dtype === undefined ? null : dtypeCode(opts.dtype, 'fullLike');
  const dev = opts.device === undefined ? null : checkDevice(opts.device, 'fullLike');
  return finish(native().call(ops().fullLike, handleOf(t, 'fullLike', 'input'), value, dt, null, dev, null, null), opts);
}
/** Samples `numSamples` indices per row from (unnormalised) probabilities `probs` `[.., K]`. */
export function multinomial(probs: Tensor, numSamples: number, opts: { replacement?: boolean } = {}): Tensor {
  return w(native().call(ops().multinomial, handleOf(probs, 'multinomial', 'probs'), numSamples, opts.replacement ?? false));
}
/** Seeds every libtorch generator (CPU and CUDA). */
export function manualSeed(seed: number | bigint): void {
  native().manualSeed(seed);
}

/** The CPU generator's state as a uint8 tensor (for checkpoints). */
export function getRngState(): Tensor {
  return w(native().getRngState());
}
/** Restores a state from getRngState(): the random stream continues from there. */
export function setRngState(state: Tensor): void {
  native().setRngState(handleOf(state, 'setRngState', 'state'));
}

// ---- functional ops over several tensors ----
export function cat(tensors: Tensor[], dim = 0): Tensor {
  if (!Array.isArray(tensors)) throw new TypeError(`cat: 'tensors' must be an array of Tensors, got ${describe(tensors)}`);
  return w(native().call(ops().cat, tensors.map((t, i) => handleOf(t, 'cat', `tensors[${i}]`)), dim));
}
export function stack(tensors: Tensor[], dim = 0): Tensor {
  if (!Array.isArray(tensors)) throw new TypeError(`stack: 'tensors' must be an array of Tensors, got ${describe(tensors)}`);
  return w(native().call(ops().stack, tensors.map((t, i) => handleOf(t, 'stack', `tensors[${i}]`)), dim));
}
/** Elementwise `condition ? input : other` (broadcasting; scalars allowed). */
export function where(condition: Tensor, input: TensorLike, other: TensorLike): Tensor {
  const c = handleOf(condition, 'where', 'condition');
  const o = ops();
  if (input instanceof Tensor && other instanceof Tensor) return w(native().call(o.where, c, input._h, other._h));
  if (input instanceof Tensor) return w(native().call(o.whereSO, c, input._h, other));
  if (other instanceof Tensor) return w(native().call(o.whereSS, c, input, other._h));
  return w(native().call(o.whereS, c, input, other));
}
/** `input · weightᵀ + bias`: input `[.., in]`, weight `[out, in]`. */
export function linear(input: Tensor, weight: Tensor, bias?: Tensor | null): Tensor {
  return w(native().call(ops().linear, handleOf(input, 'linear', 'input'), handleOf(weight, 'linear', 'weight'), bias ? bias._h : null));
}
/** Rows of `weight` `[V, H]` picked by integer `indices`. */
export function embedding(weight: Tensor, indices: Tensor, opts: { paddingIdx?: number } = {}): Tensor {
  return w(native().call(ops().embedding, handleOf(weight, 'embedding', 'weight'), handleOf(indices, 'embedding', 'indices'), opts.paddingIdx ?? -1, false, false));
}
export function layerNorm(input: Tensor, normalizedShape: number[], opts: { weight?: Tensor | null; bias?: Tensor | null; eps?: number } = {}): Tensor {
  return w(native().call(ops().layerNorm, handleOf(input, 'layerNorm', 'input'), normalizedShape, opts.weight?._h ?? null, opts.bias?._h ?? null, opts.eps ?? 1e-5, true));
}
/** RMSNorm: `x / sqrt(mean(x²) + eps) · weight` over the trailing `normalizedShape` dims. */
export function rmsNorm(input: Tensor, normalizedShape: number[], opts: { weight?: Tensor | null; eps?: number } = {}): Tensor {
  return w(native().call(ops().rmsNorm, handleOf(input, 'rmsNorm', 'input'), normalizedShape, opts.weight?._h ?? null, opts.eps ?? null));
}
export interface AttentionOptions {
  /** Boolean (true = attend) or additive float mask, broadcastable to `[B, heads, Tq, Tk]`. */
  attnMask?: Tensor | null;
  dropoutP?: number;
  isCausal?: boolean;
  scale?: number | null;
  /** Grouped-query attention: key/value have fewer heads than query. */
  enableGqa?: boolean;
}
/** softmax(q·kᵀ·scale + mask)·v for q `[B, H, Tq, D]`, k, v `[B, Hkv, Tk, D]`. */
export function scaledDotProductAttention(query: Tensor, key: Tensor, value: Tensor, opts: AttentionOptions = {}): Tensor {
  return w(native().call(ops().sdpa, handleOf(query, 'scaledDotProductAttention', 'query'), handleOf(key, 'scaledDotProductAttention', 'key'),
    handleOf(value, 'scaledDotProductAttention', 'value'), opts.attnMask?._h ?? null, opts.dropoutP ?? 0, opts.isCausal ?? false,
    opts.scale ?? null, opts.enableGqa ?? false));
}
export function dropout(input: Tensor, p = 0.5, train = true): Tensor {
  if (!(p >= 0 && p <= 1)) throw new RangeError(`dropout: 'p' must be in [0, 1], got ${p}`);
  return w(native().call(ops().dropout, handleOf(input, 'dropout', 'input'), p, train));
}
export function softmax(input: Tensor, dim: number): Tensor { return handleCheck(input, 'softmax').softmax(dim); }
export function logSoftmax(input: Tensor, dim: number): Tensor { return handleCheck(input, 'logSoftmax').logSoftmax(dim); }

function handleCheck(t: Tensor, op: string): Tensor {
  handleOf(t, op, 'input');
  return t;
}
