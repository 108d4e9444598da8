// The tensor layer's public surface.
export { Tensor, type Scalar, type Shape, type TensorLike, type NestedArray, type ToOptions } from './tensor.js';
export * from './create.js';
export * from './autograd.js';
export { tidy, keep, scopeDepth } from './scope.js';
export { type DType, type Device, DTYPES, FLOAT_DTYPES, ITEMSIZE, isFloating } from './dtype.js';
