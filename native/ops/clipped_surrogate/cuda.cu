// clipped_surrogate CUDA kernels: same contract as cpu.cpp (see clipped_surrogate.h, ALGORITHMS.md §4a/§4c).
// Forward: one block per row (grid-stride over rows) computes the per-token loss, ∂L/∂ℓ and the row's
// metric sums (block tree reduction, float64); a one-block finalize kernel combines the rows in a fixed
// order into the 4 metrics on the device — no host sync, deterministic. Backward: one elementwise pass.
// Current stream, device guard, 64-bit offsets, fp32 (fp64 for fp64) math.
#include "clipped_surrogate/clipped_surrogate.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>

namespace llmrl::clipped_surrogate {
namespace {

constexpr int kThreads = 256;

// Block-wide sums of 4 doubles, result in every thread (blockDim.x == kThreads).
__device__ inline void block_sum4(double* v) {
  __shared__ double s[4][kThreads];
  for (int k = 0; k < 4; ++k) s[k][threadIdx.x] = v[k];
  __syncthreads();
  for (int h = kThreads / 2; h > 0; h >>= 1) {
    if (threadIdx.x < h)
      for (int k = 0; k < 4; ++k) s[k][threadIdx.x] += s[k][threadIdx.x + h];
    __syncthreads();
  }
  for (int k = 0; k < 4; ++k) v[k] = s[k][0];
  __syncthreads();  // the shared buffer is reused by the next row
}

template <typename scalar_t, typename acc>
__global__ void forward_kernel(const scalar_t* __restrict__ lp, const scalar_t* __restrict__ old,
                               const acc* __restrict__ adv, bool adv_per_token, const bool* __restrict__ mask,
                               Clip<acc> clip, int64_t B, int64_t T, scalar_t* __restrict__ loss,
                               acc* __restrict__ dloss, double* __restrict__ rows) {
  for (int64_t b = blockIdx.x; b < B; b += gridDim.x) {
    double v[4] = {0, 0, 0, 0};  // valid, low-clipped, high-clipped, Σ (ℓ − ℓ_old)²
    for (int64_t t = threadIdx.x; t < T; t += blockDim.x) {
      const int64_t i = b * T + t;
      if (!mask[i]) {
        loss[i] = scalar_t(0);
        if (dloss) dloss[i] = acc(0);
        continue;
      }
      const acc l_new = acc(lp[i]), l_old = acc(old[i]);
      const acc a = adv[adv_per_token ? i : b];
      bool inside;
      const acc w = exp_acc(clamp_log_ratio(l_new, l_old, &inside));
      acc l, d;
      surrogate(w, a, clip, &l, &d);
      loss[i] = static_cast<scalar_t>(l);
      if (dloss) dloss[i] = inside ? d : acc(0);
      const acc diff = l_new - l_old;
      v[0] += 1.0;
      v[1] += (w < clip.lo && a < acc(0)) ? 1.0 : 0.0;
      v[2] += (w > clip.hi && a > acc(0)) ? 1.0 : 0.0;
      v[3] += double(diff * diff);
    }
    block_sum4(v);
    if (threadIdx.x == 0)
      for (int k = 0; k < 4; ++k) rows[b * 4 + k] = v[k];
  }
}

template <typename acc>
__global__ void finalize_kernel(const double* __restrict__ rows, int64_t B, acc* __restrict__ stats) {
  double v[4] = {0, 0, 0, 0};
  for (int64_t b = threadIdx.x; b < B; b += blockDim.x)
    for (int k = 0; k < 4; ++k) v[k] += rows[b * 4 + k];
  block_sum4(v);
  if (threadIdx.x != 0) return;
  const double inv = v[0] > 0 ? 1.0 / v[0] : 0.0;
  stats[0] = acc((v[1] + v[2]) * inv);
  stats[1] = acc(v[1] * inv);
  stats[2] = acc(v[2] * inv);
  stats[3] = acc(0.5 * v[3] * inv);
}

template <typename scalar_t, typename acc>
__global__ void backward_kernel(const scalar_t* __restrict__ g, const acc* __restrict__ d, int64_t n,
                                scalar_t* __restrict__ out) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = d[i] == acc(0) ? scalar_t(0) : static_cast<scalar_t>(acc(g[i]) * d[i]);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> forward_cuda(const at::Tensor& logprobs, const at::Tensor& old_logprobs,
                                                            const at::Tensor& advantages, const at::Tensor& mask,
                                                            double eps_low, double eps_high,
                                                            std::optional<double> dual_clip,
                                                            std::optional<double> delta, bool with_grad) {
  const at::Tensor m = check_surrogate_inputs("clipped_surrogate", logprobs, old_logprobs, advantages, mask, eps_low,
                                              eps_high, dual_clip, delta);
  c10::cuda::CUDAGuard device_guard(logprobs.device());
  const at::ScalarType acc_t = acc_dtype(logprobs.scalar_type());
  const at::Tensor lp = logprobs.contiguous(), old = old_logprobs.contiguous();
  const at::Tensor adv = advantages.to(acc_t).contiguous();
  const int64_t B = lp.size(0), T = lp.size(1);
  at::Tensor loss = at::empty_like(lp, at::MemoryFormat::Contiguous);
  at::Tensor dloss = with_grad ? at::empty(lp.sizes(), lp.options().dtype(acc_t)) : at::Tensor();
  at::Tensor stats = at::zeros({4}, lp.options().dtype(acc_t));
  if (B == 0) return {loss, stats, dloss};
  at::Tensor rows = at::empty({B, 4}, lp.options().dtype(at::kDouble));
  auto stream = at::cuda::getCurrentCUDAStream();
  const int64_t blocks = std::min<int64_t>(B, 65535);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, lp.scalar_type(), "clipped_surrogate_cuda", [&] {
    using acc = at::opmath_type<scalar_t>;
    forward_kernel<scalar_t, acc><<<blocks, kThreads, 0, stream>>>(
        lp.const_data_ptr<scalar_t>(), old.const_data_ptr<scalar_t>(), adv.const_data_ptr<acc>(), adv.dim() == 2,
        m.const_data_ptr<bool>(), make_clip<acc>(eps_low, eps_high, dual_clip, delta), B, T,
        loss.mutable_data_ptr<scalar_t>(), with_grad ? dloss.mutable_data_ptr<acc>() : nullptr,
        rows.mutable_data_ptr<double>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    finalize_kernel<acc><<<1, kThreads, 0, stream>>>(rows.const_data_ptr<double>(), B, stats.mutable_data_ptr<acc>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {loss, stats, dloss};
}

at::Tensor backward_cuda(const at::Tensor& grad, const at::Tensor& dloss) {
  TORCH_CHECK(dloss.defined(), "clipped_surrogate_backward: the forward saved no gradient (with_grad was false)");
  TORCH_CHECK(dloss.scalar_type() == acc_dtype(grad.scalar_type()), "clipped_surrogate_backward: 'dloss' must have dtype ",
              acc_dtype(grad.scalar_type()), ", got ", dloss.scalar_type());
  c10::cuda::CUDAGuard device_guard(dloss.device());
  const at::Tensor g = grad.expand(dloss.sizes()).contiguous();
  const at::Tensor d = dloss.contiguous();
  at::Tensor out = at::empty(d.sizes(), g.options());
  const int64_t n = d.numel();
  if (n == 0) return out;
  const int64_t blocks = std::min<int64_t>((n + kThreads - 1) / kThreads, 65535);
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, g.scalar_type(), "clipped_surrogate_backward_cuda", [&] {
    using acc = at::opmath_type<scalar_t>;
    backward_kernel<scalar_t, acc><<<blocks, kThreads, 0, stream>>>(
        g.const_data_ptr<scalar_t>(), d.const_data_ptr<acc>(), n, out.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

Metrics5 clipped_surrogate_cuda(const at::Tensor& logprobs, const at::Tensor& old_logprobs,
                                const at::Tensor& advantages, const at::Tensor& mask, double eps_low,
                                double eps_high, std::optional<double> dual_clip, std::optional<double> delta) {
  auto [loss, stats, dloss] =
      forward_cuda(logprobs, old_logprobs, advantages, mask, eps_low, eps_high, dual_clip, delta, false);
  return split_metrics(loss, stats);
}

}  // namespace
}  // namespace llmrl::clipped_surrogate

TORCH_LIBRARY_IMPL(llmrl, CUDA, m) {
  m.impl("clipped_surrogate", &llmrl::clipped_surrogate::clipped_surrogate_cuda);
  m.impl("clipped_surrogate_forward", &llmrl::clipped_surrogate::forward_cuda);
  m.impl("clipped_surrogate_backward", &llmrl::clipped_surrogate::backward_cuda);
}
