// bradley_terry_loss CUDA kernels: same contract as cpu.cpp (see bradley_terry_loss.h, ALGORITHMS.md §8).
// Forward: grid-stride pass → per-block float64 partials of (loss, 1[r_c > r_r], r_c − r_r); a one-block
// finalize kernel combines them in block order into the three 0-dim outputs (any B, no host sync,
// deterministic). Backward: one elementwise pass reading the scalar grad from the device.
// Current stream, 64-bit offsets, fp32 per-pair math (fp64 for fp64 inputs).
#include "bradley_terry_loss/bradley_terry_loss.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>

namespace llmrl::bradley_terry_loss {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 1024;

// Block-wide sum of kSums doubles per thread into every thread's v (blockDim.x == kThreads).
__device__ inline void block_sum(double (&v)[kSums]) {
  __shared__ double sh[kSums][kThreads];
  for (int k = 0; k < kSums; ++k) sh[k][threadIdx.x] = v[k];
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s)
      for (int k = 0; k < kSums; ++k) sh[k][threadIdx.x] += sh[k][threadIdx.x + s];
    __syncthreads();
  }
  for (int k = 0; k < kSums; ++k) v[k] = sh[k][0];
  __syncthreads();
}

template <typename scalar_t>
__global__ void forward_kernel(const scalar_t* __restrict__ c, const scalar_t* __restrict__ r,
                               const at::opmath_type<scalar_t>* __restrict__ m, int64_t n, double center_coef,
                               double* __restrict__ part) {
  using acc = at::opmath_type<scalar_t>;
  const acc center = static_cast<acc>(center_coef);
  double s[kSums] = {0, 0, 0};
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const acc rc = acc(c[i]), rr = acc(r[i]);
    acc l, dc, dr;
    pair<acc, true>(rc, rr, m ? m[i] : acc(0), center, &l, &dc, &dr);
    s[0] += double(l);
    s[1] += rc > rr ? 1.0 : 0.0;
    s[2] += double(rc - rr);
  }
  block_sum(s);
  if (threadIdx.x == 0)
    for (int k = 0; k < kSums; ++k) part[kSums * blockIdx.x + k] = s[k];
}

template <typename out_t>
__global__ void finalize_kernel(const double* __restrict__ part, int64_t blocks, int64_t n, out_t* o0, out_t* o1,
                                out_t* o2) {
  double s[kSums] = {0, 0, 0};
  for (int64_t j = threadIdx.x; j < blocks; j += blockDim.x)
    for (int k = 0; k < kSums; ++k) s[k] += part[kSums * j + k];
  block_sum(s);
  if (threadIdx.x == 0) {
    const double inv = n > 0 ? 1.0 / double(n) : 0.0;  // B == 0 → every output 0
    *o0 = out_t(s[0] * inv);
    *o1 = out_t(s[1] * inv);
    *o2 = out_t(s[2] * inv);
  }
}

template <typename scalar_t>
__global__ void backward_kernel(const at::opmath_type<scalar_t>* __restrict__ grad, const scalar_t* __restrict__ c,
                                const scalar_t* __restrict__ r, const at::opmath_type<scalar_t>* __restrict__ m,
                                int64_t n, double center_coef, scalar_t* __restrict__ gc, scalar_t* __restrict__ gr) {
  using acc = at::opmath_type<scalar_t>;
  const acc center = static_cast<acc>(center_coef);
  const acc g = grad[0] / static_cast<acc>(n);  // ∂mean/∂loss_b = 1/B
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    acc l, dc, dr;
    pair<acc, false>(acc(c[i]), acc(r[i]), m ? m[i] : acc(0), center, &l, &dc, &dr);
    gc[i] = static_cast<scalar_t>(g * dc);
    gr[i] = static_cast<scalar_t>(g * dr);
  }
}

Outputs bradley_terry_loss_cuda(const at::Tensor& chosen, const at::Tensor& rejected,
                                const std::optional<at::Tensor>& margin, double center_coef) {
  c10::cuda::CUDAGuard device_guard(chosen.device());
  const Inputs in = check_inputs(chosen, rejected, margin, center_coef);
  const int64_t n = in.chosen.numel();
  const auto opts = in.chosen.options().dtype(in.acc_dtype);
  at::Tensor o0 = at::empty({}, opts), o1 = at::empty({}, opts), o2 = at::empty({}, opts);
  const int64_t blocks = std::max<int64_t>(1, std::min<int64_t>((n + kThreads - 1) / kThreads, kMaxBlocks));
  at::Tensor part = at::empty({blocks * kSums}, in.chosen.options().dtype(at::kDouble));
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, in.chosen.scalar_type(), "bradley_terry_loss_cuda", [&] {
    using acc = at::opmath_type<scalar_t>;
    forward_kernel<scalar_t><<<blocks, kThreads, 0, stream>>>(
        in.chosen.const_data_ptr<scalar_t>(), in.rejected.const_data_ptr<scalar_t>(),
        in.margin.defined() ? in.margin.const_data_ptr<acc>() : nullptr, n, center_coef,
        part.mutable_data_ptr<double>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    finalize_kernel<acc><<<1, kThreads, 0, stream>>>(part.const_data_ptr<double>(), blocks, n,
                                                      o0.mutable_data_ptr<acc>(), o1.mutable_data_ptr<acc>(),
                                                      o2.mutable_data_ptr<acc>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {o0, o1, o2};
}

std::tuple<at::Tensor, at::Tensor> bradley_terry_loss_backward_cuda(const at::Tensor& grad, const at::Tensor& chosen,
                                                                    const at::Tensor& rejected,
                                                                    const std::optional<at::Tensor>& margin,
                                                                    double center_coef) {
  c10::cuda::CUDAGuard device_guard(chosen.device());
  const Inputs in = check_inputs(chosen, rejected, margin, center_coef);
  TORCH_CHECK(grad.numel() == 1,
              "bradley_terry_loss_backward: 'grad' must have one element (the loss is a scalar), got ", grad.sizes());
  TORCH_CHECK(grad.device() == in.chosen.device(), "bradley_terry_loss_backward: 'grad' must be on ",
              in.chosen.device(), ", got ", grad.device());
  const int64_t n = in.chosen.numel();
  at::Tensor gc = at::empty_like(in.chosen), gr = at::empty_like(in.rejected);
  if (n == 0) return {gc, gr};
  const at::Tensor g = grad.reshape({1}).to(in.acc_dtype).contiguous();
  const int64_t blocks = std::min<int64_t>((n + kThreads - 1) / kThreads, 65535);
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, in.chosen.scalar_type(), "bradley_terry_loss_backward_cuda", [&] {
    using acc = at::opmath_type<scalar_t>;
    backward_kernel<scalar_t><<<blocks, kThreads, 0, stream>>>(
        g.const_data_ptr<acc>(), in.chosen.const_data_ptr<scalar_t>(), in.rejected.const_data_ptr<scalar_t>(),
        in.margin.defined() ? in.margin.const_data_ptr<acc>() : nullptr, n, center_coef,
        gc.mutable_data_ptr<scalar_t>(), gr.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {gc, gr};
}

}  // namespace
}  // namespace llmrl::bradley_terry_loss

TORCH_LIBRARY_IMPL(llmrl, CUDA, m) {
  m.impl("bradley_terry_loss", &llmrl::bradley_terry_loss::bradley_terry_loss_cuda);
  m.impl("bradley_terry_loss_backward", &llmrl::bradley_terry_loss::bradley_terry_loss_backward_cuda);
}
