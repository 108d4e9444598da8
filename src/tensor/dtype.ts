// Dtype and device names of the public API, and their mapping to libtorch's ScalarType codes.
import { native } from '../native/addon.js';

export type DType = 'float32' | 'float64' | 'bfloat16' | 'float16' | 'int64' | 'int32' | 'int16' | 'int8' | 'uint8' | 'bool';
export type Device = 'cpu' | 'cuda' | `cuda:${number}`;

export const DTYPES: readonly DType[] = ['float32', 'float64', 'bfloat16', 'float16', 'int64', 'int32', 'int16', 'int8', 'uint8', 'bool'];
export const FLOAT_DTYPES: readonly DType[] = ['float32', 'float64', 'bfloat16', 'float16'];

/** Bytes per element. */
export const ITEMSIZE: Record<DType, number> = {
  float32: 4, float64: 8, bfloat16: 2, float16: 2, int64: 8, int32: 4, int16: 2, int8: 1, uint8: 1, bool: 1,
};

let codes: Record<string, number> | null = null;
let names: Map<number, DType> | null = null;

export function dtypeCode(d: DType, what = 'dtype'): number {
  codes ??= native().dtypes;
  const c = codes[d];
  if (c === undefined) {
    throw new TypeError(`${what}: unknown dtype ${JSON.stringify(d)}; expected one of ${DTYPES.map((x) => `'${x}'`).join(', ')}`);
  }
  return c;
}

export function dtypeName(code: number): DType {
  if (!names) {
    codes ??= native().dtypes;
    names = new Map(Object.entries(codes).map(([k, v]) => [v, k as DType]));
  }
  const n = names.get(code);
  if (!n) throw new Error(`llmrl: tensor has a libtorch dtype (code ${code}) that llmrl does not expose`);
  return n;
}

export function isFloating(d: DType): boolean {
  return d === 'float32' || d === 'float64' || d === 'bfloat16' || d === 'float16';
}

export function checkDevice(d: string, what = 'device'): Device {
  if (d === 'cpu' || d === 'cuda' || /^cuda:\d+$/.test(d)) return d as Device;
  throw new TypeError(`${what}: expected 'cpu', 'cuda' or 'cuda:N', got ${JSON.stringify(d)}`);
}
