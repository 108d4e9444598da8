// gae CUDA kernel: same contract as cpu.cpp (see gae.h, ALGORITHMS.md §3a). One thread per row — rows
// are independent and the scan over T is sequential; enough parallelism for typical PPO batches
// (B ≥ a few hundred). Current stream, 64-bit offsets, fp32 accumulation for half types.
#include "gae/gae.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

namespace llmrl::gae {
namespace {

template <typename scalar_t>
__global__ void gae_kernel(const scalar_t* __restrict__ r, const scalar_t* __restrict__ v,
                           const bool* __restrict__ m, scalar_t* __restrict__ adv, scalar_t* __restrict__ ret,
                           int64_t B, int64_t T, double gamma, double gamma_lam) {
  using acc = at::opmath_type<scalar_t>;
  const int64_t b = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (b >= B) return;
  const int64_t o = b * T;
  scan_row<scalar_t, acc>(r + o, v + o, m + o, T, acc(gamma), acc(gamma_lam), adv + o, ret + o);
}

std::tuple<at::Tensor, at::Tensor> gae_cuda(const at::Tensor& rewards, const at::Tensor& values,
                                            const at::Tensor& mask, double gamma, double lam) {
  const at::Tensor m = check_inputs(rewards, values, mask, gamma, lam);
  c10::cuda::CUDAGuard device_guard(rewards.device());
  const at::Tensor r = rewards.contiguous(), v = values.contiguous();
  at::Tensor adv = at::empty_like(r, at::MemoryFormat::Contiguous);
  at::Tensor ret = at::empty_like(r, at::MemoryFormat::Contiguous);
  const int64_t B = r.size(0), T = r.size(1);
  if (B == 0 || T == 0) return {adv, ret};
  const int threads = 128;
  const int64_t blocks = (B + threads - 1) / threads;
  TORCH_CHECK(blocks <= 2147483647LL, "gae: 'rewards' has too many rows (", B, ")");
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, r.scalar_type(), "gae_cuda", [&] {
    gae_kernel<scalar_t><<<static_cast<unsigned>(blocks), threads, 0, stream>>>(
        r.const_data_ptr<scalar_t>(), v.const_data_ptr<scalar_t>(), m.const_data_ptr<bool>(),
        adv.mutable_data_ptr<scalar_t>(), ret.mutable_data_ptr<scalar_t>(), B, T, gamma, gamma * lam);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {adv, ret};
}

}  // namespace
}  // namespace llmrl::gae

TORCH_LIBRARY_IMPL(llmrl, CUDA, m) {
  m.impl("gae", &llmrl::gae::gae_cuda);
}
