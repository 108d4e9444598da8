// kl_penalty CUDA kernel: same contract as cpu.cpp (see kl_penalty.h); one elementwise pass on the
// current stream, 64-bit offsets, fp32 accumulation for half types.
#include "kl_penalty/kl_penalty.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

namespace llmrl::kl_penalty {
namespace {

template <typename scalar_t>
__global__ void kl_kernel(const scalar_t* __restrict__ lp, const scalar_t* __restrict__ ref,
                          const scalar_t* __restrict__ old, const bool* __restrict__ mask,
                          const scalar_t* __restrict__ grad, scalar_t* __restrict__ out, int64_t n, int est) {
  using acc = at::opmath_type<scalar_t>;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    if (mask && !mask[i]) { out[i] = scalar_t(0); continue; }
    acc v, dv;
    point<acc>(acc(lp[i]), acc(ref[i]), old ? acc(old[i]) : acc(0), old != nullptr, est, &v, &dv);
    out[i] = static_cast<scalar_t>(grad ? acc(grad[i]) * dv : v);
  }
}

at::Tensor run(const at::Tensor* grad, const at::Tensor& logprobs, const at::Tensor& ref_logprobs,
               const std::optional<at::Tensor>& mask, const std::optional<at::Tensor>& old_logprobs,
               c10::string_view estimator) {
  const int est = static_cast<int>(parse_estimator(estimator));
  const at::Tensor m = check_inputs(logprobs, ref_logprobs, mask, old_logprobs);
  c10::cuda::CUDAGuard device_guard(logprobs.device());
  const bool has_old = old_logprobs && old_logprobs->defined();
  const at::Tensor lp = logprobs.contiguous(), ref = ref_logprobs.contiguous();
  const at::Tensor old = has_old ? old_logprobs->contiguous() : at::Tensor();
  const at::Tensor g = grad ? grad->expand(logprobs.sizes()).contiguous() : at::Tensor();
  at::Tensor out = at::empty_like(lp, at::MemoryFormat::Contiguous);
  const int64_t n = lp.numel();
  if (n == 0) return out;
  const int threads = 256;
  const int64_t blocks = std::min<int64_t>((n + threads - 1) / threads, 65535);
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, lp.scalar_type(), "kl_penalty_cuda", [&] {
    kl_kernel<scalar_t><<<blocks, threads, 0, stream>>>(
        lp.const_data_ptr<scalar_t>(), ref.const_data_ptr<scalar_t>(),
        has_old ? old.const_data_ptr<scalar_t>() : nullptr, m.defined() ? m.const_data_ptr<bool>() : nullptr,
        grad ? g.const_data_ptr<scalar_t>() : nullptr, out.mutable_data_ptr<scalar_t>(), n, est);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

at::Tensor kl_penalty_cuda(const at::Tensor& logprobs, const at::Tensor& ref_logprobs,
                           const std::optional<at::Tensor>& mask, const std::optional<at::Tensor>& old_logprobs,
                           c10::string_view estimator) {
  return run(nullptr, logprobs, ref_logprobs, mask, old_logprobs, estimator);
}

at::Tensor kl_penalty_backward_cuda(const at::Tensor& grad, const at::Tensor& logprobs,
                                    const at::Tensor& ref_logprobs, const std::optional<at::Tensor>& mask,
                                    const std::optional<at::Tensor>& old_logprobs, c10::string_view estimator) {
  return run(&grad, logprobs, ref_logprobs, mask, old_logprobs, estimator);
}

}  // namespace
}  // namespace llmrl::kl_penalty

TORCH_LIBRARY_IMPL(llmrl, CUDA, m) {
  m.impl("kl_penalty", &llmrl::kl_penalty::kl_penalty_cuda);
  m.impl("kl_penalty_backward", &llmrl::kl_penalty::kl_penalty_backward_cuda);
}
