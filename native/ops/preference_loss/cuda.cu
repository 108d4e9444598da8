// preference_loss CUDA kernels: same contract as cpu.cpp (see preference_loss.h, ALGORITHMS.md §7).
// Forward: a grid-stride pass writes per-block float64 partial sums of (loss, βρ_c, βρ_r, 1[ρ_c > ρ_r],
// β(ρ_c − ρ_r)); a one-block finalize kernel combines them in block order and writes the five 0-dim
// outputs, so any B works, nothing syncs with the host (except the ipo length check in check_inputs) and
// the result is deterministic. Backward: one elementwise pass reading the scalar grad from the device.
// Current stream, 64-bit offsets, fp32 per-pair math (fp64 for fp64 inputs).
#include "preference_loss/preference_loss.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>

namespace llmrl::preference_loss {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 1024;

// Block-wide sum of kSums doubles per thread into thread 0's v (blockDim.x == kThreads).
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
                               const scalar_t* __restrict__ rc, const scalar_t* __restrict__ rr,
                               const at::opmath_type<scalar_t>* __restrict__ lc,
                               const at::opmath_type<scalar_t>* __restrict__ lr, int64_t n, int type, double beta,
                               double eps, double* __restrict__ part) {
  using acc = at::opmath_type<scalar_t>;
  const acc b = static_cast<acc>(beta), e = static_cast<acc>(eps);
  double s[kSums] = {0, 0, 0, 0, 0};
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    acc l, dc, dr, xc, xr;
    pair<acc, true>(acc(c[i]), acc(r[i]), rc ? acc(rc[i]) : acc(0), rr ? acc(rr[i]) : acc(0), lc ? lc[i] : acc(1),
              lr ? lr[i] : acc(1), type, b, e, &l, &dc, &dr, &xc, &xr);
    s[0] += double(l);
    s[1] += double(b * xc);
    s[2] += double(b * xr);
    s[3] += xc > xr ? 1.0 : 0.0;
    s[4] += double(b * (xc - xr));
  }
  block_sum(s);
  if (threadIdx.x == 0)
    for (int k = 0; k < kSums; ++k) part[kSums * blockIdx.x + k] = s[k];
}

// One block: Σ over the per-block partials (fixed order per thread, fixed tree), divided by n.
template <typename out_t>
__global__ void finalize_kernel(const double* __restrict__ part, int64_t blocks, int64_t n, out_t* o0, out_t* o1,
                                out_t* o2, out_t* o3, out_t* o4) {
  double s[kSums] = {0, 0, 0, 0, 0};
  for (int64_t j = threadIdx.x; j < blocks; j += blockDim.x)
    for (int k = 0; k < kSums; ++k) s[k] += part[kSums * j + k];
  block_sum(s);
  if (threadIdx.x == 0) {
    const double inv = n > 0 ? 1.0 / double(n) : 0.0;  // B == 0 → every output 0
    *o0 = out_t(s[0] * inv);
    *o1 = out_t(s[1] * inv);
    *o2 = out_t(s[2] * inv);
    *o3 = out_t(s[3] * inv);
    *o4 = out_t(s[4] * inv);
  }
}

template <typename scalar_t>
__global__ void backward_kernel(const at::opmath_type<scalar_t>* __restrict__ grad, const scalar_t* __restrict__ c,
                                const scalar_t* __restrict__ r, const scalar_t* __restrict__ rc,
                                const scalar_t* __restrict__ rr, const at::opmath_type<scalar_t>* __restrict__ lc,
                                const at::opmath_type<scalar_t>* __restrict__ lr, int64_t n, int type, double beta,
                                double eps, scalar_t* __restrict__ gc, scalar_t* __restrict__ gr) {
  using acc = at::opmath_type<scalar_t>;
  const acc b = static_cast<acc>(beta), e = static_cast<acc>(eps);
  const acc g = grad[0] / static_cast<acc>(n);  // ∂mean/∂loss_b = 1/B
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    acc l, dc, dr, xc, xr;
    pair<acc, false>(acc(c[i]), acc(r[i]), rc ? acc(rc[i]) : acc(0), rr ? acc(rr[i]) : acc(0), lc ? lc[i] : acc(1),
              lr ? lr[i] : acc(1), type, b, e, &l, &dc, &dr, &xc, &xr);
    gc[i] = static_cast<scalar_t>(g * dc);
    gr[i] = static_cast<scalar_t>(g * dr);
  }
}

template <typename T>
const T* ptr_or_null(const at::Tensor& t) {
  return t.defined() ? t.const_data_ptr<T>() : nullptr;
}

