// value_loss CUDA kernels: same contract as cpu.cpp (see value_loss.h, ALGORITHMS.md §6). A grid-stride
// pass writes ∂ℓ_v/∂V and per-block float64 partial sums (loss, valid, clipped); a one-block finalize
// kernel combines them in a fixed order into loss, clip_frac and the scale 1/D on the device (no host
// sync, deterministic). Backward: one elementwise pass reading grad and scale from device memory.
// Current stream, device guard, 64-bit offsets, fp32 (fp64 for fp64) math.
#include "value_loss/value_loss.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>

namespace llmrl::value_loss {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 1024;

// Block-wide sums of 3 doubles, result in every thread (blockDim.x == kThreads).
__device__ inline void block_sum3(double* v) {
  __shared__ double s[3][kThreads];
  for (int k = 0; k < 3; ++k) s[k][threadIdx.x] = v[k];
  __syncthreads();
  for (int h = kThreads / 2; h > 0; h >>= 1) {
    if (threadIdx.x < h)
      for (int k = 0; k < 3; ++k) s[k][threadIdx.x] += s[k][threadIdx.x + h];
    __syncthreads();
  }
  for (int k = 0; k < 3; ++k) v[k] = s[k][0];
  __syncthreads();
}

template <typename scalar_t, typename acc>
__global__ void forward_kernel(const scalar_t* __restrict__ v, const scalar_t* __restrict__ vo,
                               const scalar_t* __restrict__ r, const bool* __restrict__ m, acc eps, int64_t n,
                               acc* __restrict__ dvalues, double* __restrict__ part) {
  double s[3] = {0, 0, 0};  // Σ ℓ_v, valid, clipped
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    if (!m[i]) {  // masked inputs are never read
      if (dvalues) dvalues[i] = acc(0);
      continue;
    }
    acc l, d;
    bool clipped;
    point(acc(v[i]), acc(vo[i]), acc(r[i]), eps, &l, &d, &clipped);
    if (dvalues) dvalues[i] = d;
    s[0] += double(l);
    s[1] += 1.0;
    s[2] += clipped ? 1.0 : 0.0;
  }
  block_sum3(s);
  if (threadIdx.x == 0)
    for (int k = 0; k < 3; ++k) part[3 * blockIdx.x + k] = s[k];
}

template <typename acc>
__global__ void finalize_kernel(const double* __restrict__ part, int64_t nparts, bool has_norm, double norm,
                                acc* __restrict__ out) {
  double s[3] = {0, 0, 0};
  for (int64_t j = threadIdx.x; j < nparts; j += blockDim.x)
    for (int k = 0; k < 3; ++k) s[k] += part[3 * j + k];
  block_sum3(s);
  if (threadIdx.x != 0) return;
  const double denom = has_norm ? norm : s[1];
  const double scale = denom > 0 ? 1.0 / denom : 0.0;
  out[0] = acc(s[0] * scale);                       // loss
  out[1] = acc(s[1] > 0 ? s[2] / s[1] : 0.0);       // clip_frac
  out[2] = acc(scale);                              // 1/D
}

template <typename scalar_t, typename acc>
__global__ void backward_kernel(const acc* __restrict__ grad, const acc* __restrict__ scale,
                                const acc* __restrict__ d, int64_t n, scalar_t* __restrict__ out) {
  const acc k = *scale == acc(0) ? acc(0) : *grad * *scale;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = d[i] == acc(0) ? scalar_t(0) : static_cast<scalar_t>(k * d[i]);
}

Forward forward_cuda(const at::Tensor& values, const at::Tensor& old_values, const at::Tensor& returns,
                     const at::Tensor& mask, double clip, std::optional<double> normalizer, bool with_grad) {
  const at::Tensor m = check_inputs(values, old_values, returns, mask, clip, normalizer);
  c10::cuda::CUDAGuard device_guard(values.device());
  const at::ScalarType acc_t = acc_dtype(values.scalar_type());
  const at::Tensor v = values.contiguous(), vo = old_values.contiguous(), r = returns.contiguous();
  const int64_t n = v.numel();
  at::Tensor dvalues = with_grad ? at::empty(v.sizes(), v.options().dtype(acc_t)) : at::Tensor();
  at::Tensor out = at::zeros({3}, v.options().dtype(acc_t));  // loss, clip_frac, scale
  const int64_t blocks = std::max<int64_t>(1, std::min<int64_t>((n + kThreads - 1) / kThreads, kMaxBlocks));
  at::Tensor part = at::empty({blocks, 3}, v.options().dtype(at::kDouble));
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, v.scalar_type(), "value_loss_cuda", [&] {
    using acc = at::opmath_type<scalar_t>;
    forward_kernel<scalar_t, acc><<<blocks, kThreads, 0, stream>>>(
        v.const_data_ptr<scalar_t>(), vo.const_data_ptr<scalar_t>(), r.const_data_ptr<scalar_t>(),
        m.const_data_ptr<bool>(), acc(clip), n, with_grad ? dvalues.mutable_data_ptr<acc>() : nullptr,
        part.mutable_data_ptr<double>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    finalize_kernel<acc><<<1, kThreads, 0, stream>>>(part.const_data_ptr<double>(), blocks, normalizer.has_value(),
                                                     normalizer.value_or(0), out.mutable_data_ptr<acc>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {out.select(0, 0), out.select(0, 1), dvalues, out.select(0, 2)};
}

at::Tensor backward_cuda(const at::Tensor& grad, const at::Tensor& dvalues, const at::Tensor& scale,
                         at::ScalarType dtype) {
  TORCH_CHECK(dvalues.defined(), "value_loss_backward: the forward saved no gradient (with_grad was false)");
  TORCH_CHECK(grad.numel() == 1 && scale.numel() == 1, "value_loss_backward: 'grad' and 'scale' must have one element");
  TORCH_CHECK(dvalues.scalar_type() == acc_dtype(dtype), "value_loss_backward: 'dvalues' must have dtype ",
              acc_dtype(dtype), ", got ", dvalues.scalar_type());
  c10::cuda::CUDAGuard device_guard(dvalues.device());
  const at::Tensor d = dvalues.contiguous();
  const at::Tensor g = grad.reshape({}).to(d.scalar_type()).contiguous();
  const at::Tensor sc = scale.reshape({}).to(d.scalar_type()).contiguous();
  at::Tensor out = at::empty(d.sizes(), d.options().dtype(dtype));
  const int64_t n = d.numel();
  if (n == 0) return out;
  const int64_t blocks = std::min<int64_t>((n + kThreads - 1) / kThreads, 65535);
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, "value_loss_backward_cuda", [&] {
    using acc = at::opmath_type<scalar_t>;
    backward_kernel<scalar_t, acc><<<blocks, kThreads, 0, stream>>>(
        g.const_data_ptr<acc>(), sc.const_data_ptr<acc>(), d.const_data_ptr<acc>(), n,
        out.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> value_loss_cuda(const at::Tensor& values, const at::Tensor& old_values,
                                                   const at::Tensor& returns, const at::Tensor& mask, double clip,
                                                   std::optional<double> normalizer) {
  auto [loss, clip_frac, dvalues, scale] = forward_cuda(values, old_values, returns, mask, clip, normalizer, false);
  return {loss, clip_frac};
}

}  // namespace
}  // namespace llmrl::value_loss

TORCH_LIBRARY_IMPL(llmrl, CUDA, m) {
  m.impl("value_loss", &llmrl::value_loss::value_loss_cuda);
  m.impl("value_loss_forward", &llmrl::value_loss::forward_cuda);
  m.impl("value_loss_backward", &llmrl::value_loss::backward_cuda);
}
