// sequence_clipped_surrogate CUDA kernels: same contract as cpu.cpp (see sequence_clipped_surrogate.h,
// ALGORITHMS.md §4b/§4c). One block per row (grid-stride over rows): a block reduction gives n_b, Σ m·x
// and the KL sum, then the block writes the per-token loss and ∂L/∂ℓ; per-row metric sums go to a [B, 4]
// float64 buffer that a one-block finalize kernel combines in a fixed order (no host sync,
// deterministic). Backward: one block per row (a block sum of the row's valid grads at 'sequence').
// Current stream, device guard, 64-bit offsets, fp32 (fp64 for fp64) math, float64 row sums.
#include "sequence_clipped_surrogate/sequence_clipped_surrogate.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>

namespace llmrl::sequence_clipped_surrogate {
namespace {

using clipped_surrogate::acc_dtype;
using clipped_surrogate::clamp_log_ratio;
using clipped_surrogate::exp_acc;
using clipped_surrogate::surrogate;

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
  __syncthreads();
}

template <typename scalar_t, typename acc>
__global__ void forward_kernel(const scalar_t* __restrict__ lp, const scalar_t* __restrict__ old,
                               const acc* __restrict__ adv, bool adv_per_token, const bool* __restrict__ mask,
                               Clip<acc> clip, int64_t B, int64_t T, bool seq_level, scalar_t* __restrict__ loss,
                               acc* __restrict__ dloss, double* __restrict__ rows) {
  for (int64_t b = blockIdx.x; b < B; b += gridDim.x) {
    const int64_t base = b * T;
    double v[4] = {0, 0, 0, 0};  // n_b, Σ m·x, Σ m·(ℓ − ℓ_old)²
    for (int64_t t = threadIdx.x; t < T; t += blockDim.x) {
      if (!mask[base + t]) continue;
      const acc l_new = acc(lp[base + t]), l_old = acc(old[base + t]);
      bool inside;
      v[0] += 1.0;
      v[1] += double(clamp_log_ratio(l_new, l_old, &inside));
      const acc diff = l_new - l_old;
      v[2] += double(diff * diff);
    }
    block_sum4(v);
    const double n = v[0], kl = v[2];
    const acc inv_n = acc(1.0 / (n > 1.0 ? n : 1.0));
    const acc s = exp_acc(acc(v[1]) * inv_n);
    if (seq_level) {
      const acc a = adv[b];
      acc lb = 0, db = 0;
      if (n > 0) surrogate(s, a, clip, &lb, &db);
      const acc dtok = db * inv_n;
      for (int64_t t = threadIdx.x; t < T; t += blockDim.x) {
        const int64_t i = base + t;
        if (!mask[i]) {
          loss[i] = scalar_t(0);
          if (dloss) dloss[i] = acc(0);
          continue;
        }
        loss[i] = static_cast<scalar_t>(lb);
        if (dloss) {
          bool inside;
          clamp_log_ratio(acc(lp[i]), acc(old[i]), &inside);
          dloss[i] = inside ? dtok : acc(0);
        }
      }
      if (threadIdx.x == 0) {
        const bool valid = n > 0;
        rows[b * 4 + 0] = valid ? 1.0 : 0.0;
        rows[b * 4 + 1] = valid && s < clip.lo && a < acc(0) ? 1.0 : 0.0;
        rows[b * 4 + 2] = valid && s > clip.hi && a > acc(0) ? 1.0 : 0.0;
        rows[b * 4 + 3] = valid ? kl / n : 0.0;
      }
    } else {
      double c[4] = {0, 0, 0, 0};  // low, high
      for (int64_t t = threadIdx.x; t < T; t += blockDim.x) {
        const int64_t i = base + t;
        if (!mask[i]) {
          loss[i] = scalar_t(0);
          if (dloss) dloss[i] = acc(0);
          continue;
        }
        const acc a = adv[adv_per_token ? i : b];
        acc l, d;
        surrogate(s, a, clip, &l, &d);
        loss[i] = static_cast<scalar_t>(l);
        if (dloss) dloss[i] = d;
        c[0] += (s < clip.lo && a < acc(0)) ? 1.0 : 0.0;
        c[1] += (s > clip.hi && a > acc(0)) ? 1.0 : 0.0;
      }
      block_sum4(c);
      if (threadIdx.x == 0) {
        rows[b * 4 + 0] = n;
        rows[b * 4 + 1] = c[0];
        rows[b * 4 + 2] = c[1];
        rows[b * 4 + 3] = kl;
      }
    }
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
__global__ void backward_kernel(const scalar_t* __restrict__ g, const acc* __restrict__ d, const bool* __restrict__ mask,
                                int64_t B, int64_t T, bool seq_level, scalar_t* __restrict__ out) {
  for (int64_t b = blockIdx.x; b < B; b += gridDim.x) {
    const int64_t base = b * T;
    double v[4] = {0, 0, 0, 0};
    if (seq_level) {  // every valid token carries L_b: the row's valid incoming grads add up
      for (int64_t t = threadIdx.x; t < T; t += blockDim.x)
        if (mask[base + t]) v[0] += double(g[base + t]);
      block_sum4(v);
    }
    const acc gsum = acc(v[0]);
    for (int64_t t = threadIdx.x; t < T; t += blockDim.x) {
      const int64_t i = base + t;
      const acc gi = seq_level ? gsum : acc(g[i]);
      out[i] = d[i] == acc(0) ? scalar_t(0) : static_cast<scalar_t>(gi * d[i]);
    }
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> forward_cuda(const at::Tensor& logprobs, const at::Tensor& old_logprobs,
                                                            const at::Tensor& advantages, const at::Tensor& mask,
                                                            double eps_low, double eps_high,
                                                            std::optional<double> dual_clip,
                                                            std::optional<double> delta, c10::string_view level_name,
                                                            bool with_grad) {
  const Level level = parse_level(level_name);
  const at::Tensor m =
      check_inputs(logprobs, old_logprobs, advantages, mask, eps_low, eps_high, dual_clip, delta, level);
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
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, lp.scalar_type(), "sequence_clipped_surrogate_cuda", [&] {
    using acc = at::opmath_type<scalar_t>;
    forward_kernel<scalar_t, acc><<<blocks, kThreads, 0, stream>>>(
        lp.const_data_ptr<scalar_t>(), old.const_data_ptr<scalar_t>(), adv.const_data_ptr<acc>(), adv.dim() == 2,
        m.const_data_ptr<bool>(), clipped_surrogate::make_clip<acc>(eps_low, eps_high, dual_clip, delta), B, T,
        level == Level::sequence, loss.mutable_data_ptr<scalar_t>(),
        with_grad ? dloss.mutable_data_ptr<acc>() : nullptr, rows.mutable_data_ptr<double>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    finalize_kernel<acc><<<1, kThreads, 0, stream>>>(rows.const_data_ptr<double>(), B, stats.mutable_data_ptr<acc>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {loss, stats, dloss};
}

at::Tensor backward_cuda(const at::Tensor& grad, const at::Tensor& dloss, const at::Tensor& mask,
                         c10::string_view level_name) {
  const Level level = parse_level(level_name);
  TORCH_CHECK(dloss.defined(), "sequence_clipped_surrogate_backward: the forward saved no gradient");
  TORCH_CHECK(dloss.dim() == 2 && mask.sizes() == dloss.sizes(),
              "sequence_clipped_surrogate_backward: 'mask' must have shape ", dloss.sizes(), ", got ", mask.sizes());
  TORCH_CHECK(dloss.scalar_type() == acc_dtype(grad.scalar_type()),
              "sequence_clipped_surrogate_backward: 'dloss' must have dtype ", acc_dtype(grad.scalar_type()), ", got ",
              dloss.scalar_type());
  c10::cuda::CUDAGuard device_guard(dloss.device());
  const at::Tensor g = grad.expand(dloss.sizes()).contiguous();
  const at::Tensor d = dloss.contiguous();
  const at::Tensor m = mask.scalar_type() == at::kBool ? mask.contiguous() : mask.ne(0);
  at::Tensor out = at::empty(d.sizes(), g.options());
  const int64_t B = d.size(0), T = d.size(1);
  if (B == 0 || T == 0) return out;
  auto stream = at::cuda::getCurrentCUDAStream();
  const int64_t blocks = std::min<int64_t>(B, 65535);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, g.scalar_type(), "sequence_clipped_surrogate_backward_cuda", [&] {
    using acc = at::opmath_type<scalar_t>;
    backward_kernel<scalar_t, acc><<<blocks, kThreads, 0, stream>>>(
        g.const_data_ptr<scalar_t>(), d.const_data_ptr<acc>(), m.const_data_ptr<bool>(), B, T,
        level == Level::sequence, out.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

clipped_surrogate::Metrics5 sequence_clipped_surrogate_cuda(const at::Tensor& logprobs,
                                                            const at::Tensor& old_logprobs,
                                                            const at::Tensor& advantages, const at::Tensor& mask,
                                                            double eps_low, double eps_high,
                                                            std::optional<double> dual_clip,
                                                            std::optional<double> delta, c10::string_view level) {
  auto [loss, stats, dloss] =
      forward_cuda(logprobs, old_logprobs, advantages, mask, eps_low, eps_high, dual_clip, delta, level, false);
  return clipped_surrogate::split_metrics(loss, stats);
}

}  // namespace
}  // namespace llmrl::sequence_clipped_surrogate

TORCH_LIBRARY_IMPL(llmrl, CUDA, m) {
  m.impl("sequence_clipped_surrogate", &llmrl::sequence_clipped_surrogate::sequence_clipped_surrogate_cuda);
  m.impl("sequence_clipped_surrogate_forward", &llmrl::sequence_clipped_surrogate::forward_cuda);
  m.impl("sequence_clipped_surrogate_backward", &llmrl::sequence_clipped_surrogate::backward_cuda);
}
