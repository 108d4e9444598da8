// loss_agg CUDA kernels: same contract as cpu.cpp (see loss_agg.h, ALGORITHMS.md §5). One block per row
// (grid-stride over rows) gives (Σ_t m·L, n_b) in float64; a one-block finalize kernel computes the
// counts, the denominator, the per-row coefficients and the scalar on the device (no host sync, fixed
// order: deterministic). Backward: one elementwise pass reading the 0-d grad from device memory.
// Current stream, device guard, 64-bit offsets.
#include "loss_agg/loss_agg.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>

namespace llmrl::loss_agg {
namespace {

constexpr int kThreads = 256;

// Block-wide sums of 2 doubles, result in every thread (blockDim.x == kThreads).
__device__ inline void block_sum2(double& a, double& b) {
  __shared__ double sa[kThreads], sb[kThreads];
  sa[threadIdx.x] = a;
  sb[threadIdx.x] = b;
  __syncthreads();
  for (int h = kThreads / 2; h > 0; h >>= 1) {
    if (threadIdx.x < h) {
      sa[threadIdx.x] += sa[threadIdx.x + h];
      sb[threadIdx.x] += sb[threadIdx.x + h];
    }
    __syncthreads();
  }
  a = sa[0];
  b = sb[0];
  __syncthreads();
}

template <typename scalar_t>
__global__ void rows_kernel(const scalar_t* __restrict__ L, const bool* __restrict__ m, int64_t B, int64_t T,
                            double* __restrict__ rows) {
  for (int64_t b = blockIdx.x; b < B; b += gridDim.x) {
    double s = 0, n = 0;
    for (int64_t t = threadIdx.x; t < T; t += blockDim.x) {
      if (!m[b * T + t]) continue;  // masked entries are never read
      s += double(L[b * T + t]);
      n += 1.0;
    }
    block_sum2(s, n);
    if (threadIdx.x == 0) {
      rows[2 * b] = s;
      rows[2 * b + 1] = n;
    }
  }
}

template <typename acc>
__global__ void finalize_kernel(const double* __restrict__ rows, int64_t B, Norm nm, acc* __restrict__ out,
                                acc* __restrict__ coef) {
  double N = 0, S = 0;
  for (int64_t b = threadIdx.x; b < B; b += blockDim.x) {
    N += rows[2 * b + 1];
    S += rows[2 * b + 1] > 0 ? 1.0 : 0.0;
  }
  block_sum2(N, S);
  const double denom = denominator(nm, N, S);
  double total = 0, unused = 0;
  for (int64_t b = threadIdx.x; b < B; b += blockDim.x) {
    const double c = row_coef(nm, rows[2 * b + 1], denom);
    coef[b] = acc(c);
    if (c != 0.0) total += c * rows[2 * b];
  }
  block_sum2(total, unused);
  if (threadIdx.x == 0) *out = acc(total);
}

template <typename scalar_t, typename acc>
__global__ void backward_kernel(const acc* __restrict__ grad, const bool* __restrict__ m, const acc* __restrict__ coef,
                                int64_t n, int64_t T, scalar_t* __restrict__ out) {
  const acc g = *grad;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const acc c = coef[i / T];
    out[i] = (m[i] && c != acc(0)) ? static_cast<scalar_t>(g * c) : scalar_t(0);
  }
}

std::tuple<at::Tensor, at::Tensor> forward_cuda(const at::Tensor& loss, const at::Tensor& mask, c10::string_view mode_name,
                                                std::optional<double> normalizer, std::optional<double> num_sequences,
                                                std::optional<int64_t> max_length) {
  const Mode mode = parse_mode(mode_name);
  const at::Tensor m = check_inputs(loss, mask, normalizer, num_sequences, max_length);
  c10::cuda::CUDAGuard device_guard(loss.device());
  const at::Tensor L = loss.contiguous();
  const int64_t B = L.size(0), T = L.size(1);
  const Norm nm = make_norm(mode, normalizer, num_sequences, max_length, T);
  const at::ScalarType acc_t = acc_dtype(L.scalar_type());
  at::Tensor out = at::zeros({}, L.options().dtype(acc_t));
  at::Tensor coef = at::zeros({B}, L.options().dtype(acc_t));
  if (B == 0) return {out, coef};
  at::Tensor rows = at::empty({B, 2}, L.options().dtype(at::kDouble));
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, L.scalar_type(), "loss_agg_cuda", [&] {
    using acc = at::opmath_type<scalar_t>;
    rows_kernel<scalar_t><<<std::min<int64_t>(B, 65535), kThreads, 0, stream>>>(
        L.const_data_ptr<scalar_t>(), m.const_data_ptr<bool>(), B, T, rows.mutable_data_ptr<double>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    finalize_kernel<acc><<<1, kThreads, 0, stream>>>(rows.const_data_ptr<double>(), B, nm,
                                                     out.mutable_data_ptr<acc>(), coef.mutable_data_ptr<acc>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {out, coef};
}

at::Tensor backward_cuda(const at::Tensor& grad, const at::Tensor& mask, const at::Tensor& coef, at::ScalarType dtype) {
  TORCH_CHECK(grad.numel() == 1, "loss_agg_backward: 'grad' must have one element, got ", grad.sizes());
  TORCH_CHECK(mask.dim() == 2 && coef.dim() == 1 && coef.size(0) == mask.size(0),
              "loss_agg_backward: 'coef' must have shape [B] = [", mask.size(0), "], got ", coef.sizes());
  TORCH_CHECK(at::isFloatingType(dtype), "loss_agg_backward: 'dtype' must be floating, got ", dtype);
  c10::cuda::CUDAGuard device_guard(mask.device());
  const at::Tensor m = mask.scalar_type() == at::kBool ? mask.contiguous() : mask.ne(0);
  const int64_t T = m.size(1), n = m.numel();
  at::Tensor out = at::empty(m.sizes(), m.options().dtype(dtype));
  if (n == 0) return out;
  auto stream = at::cuda::getCurrentCUDAStream();
  const int64_t blocks = std::min<int64_t>((n + kThreads - 1) / kThreads, 65535);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, "loss_agg_backward_cuda", [&] {
    using acc = at::opmath_type<scalar_t>;
    const at::ScalarType acc_t = c10::CppTypeToScalarType<acc>::value;
    const at::Tensor g = grad.reshape({}).to(acc_t).contiguous();
    const at::Tensor c = coef.to(acc_t).contiguous();
    backward_kernel<scalar_t, acc><<<blocks, kThreads, 0, stream>>>(
        g.const_data_ptr<acc>(), m.const_data_ptr<bool>(), c.const_data_ptr<acc>(), n, T,
        out.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

at::Tensor loss_agg_cuda(const at::Tensor& loss, const at::Tensor& mask, c10::string_view mode,
                         std::optional<double> normalizer, std::optional<double> num_sequences,
                         std::optional<int64_t> max_length) {
  return std::get<0>(forward_cuda(loss, mask, mode, normalizer, num_sequences, max_length));
}

}  // namespace
}  // namespace llmrl::loss_agg

TORCH_LIBRARY_IMPL(llmrl, CUDA, m) {
  m.impl("loss_agg", &llmrl::loss_agg::loss_agg_cuda);
  m.impl("loss_agg_forward", &llmrl::loss_agg::forward_cuda);
  m.impl("loss_agg_backward", &llmrl::loss_agg::backward_cuda);
}