Outputs preference_loss_cuda(const at::Tensor& chosen, const at::Tensor& rejected,
                             const std::optional<at::Tensor>& ref_chosen,
                             const std::optional<at::Tensor>& ref_rejected, c10::string_view loss_type,
                             double beta, double label_smoothing, const std::optional<at::Tensor>& chosen_lengths,
                             const std::optional<at::Tensor>& rejected_lengths, bool reference_free) {
  c10::cuda::CUDAGuard device_guard(chosen.device());
  const Inputs in = check_inputs(chosen, rejected, ref_chosen, ref_rejected, loss_type, beta, label_smoothing,
                                 chosen_lengths, rejected_lengths, reference_free, true);
  const int64_t n = in.chosen.numel();
  const auto opts = in.chosen.options().dtype(in.acc_dtype);
  at::Tensor o[kSums];
  for (auto& t : o) t = at::empty({}, opts);
  const int64_t blocks = std::max<int64_t>(1, std::min<int64_t>((n + kThreads - 1) / kThreads, kMaxBlocks));
  at::Tensor part = at::empty({blocks * kSums}, in.chosen.options().dtype(at::kDouble));
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, in.chosen.scalar_type(), "preference_loss_cuda", [&] {
    using acc = at::opmath_type<scalar_t>;
    forward_kernel<scalar_t><<<blocks, kThreads, 0, stream>>>(
        in.chosen.const_data_ptr<scalar_t>(), in.rejected.const_data_ptr<scalar_t>(),
        ptr_or_null<scalar_t>(in.ref_chosen), ptr_or_null<scalar_t>(in.ref_rejected),
        ptr_or_null<acc>(in.chosen_len), ptr_or_null<acc>(in.rejected_len), n, static_cast<int>(in.type), beta,
        label_smoothing, part.mutable_data_ptr<double>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    finalize_kernel<acc><<<1, kThreads, 0, stream>>>(
        part.const_data_ptr<double>(), blocks, n, o[0].mutable_data_ptr<acc>(), o[1].mutable_data_ptr<acc>(),
        o[2].mutable_data_ptr<acc>(), o[3].mutable_data_ptr<acc>(), o[4].mutable_data_ptr<acc>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {o[0], o[1], o[2], o[3], o[4]};
}

std::tuple<at::Tensor, at::Tensor> preference_loss_backward_cuda(
    const at::Tensor& grad, const at::Tensor& chosen, const at::Tensor& rejected,
    const std::optional<at::Tensor>& ref_chosen, const std::optional<at::Tensor>& ref_rejected,
    c10::string_view loss_type, double beta, double label_smoothing,
    const std::optional<at::Tensor>& chosen_lengths, const std::optional<at::Tensor>& rejected_lengths,
    bool reference_free) {
  c10::cuda::CUDAGuard device_guard(chosen.device());
  const Inputs in = check_inputs(chosen, rejected, ref_chosen, ref_rejected, loss_type, beta, label_smoothing,
                                 chosen_lengths, rejected_lengths, reference_free, false);
  TORCH_CHECK(grad.numel() == 1, "preference_loss_backward: 'grad' must have one element (the loss is a scalar), got ",
              grad.sizes());
  TORCH_CHECK(grad.device() == in.chosen.device(), "preference_loss_backward: 'grad' must be on ",
              in.chosen.device(), ", got ", grad.device());
  const int64_t n = in.chosen.numel();
  at::Tensor gc = at::empty_like(in.chosen), gr = at::empty_like(in.rejected);
  if (n == 0) return {gc, gr};
  const at::Tensor g = grad.reshape({1}).to(in.acc_dtype).contiguous();
  const int64_t blocks = std::min<int64_t>((n + kThreads - 1) / kThreads, 65535);
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, in.chosen.scalar_type(), "preference_loss_backward_cuda", [&] {
    using acc = at::opmath_type<scalar_t>;
    backward_kernel<scalar_t><<<blocks, kThreads, 0, stream>>>(
        g.const_data_ptr<acc>(), in.chosen.const_data_ptr<scalar_t>(), in.rejected.const_data_ptr<scalar_t>(),
        ptr_or_null<scalar_t>(in.ref_chosen), ptr_or_null<scalar_t>(in.ref_rejected),
        ptr_or_null<acc>(in.chosen_len), ptr_or_null<acc>(in.rejected_len), n, static_cast<int>(in.type), beta,
        label_smoothing, gc.mutable_data_ptr<scalar_t>(), gr.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {gc, gr};
}

}  // namespace
}  // namespace llmrl::preference_loss

TORCH_LIBRARY_IMPL(llmrl, CUDA, m) {
  m.impl("preference_loss", &llmrl::preference_loss::preference_loss_cuda);
  m.impl("preference_loss_backward", &llmrl::preference_loss::preference_loss_backward_cuda);
}
