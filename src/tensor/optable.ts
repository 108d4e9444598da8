// The ATen operators the tensor layer calls, resolved once to dispatcher handles (native/binding/ops.cpp).
// One table, so a renamed or missing schema fails at the first use with the op's name.
import { native } from '../native/addon.js';

const SPECS = {
  add: 'aten::add.Tensor', addS: 'aten::add.Scalar', sub: 'aten::sub.Tensor', subS: 'aten::sub.Scalar',
  rsubS: 'aten::rsub.Scalar', mul: 'aten::mul.Tensor', mulS: 'aten::mul.Scalar', div: 'aten::div.Tensor',
  divS: 'aten::div.Scalar', pow: 'aten::pow.Tensor_Tensor', powS: 'aten::pow.Tensor_Scalar',
  remainderS: 'aten::remainder.Scalar', floorDivide: 'aten::floor_divide',
  neg: 'aten::neg', abs: 'aten::abs', sqrt: 'aten::sqrt', rsqrt: 'aten::rsqrt', square: 'aten::square',
  exp: 'aten::exp', log: 'aten::log', log1p: 'aten::log1p', expm1: 'aten::expm1', tanh: 'aten::tanh',
  sigmoid: 'aten::sigmoid', relu: 'aten::relu', silu: 'aten::silu', gelu: 'aten::gelu', sin: 'aten::sin',
  cos: 'aten::cos', erf: 'aten::erf', sign: 'aten::sign', floor: 'aten::floor', ceil: 'aten::ceil', round: 'aten::round',
  reciprocal: 'aten::reciprocal', logicalNot: 'aten::logical_not', logicalAnd: 'aten::logical_and',
  logicalOr: 'aten::logical_or', isnan: 'aten::isnan', isfinite: 'aten::isfinite', logsigmoid: 'aten::log_sigmoid',
  clamp: 'aten::clamp', maximum: 'aten::maximum', minimum: 'aten::minimum', nanToNum: 'aten::nan_to_num',
  eq: 'aten::eq.Tensor', eqS: 'aten::eq.Scalar', ne: 'aten::ne.Tensor', neS: 'aten::ne.Scalar',
  lt: 'aten::lt.Tensor', ltS: 'aten::lt.Scalar', le: 'aten::le.Tensor', leS: 'aten::le.Scalar',
  gt: 'aten::gt.Tensor', gtS: 'aten::gt.Scalar', ge: 'aten::ge.Tensor', geS: 'aten::ge.Scalar',
  where: 'aten::where.self', whereSO: 'aten::where.ScalarOther', whereSS: 'aten::where.ScalarSelf',
  whereS: 'aten::where.Scalar', maskedFill: 'aten::masked_fill.Scalar', maskedFillT: 'aten::masked_fill.Tensor',
  matmul: 'aten::matmul', linear: 'aten::linear',
  sum: 'aten::sum', sumDim: 'aten::sum.dim_IntList', mean: 'aten::mean', meanDim: 'aten::mean.dim',
  max: 'aten::max', maxDim: 'aten::max.dim', min: 'aten::min', minDim: 'aten::min.dim', amax: 'aten::amax',
  amin: 'aten::amin', logsumexp: 'aten::logsumexp', argmax: 'aten::argmax', argmin: 'aten::argmin',
  var: 'aten::var.correction', std: 'aten::std.correction', norm: 'aten::linalg_vector_norm',
  all: 'aten::all', any: 'aten::any', prod: 'aten::prod',
  reshape: 'aten::reshape', view: 'aten::view', permute: 'aten::permute', transpose: 'aten::transpose.int',
  contiguous: 'aten::contiguous', slice: 'aten::slice.Tensor', narrow: 'aten::narrow', select: 'aten::select.int',
  indexSelect: 'aten::index_select', gather: 'aten::gather', scatter: 'aten::scatter.src',
  scatterV: 'aten::scatter.value', scatterAdd: 'aten::scatter_add', index: 'aten::index.Tensor',
  cat: 'aten::cat', stack: 'aten::stack', cumsum: 'aten::cumsum', topk: 'aten::topk', sort: 'aten::sort',
  softmax: 'aten::softmax.int', logSoftmax: 'aten::log_softmax.int',
  squeeze: 'aten::squeeze', squeezeDim: 'aten::squeeze.dim', unsqueeze: 'aten::unsqueeze', expand: 'aten::expand',
  flatten: 'aten::flatten.using_ints', repeat: 'aten::repeat', chunk: 'aten::chunk', split: 'aten::split.Tensor',
  triu: 'aten::triu', tril: 'aten::tril',
  embedding: 'aten::embedding', layerNorm: 'aten::layer_norm', rmsNorm: 'aten::rms_norm',
  sdpa: 'aten::scaled_dot_product_attention', dropout: 'aten::dropout',
  rand: 'aten::rand', randn: 'aten::randn', randint: 'aten::randint.low', multinomial: 'aten::multinomial',
  zeros: 'aten::zeros', ones: 'aten::ones', full: 'aten::full', empty: 'aten::empty.memory_format',
  arange: 'aten::arange.start_step', zerosLike: 'aten::zeros_like', onesLike: 'aten::ones_like',
  fullLike: 'aten::full_like', randLike: 'aten::rand_like', randnLike: 'aten::randn_like',
  to: 'aten::to.dtype_layout', clone: 'aten::clone', detach: 'aten::detach',
  copy_: 'aten::copy_', fill_: 'aten::fill_.Scalar', zero_: 'aten::zero_', add_: 'aten::add_.Tensor',
  mul_S: 'aten::mul_.Scalar', mul_: 'aten::mul_.Tensor', sub_: 'aten::sub_.Tensor',
} as const;

export type OpName = keyof typeof SPECS;
let table: Record<OpName, number> | null = null;

/** Dispatcher handles of the ops above (resolved on first use). */
export function ops(): Record<OpName, number> {
  if (table) return table;
  const n = native();
  const t = {} as Record<OpName, number>;
  for (const [k, spec] of Object.entries(SPECS)) {
    const [name, overload = ''] = spec.split(/\.(?=[^:]*$)/);
    t[k as OpName] = n.opHandle(name, overload);
  }
  return (table = t);
}
