// linear_token_logprobs CUDA: the same chunked algorithm as cpu.cpp (see linear_token_logprobs.h,
// ALGORITHMS.md §1b). The chunk driver in cpu.cpp issues the GEMMs through at:: (cuBLAS on the current
// stream); this file supplies the per-row passes: one block per row of the [chunk, V] buffer, fp32
// accumulation (fp64 for fp64), block reductions for max, Σe^{z−m}, Σe^{z−m}(z−m); 64-bit offsets.
#include "linear_token_logprobs/linear_token_logprobs.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <limits>

namespace llmrl::linear_token_logprobs {
namespace {

constexpr int kThreads = 512;  // 16 warps per row; V is large (tens of thousands) in practice

struct MaxOp {
  template <typename T>
  __device__ T operator()(T a, T b) const { return a > b ? a : b; }
};
struct SumOp {
  template <typename T>
  __device__ T operator()(T a, T b) const { return a + b; }
};

// Block-wide reduction (blockDim.x a multiple of 32); every thread gets the result. `shared` holds one
// value per warp; `identity` fills the lanes of the last step that have no warp.
template <typename T, typename Op>
__device__ T block_reduce(T x, Op op, T identity, T* shared) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  for (int off = 16; off > 0; off /= 2) x = op(x, __shfl_down_sync(0xffffffffu, x, off));
  __syncthreads();  // `shared` may still be read from a previous reduction
  if (lane == 0) shared[warp] = x;
  __syncthreads();
  if (warp == 0) {
    x = lane < int(blockDim.x / 32) ? shared[lane] : identity;
    for (int off = 16; off > 0; off /= 2) x = op(x, __shfl_down_sync(0xffffffffu, x, off));
    if (lane == 0) shared[0] = x;
  }
  __syncthreads();
  return shared[0];
}

// One block per row of buf [rows, V]: logZ, logp and (optionally) H for global row row0 + blockIdx.x.
template <typename scalar_t>
__global__ void forward_rows_kernel(const scalar_t* __restrict__ buf, const int64_t* __restrict__ tg, int64_t v,
                                    at::opmath_type<scalar_t> inv_tau, at::opmath_type<scalar_t>* __restrict__ logp,
                                    at::opmath_type<scalar_t>* __restrict__ ent,
                                    at::opmath_type<scalar_t>* __restrict__ logz) {
  using acc = at::opmath_type<scalar_t>;
  __shared__ acc shared[kThreads / 32];
  const int64_t r = blockIdx.x;
  const scalar_t* z = buf + r * v;
  acc m = -std::numeric_limits<acc>::infinity();
  for (int64_t i = threadIdx.x; i < v; i += blockDim.x) m = MaxOp()(m, acc(z[i]));
  m = block_reduce(m, MaxOp(), -std::numeric_limits<acc>::infinity(), shared) * inv_tau;
  acc s = 0, e = 0;
  for (int64_t i = threadIdx.x; i < v; i += blockDim.x) {
    const acc d = acc(z[i]) * inv_tau - m, p = ::exp(d);
    s += p;
    if (ent) e += p * (d > acc(kLogFloor) ? d : acc(kLogFloor));
  }
  s = block_reduce(s, SumOp(), acc(0), shared);
  if (ent) e = block_reduce(e, SumOp(), acc(0), shared);  // ent is uniform over the block
  if (threadIdx.x == 0) {
    acc lz, lp, h;
    finish_row<acc>(m, s, e, acc(z[tg[r]]) * inv_tau, &lz, &lp, &h);
    logp[r] = lp;
    logz[r] = lz;
    if (ent) ent[r] = h;
  }
}

// One block per row: overwrites the raw logits with dZ = ∂L/∂logits (see grad_logit).
template <typename scalar_t>
__global__ void backward_rows_kernel(scalar_t* __restrict__ buf, const int64_t* __restrict__ tg, int64_t v,
                                     at::opmath_type<scalar_t> inv_tau, const at::opmath_type<scalar_t>* __restrict__ logz,
                                     const at::opmath_type<scalar_t>* __restrict__ ent,
                                     const at::opmath_type<scalar_t>* __restrict__ g,
                                     const at::opmath_type<scalar_t>* __restrict__ gh) {
  using acc = at::opmath_type<scalar_t>;
  const int64_t r = blockIdx.x;
  scalar_t* z = buf + r * v;
  const acc gr = g ? g[r] : acc(0), ghr = gh ? gh[r] : acc(0);
  const acc a = gr + (gh ? ghr * ent[r] : acc(0));
  const acc lz = logz[r];
  const int64_t t = tg[r];
  for (int64_t i = threadIdx.x; i < v; i += blockDim.x) {
    const acc d = acc(z[i]) * inv_tau - lz;
    acc grad = grad_logit<acc>(d, ::exp(d), a, ghr, inv_tau);
    if (i == t) grad += gr * inv_tau;
    z[i] = static_cast<scalar_t>(grad);
  }
}

template <typename T>
T* ptr_or_null(const at::Tensor& t, int64_t off) {
  return t.defined() ? t.data_ptr<T>() + off : nullptr;
}

void forward_rows_cuda(const at::Tensor& buf, const at::Tensor& targets, int64_t row0, double inv_tau,
                       const at::Tensor& logp, const at::Tensor& ent, const at::Tensor& logz) {
  const int64_t rows = buf.size(0), v = buf.size(1);
  if (rows == 0) return;
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, buf.scalar_type(), "linear_token_logprobs_cuda", [&] {
    using acc = at::opmath_type<scalar_t>;
    forward_rows_kernel<scalar_t><<<rows, kThreads, 0, stream>>>(
        buf.const_data_ptr<scalar_t>(), targets.const_data_ptr<int64_t>() + row0, v, acc(inv_tau),
        logp.data_ptr<acc>() + row0, ptr_or_null<acc>(ent, row0), logz.data_ptr<acc>() + row0);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void backward_rows_cuda(const at::Tensor& buf, const at::Tensor& targets, int64_t row0, double inv_tau,
                        const at::Tensor& logz, const at::Tensor& ent, const at::Tensor& g, const at::Tensor& gh) {
  const int64_t rows = buf.size(0), v = buf.size(1);
  if (rows == 0) return;
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, buf.scalar_type(), "linear_token_logprobs_backward_cuda", [&] {
    using acc = at::opmath_type<scalar_t>;
    backward_rows_kernel<scalar_t><<<rows, kThreads, 0, stream>>>(
        buf.data_ptr<scalar_t>(), targets.const_data_ptr<int64_t>() + row0, v, acc(inv_tau),
        logz.const_data_ptr<acc>() + row0, gh.defined() ? ent.const_data_ptr<acc>() + row0 : nullptr,
        g.defined() ? g.const_data_ptr<acc>() + row0 : nullptr, gh.defined() ? gh.const_data_ptr<acc>() + row0 : nullptr);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

std::tuple<at::Tensor, at::Tensor> ltl_cuda(const at::Tensor& hidden, const at::Tensor& weight,
                                            const at::Tensor& targets, const std::optional<at::Tensor>& bias,
                                            double temperature, int64_t chunk_size, bool with_entropy) {
  c10::cuda::CUDAGuard device_guard(hidden.device());
  auto [lp, ent, logz] = forward_driver(hidden, weight, targets, bias, temperature, chunk_size, with_entropy,
                                        &forward_rows_cuda);
  return {lp, ent};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ltl_forward_cuda(
    const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& targets,
    const std::optional<at::Tensor>& bias, double temperature, int64_t chunk_size, bool with_entropy) {
  c10::cuda::CUDAGuard device_guard(hidden.device());
  return forward_driver(hidden, weight, targets, bias, temperature, chunk_size, with_entropy, &forward_rows_cuda);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ltl_backward_cuda(
    const std::optional<at::Tensor>& grad_logprobs, const std::optional<at::Tensor>& grad_entropy,
    const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& targets,
    const std::optional<at::Tensor>& bias, const at::Tensor& logz, const std::optional<at::Tensor>& entropy,
    double temperature, int64_t chunk_size, std::array<bool, 3> output_mask) {
  c10::cuda::CUDAGuard device_guard(hidden.device());
  return backward_driver(grad_logprobs, grad_entropy, hidden, weight, targets, bias, logz, entropy, temperature,
                         chunk_size, output_mask, &backward_rows_cuda);
}

}  // namespace
}  // namespace llmrl::linear_token_logprobs

TORCH_LIBRARY_IMPL(llmrl, CUDA, m) {
  m.impl("linear_token_logprobs", &llmrl::linear_token_logprobs::ltl_cuda);
  m.impl("linear_token_logprobs_forward", &llmrl::linear_token_logprobs::ltl_forward_cuda);
  m.impl("linear_token_logprobs_backward", &llmrl::linear_token_logprobs::ltl_backward_cuda);
}
