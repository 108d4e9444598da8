// masked_whiten CUDA kernels: same contract as cpu.cpp (see masked_whiten.h, ALGORITHMS.md §3c).
// Reduction passes write per-block float64 partials; a one-block finalize kernel turns them into the
// statistics in a small device buffer, so nothing syncs with the host. Fixed grid for a given size, fixed
// combine order: deterministic. Current stream, 64-bit offsets, float64 sums, fp32 elementwise math.
//   stats[0] = N   stats[1] = μ   stats[2] = rstd   stats[3] = ḡ   stats[4] = k   (masked_whiten.h)
#include "masked_whiten/masked_whiten.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>

namespace llmrl::masked_whiten {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 1024;

// Block-wide sum of two doubles into thread 0 (blockDim.x == kThreads).
__device__ inline void block_sum2(double& a, double& b) {
  __shared__ double sa[kThreads], sb[kThreads];
  sa[threadIdx.x] = a;
  sb[threadIdx.x] = b;
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) {
      sa[threadIdx.x] += sa[threadIdx.x + s];
      sb[threadIdx.x] += sb[threadIdx.x + s];
    }
    __syncthreads();
  }
  a = sa[0];
  b = sb[0];
  __syncthreads();  // the shared buffers may be reused by a later call
}

// pass 0: (Σ m·x, Σ m)   pass 1: (Σ m·(x − μ)², 0)   pass 2: (Σ m·g, Σ m·g·(x − μ))
template <typename scalar_t>
__global__ void partials_kernel(const scalar_t* __restrict__ x, const bool* __restrict__ m,
                                const scalar_t* __restrict__ g, const double* __restrict__ stats, int64_t n,
                                int pass, double* __restrict__ part) {
  const double mean = pass == 0 ? 0.0 : stats[1];
  double a = 0, b = 0;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    if (!m[i]) continue;  // masked entries are never read (they may hold NaN/Inf)
    const double xi = static_cast<double>(x[i]);
    if (pass == 0) { a += xi; b += 1.0; }
    else if (pass == 1) { const double d = xi - mean; a += d * d; }
    else { const double gi = static_cast<double>(g[i]); a += gi; b += gi * (xi - mean); }
  }
  block_sum2(a, b);
  if (threadIdx.x == 0) {
    part[2 * blockIdx.x] = a;
    part[2 * blockIdx.x + 1] = b;
  }
}

// One block: combines the partials of `pass` into the statistics buffer.
__global__ void finalize_kernel(const double* __restrict__ part, int64_t nparts, int pass, double* __restrict__ stats) {
  double a = 0, b = 0;
  for (int64_t j = threadIdx.x; j < nparts; j += blockDim.x) {
    a += part[2 * j];
    b += part[2 * j + 1];
  }
  block_sum2(a, b);
  if (threadIdx.x != 0) return;
  if (pass == 0) { stats[0] = b; stats[1] = mean_of(a, b); }
  else if (pass == 1) { stats[2] = rstd_of(a, stats[0]); }
  else { stats[3] = mean_of(a, stats[0]); stats[4] = grad_coef(b, stats[2], stats[0]); }
}

template <typename scalar_t>
__global__ void output_kernel(const scalar_t* __restrict__ x, const bool* __restrict__ m,
                              const scalar_t* __restrict__ g, const double* __restrict__ stats, int64_t n,
                              bool shift_mean, scalar_t* __restrict__ out) {
  using acc = at::opmath_type<scalar_t>;
  const acc mean = acc(stats[1]), rstd = acc(stats[2]);
  const acc gbar = g ? acc(stats[3]) : acc(0), k = g ? acc(stats[4]) : acc(0);
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    if (!m[i]) { out[i] = scalar_t(0); continue; }
    out[i] = static_cast<scalar_t>(g ? whiten_grad_point<acc>(acc(g[i]), acc(x[i]), mean, rstd, gbar, k, shift_mean)
                                     : whiten_point<acc>(acc(x[i]), mean, rstd, shift_mean));
  }
}

at::Tensor run(const at::Tensor* grad, const at::Tensor& x, const at::Tensor& mask, bool shift_mean) {
  const at::Tensor m = check_inputs(x, mask, grad);
  c10::cuda::CUDAGuard device_guard(x.device());
  const at::Tensor xc = x.contiguous();
  const at::Tensor g = grad ? grad->expand(x.sizes()).contiguous() : at::Tensor();
  at::Tensor out = at::empty_like(xc, at::MemoryFormat::Contiguous);
  const int64_t n = xc.numel();
  if (n == 0) return out;
  const int64_t blocks = std::min<int64_t>((n + kThreads - 1) / kThreads, kMaxBlocks);
  const auto dopts = xc.options().dtype(at::kDouble);
  at::Tensor part = at::empty({2 * blocks}, dopts);
  at::Tensor stats = at::empty({5}, dopts);
  double* pp = part.mutable_data_ptr<double>();
  double* ps = stats.mutable_data_ptr<double>();
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, xc.scalar_type(), "masked_whiten_cuda", [&] {
    const scalar_t* px = xc.const_data_ptr<scalar_t>();
    const scalar_t* pg = grad ? g.const_data_ptr<scalar_t>() : nullptr;
    const bool* pm = m.const_data_ptr<bool>();
    for (int pass = 0; pass < (grad ? 3 : 2); ++pass) {
      partials_kernel<scalar_t><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(px, pm, pg, ps, n, pass, pp);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      finalize_kernel<<<1, kThreads, 0, stream>>>(pp, blocks, pass, ps);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    output_kernel<scalar_t><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
        px, pm, pg, ps, n, shift_mean, out.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

at::Tensor masked_whiten_cuda(const at::Tensor& x, const at::Tensor& mask, bool shift_mean) {
  return run(nullptr, x, mask, shift_mean);
}

at::Tensor masked_whiten_backward_cuda(const at::Tensor& grad, const at::Tensor& x, const at::Tensor& mask,
                                       bool shift_mean) {
  return run(&grad, x, mask, shift_mean);
}

}  // namespace
}  // namespace llmrl::masked_whiten

TORCH_LIBRARY_IMPL(llmrl, CUDA, m) {
  m.impl("masked_whiten", &llmrl::masked_whiten::masked_whiten_cuda);
  m.impl("masked_whiten_backward", &llmrl::masked_whiten::masked_whiten_backward_cuda);
}
