// masked_whiten — whitening over the valid tokens (ALGORITHMS.md §3c), TRL's `masked_whiten`, used to
// normalise PPO advantages.
//
// Over ALL valid positions of x (mask != 0; one global statistic, not per row):
//   N = Σ m,  μ = Σ m·x / N,  var = Σ m·(x − μ)² / (N − 1)   (Bessel correction, like TRL)
//   y = (x − μ) · s,  s = 1/sqrt(var + 1e-8);   shift_mean=false: y = (x − μ)·s + μ (TRL adds the mean back)
// Masked positions return 0 (TRL leaves them whitened; llmrl zeroes them) and never contribute: their
// values (NaN/Inf allowed) are selected away, never added or multiplied by 0.
// Edge cases TRL rejects with an error, defined here instead: N == 1 → var = 0 (so y = 0, or x itself
// with shift_mean=false); N == 0 → all zeros. Never NaN from the statistics.
//
// Differentiable (our choice): PPO whitens constant advantages, but the op is a general building block
// (e.g. whitening a learned quantity), and the backward is one extra reduction. With g the incoming grad:
//   ∂L/∂x_j = m_j·[ s·(g_j − ḡ) − s³·(x_j − μ)/(N − 1) · Σ_i m_i g_i (x_i − μ) ]  (+ ḡ if shift_mean=false)
//   ḡ = Σ m·g / N.  For N == 1 the (constant) var contributes nothing: grad = 0 (g with shift_mean=false).
// Masked positions get gradient 0. The backward op recomputes μ and s from x (cheap) instead of saving.
//
// Shapes: x any shape, mask the same shape (bool or any dtype). Output in x's dtype.
// Numerics: the global sums accumulate in float64 for every dtype (deterministic fixed-size chunks on
// CPU, per-block partials on CUDA); the elementwise pass runs in float32 (float64 for float64 inputs).
#pragma once
#include <ATen/ATen.h>

#include <cmath>

namespace llmrl::masked_whiten {

constexpr double kEps = 1e-8;

// Checks shapes/dtypes/devices; returns the mask as a contiguous bool tensor.
at::Tensor check_inputs(const at::Tensor& x, const at::Tensor& mask, const at::Tensor* grad);

// Statistics from the sums: mean and rstd = 1/sqrt(var + eps), var Bessel-corrected, 0 for N ≤ 1.
C10_HOST_DEVICE inline double mean_of(double sum, double count) { return count > 0 ? sum / count : 0.0; }
C10_HOST_DEVICE inline double rstd_of(double sq_dev, double count) {
  const double var = count > 1 ? sq_dev / (count - 1) : 0.0;
#ifdef __CUDA_ARCH__
  return ::rsqrt(var + kEps);
#else
  return 1.0 / std::sqrt(var + kEps);
#endif
}

// One output value (valid position).
template <typename acc>
C10_HOST_DEVICE inline acc whiten_point(acc x, acc mean, acc rstd, bool shift_mean) {
  const acc y = (x - mean) * rstd;
  return shift_mean ? y : y + mean;
}

// One input gradient (valid position). gbar = Σ m·g / N, k = s³ · Σ m·g·(x − μ) / (N − 1) (0 for N ≤ 1).
template <typename acc>
C10_HOST_DEVICE inline acc whiten_grad_point(acc g, acc x, acc mean, acc rstd, acc gbar, acc k, bool shift_mean) {
  const acc d = rstd * (g - gbar) - k * (x - mean);
  return shift_mean ? d : d + gbar;
}

// The coefficient k above from the sums.
C10_HOST_DEVICE inline double grad_coef(double sum_g_dev, double rstd, double count) {
  return count > 1 ? rstd * rstd * rstd * sum_g_dev / (count - 1) : 0.0;
}

at::Tensor masked_whiten_cpu(const at::Tensor& x, const at::Tensor& mask, bool shift_mean);
at::Tensor masked_whiten_backward_cpu(const at::Tensor& grad, const at::Tensor& x, const at::Tensor& mask,
                                      bool shift_mean);

}  // namespace llmrl::masked_whiten
