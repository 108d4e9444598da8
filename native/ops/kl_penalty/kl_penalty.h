// kl_penalty — per-token KL estimators between the policy and the reference (ALGORITHMS.md §2).
//
// With d = clamp(ℓ_ref − ℓ, −20, 20) (grad flows through ℓ only; PyTorch's clamp gradient, i.e.
// zero outside the interval):
//   k1 = −d     k2 = ½d²     k3 = e^d − d − 1 (default, ≥ 0; Schulman's low-variance estimator)
//   abs = |d|
// ratio-weighted (old_logprobs given): out = k · exp(clamp(ℓ − ℓ_old, −20, 20)), the weight not detached.
// Masked positions (mask == 0) return 0 and get gradient 0 whatever their inputs (select, not multiply).
// Shapes: logprobs, ref_logprobs, old_logprobs, mask all the same shape (any rank), e.g. [B, T].
// Numerics: float32 accumulation for float32/bfloat16/float16 inputs, float64 for float64.
#pragma once
#include <ATen/ATen.h>
#include <optional>
#include <string_view>

namespace llmrl::kl_penalty {

enum class Estimator : int { k1 = 0, k2 = 1, k3 = 2, abs = 3 };

// Parses the estimator name; throws a c10::Error naming the op and the allowed values.
Estimator parse_estimator(std::string_view name);

// Checks shapes/dtypes/devices; returns the mask as bool (undefined when absent).
at::Tensor check_inputs(const at::Tensor& logprobs, const at::Tensor& ref_logprobs,
                        const std::optional<at::Tensor>& mask,
                        const std::optional<at::Tensor>& old_logprobs);

constexpr double kClamp = 20.0;

// Value and ∂/∂ℓ of one position, shared by the CPU and CUDA kernels (acc = float or double).
template <typename acc>
C10_HOST_DEVICE inline void point(acc lp, acc ref, acc old, bool has_old, int est, acc* value, acc* dvalue) {
  acc d = ref - lp;
  const acc lo = -kClamp, hi = kClamp;
  const bool inside = d >= lo && d <= hi;  // clamp passes gradient on the closed interval
  d = d < lo ? lo : (d > hi ? hi : d);
  const acc dd = inside ? acc(-1) : acc(0);  // ∂d/∂ℓ
  acc k, dk;
  switch (est) {
    case 0: k = -d; dk = -dd; break;
    case 1: k = acc(0.5) * d * d; dk = d * dd; break;
    case 2: {
#ifdef __CUDA_ARCH__
      const acc e = ::exp(d);
#else
      const acc e = std::exp(d);
#endif
      k = e - d - acc(1); dk = (e - acc(1)) * dd; break;
    }
    default: k = d < acc(0) ? -d : d; dk = (d > acc(0) ? acc(1) : (d < acc(0) ? acc(-1) : acc(0))) * dd; break;
  }
  if (has_old) {
    acc r = lp - old;
    const bool rin = r >= lo && r <= hi;
    r = r < lo ? lo : (r > hi ? hi : r);
#ifdef __CUDA_ARCH__
    const acc w = ::exp(r);
#else
    const acc w = std::exp(r);
#endif
    *value = k * w;
    *dvalue = dk * w + (rin ? k * w : acc(0));
  } else {
    *value = k;
    *dvalue = dk;
  }
}

at::Tensor kl_penalty_cpu(const at::Tensor& logprobs, const at::Tensor& ref_logprobs,
                          const std::optional<at::Tensor>& mask,
                          const std::optional<at::Tensor>& old_logprobs, c10::string_view estimator);
at::Tensor kl_penalty_backward_cpu(const at::Tensor& grad, const at::Tensor& logprobs,
                                   const at::Tensor& ref_logprobs, const std::optional<at::Tensor>& mask,
                                   const std::optional<at::Tensor>& old_logprobs, c10::string_view estimator);

}  // namespace llmrl::kl_penalty
