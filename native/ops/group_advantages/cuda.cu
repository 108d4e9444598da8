// group_advantages CUDA kernels: same contract as cpu.cpp (see group_advantages.h, ALGORITHMS.md §3d).
// One thread per group (G is small, groups are independent); scale='batch' first runs a one-block
// float64 reduction for the batch std into a device scalar (no host sync). Current stream, 64-bit offsets.
#include "group_advantages/group_advantages.h"

#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

namespace llmrl::group_advantages {
namespace {

constexpr int kThreads = 256;

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
  __syncthreads();  // the shared buffers are reused by the next call
}

// One block: Bessel std of the non-NaN rewards (0 when fewer than two) → *out.
template <typename scalar_t>
__global__ void batch_std_kernel(const scalar_t* __restrict__ r, int64_t n, double* __restrict__ out) {
  double s = 0, c = 0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const double x = static_cast<double>(r[i]);
    if (x == x) { s += x; c += 1; }
  }
  block_sum2(s, c);
  const double mu = c > 0 ? s / c : 0.0;
  double q = 0, unused = 0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const double x = static_cast<double>(r[i]);
    if (x == x) q += (x - mu) * (x - mu);
  }
  block_sum2(q, unused);
  if (threadIdx.x == 0) *out = c > 1 ? ::sqrt(q / (c - 1)) : 0.0;
}

template <typename scalar_t>
__global__ void groups_kernel(const scalar_t* __restrict__ r, int64_t groups, int64_t G, int scale,
                              const double* __restrict__ batch_std, scalar_t* __restrict__ adv,
                              scalar_t* __restrict__ gstd) {
  const int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (k >= groups) return;
  group_row(r + k * G, G, scale, batch_std ? *batch_std : 0.0, adv + k * G, gstd + k);
}

std::tuple<at::Tensor, at::Tensor> group_advantages_cuda(const at::Tensor& rewards, int64_t group_size,
                                                         c10::string_view scale_name) {
  const Scale scale = parse_scale(scale_name);
  check_inputs(rewards, group_size, scale);
  c10::cuda::CUDAGuard device_guard(rewards.device());
  const at::Tensor r = rewards.contiguous();
  const int64_t B = r.size(0), G = group_size, groups = B / G;
  at::Tensor adv = at::empty_like(r, at::MemoryFormat::Contiguous);
  at::Tensor gstd = at::empty({groups}, r.options());
  if (B == 0) return {adv, gstd};
  at::Tensor bstd = scale == Scale::batch ? at::empty({1}, r.options().dtype(at::kDouble)) : at::Tensor();
  const int64_t blocks = (groups + kThreads - 1) / kThreads;
  TORCH_CHECK(blocks <= 2147483647LL, "group_advantages: 'rewards' has too many groups (", groups, ")");
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, r.scalar_type(), "group_advantages_cuda", [&] {
    const scalar_t* pr = r.const_data_ptr<scalar_t>();
    double* pb = bstd.defined() ? bstd.mutable_data_ptr<double>() : nullptr;
    if (pb) {
      batch_std_kernel<scalar_t><<<1, kThreads, 0, stream>>>(pr, B, pb);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    groups_kernel<scalar_t><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
        pr, groups, G, static_cast<int>(scale), pb, adv.mutable_data_ptr<scalar_t>(), gstd.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {adv, gstd};
}

}  // namespace
}  // namespace llmrl::group_advantages

TORCH_LIBRARY_IMPL(llmrl, CUDA, m) {
  m.impl("group_advantages", &llmrl::group_advantages::group_advantages_cuda);
}
