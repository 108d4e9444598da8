// clipped_surrogate — token-level PPO/GRPO clipped surrogate with its clip metrics, one fused pass
// (ALGORITHMS.md §4a, §4c; PPO: Schulman et al. 2017; clip-higher: DAPO, Yu et al. 2025; dual-clip:
// Ye et al. 2020; delta cap: INTELLECT-2 / TRL's `delta`).
//
// Per valid token (mask != 0), with x = clamp(ℓ − ℓ_old, −20, 20) and w = exp(x):
//   L = −min(w_u·A, clamp(w, 1−ε_low, 1+ε_high)·A),   w_u = min(w, δ) if delta is given, else w
//   dual-clip c > 1 (given): for A < 0,  L = min(L, −c·A)
// Gradient flows to ℓ only (ℓ_old and A are constants): ∂L/∂ℓ = ∂L/∂x · 1[−20 ≤ ℓ−ℓ_old ≤ 20], with
// PyTorch's conventions so the op equals the eager composition exactly: clamp passes the gradient on
// the closed interval, min/minimum split it evenly on ties (w = 1 on-policy: both terms tie, giving the
// required ∂L/∂ℓ = −A).
// Metrics (masked token means, 0 when nothing is valid): clip_frac_low = mean 1[w < 1−ε_low ∧ A < 0],
// clip_frac_high = mean 1[w > 1+ε_high ∧ A > 0], clip_frac = their sum (disjoint events),
// approx_kl = ½·mean((ℓ − ℓ_old)²) of the raw (unclamped) difference. Metrics use w before the δ cap.
//
// Fused: the forward pass computes the loss, ∂L/∂ℓ (only when a gradient is needed) and the metric
// counts in one read of the inputs; autograd saves only ∂L/∂ℓ, and the backward is one elementwise pass
// (grad · ∂L/∂ℓ, selected to 0 where ∂L/∂ℓ = 0, so masked positions stay 0 even for a NaN grad).
// Masked positions output 0 and get gradient 0 whatever their inputs (select, never multiply).
//
// Shapes: logprobs, old_logprobs, mask [B, T]; advantages [B] (broadcast over T) or [B, T].
// Dtypes: logprobs/old_logprobs float32/float64/bfloat16/float16 (the same); advantages any floating
// dtype (read in the accumulation dtype); mask bool or any dtype (!= 0). The per-token loss has the
// input dtype; ∂L/∂ℓ and the metrics are float32 (float64 for float64 inputs), the accumulation dtype.
#pragma once
#include <ATen/ATen.h>

#include <cmath>
#include <limits>
#include <optional>

namespace llmrl::clipped_surrogate {

constexpr double kLogRatioClamp = 20.0;

// Clip parameters in the accumulation type. dual = 0 / delta = +inf mean "off".
template <typename acc>
struct Clip {
  acc lo, hi, dual, delta;
};

template <typename acc>
inline Clip<acc> make_clip(double eps_low, double eps_high, const std::optional<double>& dual_clip,
                           const std::optional<double>& delta) {
  return {acc(1.0 - eps_low), acc(1.0 + eps_high), dual_clip ? acc(*dual_clip) : acc(0),
          delta ? acc(*delta) : std::numeric_limits<acc>::infinity()};
}

// Loss and ∂loss/∂(log w) at ratio w = exp(log w) and advantage a (dw/d log w = w). Shared by the CPU
// and CUDA kernels of clipped_surrogate and sequence_clipped_surrogate. T is the accumulation type
// `acc` or (CPU) a GCC vector of it: only arithmetic, comparisons, `&` and `?:` on their results, so
// the code has no branches — CPU loops vectorise, CUDA warps do not diverge.
template <typename T, typename acc>
C10_HOST_DEVICE inline void surrogate(T w, T a, const Clip<acc>& c, T* loss, T* dloss) {
  const T zero = T{};
  // Unclipped term, optionally capped at δ (clamp(max=δ) passes the gradient at w == δ).
  const auto capped = w > c.delta;
  const T wu = capped ? zero + c.delta : w;
  const T dwu = capped ? zero : w;
  // Clipped term (clamp passes the gradient on the closed interval).
  const T wc = w < c.lo ? zero + c.lo : (w > c.hi ? zero + c.hi : w);
  const T dwc = ((w >= c.lo) & (w <= c.hi)) ? w : zero;
  const T u = wu * a, v = wc * a;
  // −min(u, v); torch.minimum splits the gradient evenly on a tie.
  const T l = u < v ? -u : -v;
  const T d = u < v ? -a * dwu : (v < u ? -a * dwc : (dwu + dwc) * a * acc(-0.5));
  if (c.dual > acc(0)) {  // dual-clip for A < 0: min(L, −c·A), the cap being constant (tie: half)
    const T cap = a * -c.dual;
    const auto neg = a < zero;
    const auto lower = neg & (cap < l);
    const auto tie = neg & (cap == l);
    *loss = lower ? cap : l;
    *dloss = lower ? zero : (tie ? d * acc(0.5) : d);
  } else {
    *loss = l;
    *dloss = d;
  }
}

// The clamped log-ratio and whether the clamp passes the gradient.
template <typename acc>
C10_HOST_DEVICE inline acc clamp_log_ratio(acc lp, acc old, bool* inside) {
  const acc x = lp - old;
  const acc lo = acc(-kLogRatioClamp), hi = acc(kLogRatioClamp);
  *inside = x >= lo && x <= hi;
  return x < lo ? lo : (x > hi ? hi : x);
}

template <typename acc>
C10_HOST_DEVICE inline acc exp_acc(acc x) {
#ifdef __CUDA_ARCH__
  return ::exp(x);
#else
  return std::exp(x);
#endif
}

// Argument checks shared by clipped_surrogate and sequence_clipped_surrogate (op names the op in the
// messages). Returns the mask as a contiguous bool tensor. Inline so either op folder builds alone.
inline at::Tensor check_surrogate_inputs(const char* op, const at::Tensor& logprobs, const at::Tensor& old_logprobs,
                                         const at::Tensor& advantages, const at::Tensor& mask, double eps_low,
                                         double eps_high, const std::optional<double>& dual_clip,
                                         const std::optional<double>& delta) {
  TORCH_CHECK(logprobs.dim() == 2, op, ": 'logprobs' must have shape [B, T], got ", logprobs.sizes());
  TORCH_CHECK(at::isFloatingType(logprobs.scalar_type()), op, ": 'logprobs' must be a floating tensor, got ",
              logprobs.scalar_type());
  auto same = [&](const at::Tensor& t, const char* name) {
    TORCH_CHECK(t.sizes() == logprobs.sizes(), op, ": '", name, "' must have the shape of 'logprobs' ",
                logprobs.sizes(), ", got ", t.sizes());
    TORCH_CHECK(t.device() == logprobs.device(), op, ": '", name, "' must be on ", logprobs.device(),
                " like 'logprobs', got ", t.device());
  };
  same(old_logprobs, "old_logprobs");
  TORCH_CHECK(old_logprobs.scalar_type() == logprobs.scalar_type(), op, ": 'old_logprobs' must have dtype ",
              logprobs.scalar_type(), " like 'logprobs', got ", old_logprobs.scalar_type());
  same(mask, "mask");
  const int64_t B = logprobs.size(0);
  TORCH_CHECK(advantages.sizes() == logprobs.sizes() || (advantages.dim() == 1 && advantages.size(0) == B), op,
              ": 'advantages' must have shape [B] = [", B, "] or [B, T] = ", logprobs.sizes(), ", got ",
              advantages.sizes());
  TORCH_CHECK(advantages.device() == logprobs.device(), op, ": 'advantages' must be on ", logprobs.device(),
              " like 'logprobs', got ", advantages.device());
  TORCH_CHECK(at::isFloatingType(advantages.scalar_type()), op, ": 'advantages' must be a floating tensor, got ",
              advantages.scalar_type());
  TORCH_CHECK(eps_low >= 0 && std::isfinite(eps_low), op, ": 'eps_low' must be a finite number >= 0, got ", eps_low);
  TORCH_CHECK(eps_high >= 0 && std::isfinite(eps_high), op, ": 'eps_high' must be a finite number >= 0, got ",
              eps_high);
  TORCH_CHECK(!dual_clip || (*dual_clip > 1 && std::isfinite(*dual_clip)), op,
              ": 'dual_clip' must be a finite number > 1, got ", dual_clip.value_or(0));
  TORCH_CHECK(!delta || (*delta > 0 && std::isfinite(*delta)), op, ": 'delta' must be a finite number > 0, got ",
              delta.value_or(0));
  return mask.scalar_type() == at::kBool ? mask.contiguous() : mask.ne(0);
}

// The accumulation dtype of a floating input dtype: float64 for float64, float32 otherwise.
inline at::ScalarType acc_dtype(at::ScalarType t) { return t == at::kDouble ? at::kDouble : at::kFloat; }

// Device kernels (cpu.cpp / cuda.cu). The public op returns (loss, clip_frac, clip_frac_low,
// clip_frac_high, approx_kl); the internal forward returns (loss, stats [4] = the same four metrics,
// dloss = ∂L/∂ℓ in the accumulation dtype, undefined unless with_grad).
std::tuple<at::Tensor, at::Tensor, at::Tensor> forward_cpu(const at::Tensor& logprobs, const at::Tensor& old_logprobs,
                                                           const at::Tensor& advantages, const at::Tensor& mask,
                                                           double eps_low, double eps_high,
                                                           std::optional<double> dual_clip,
                                                           std::optional<double> delta, bool with_grad);
at::Tensor backward_cpu(const at::Tensor& grad, const at::Tensor& dloss);

using Metrics5 = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

// (loss, stats[4]) → the public op's (loss, clip_frac, clip_frac_low, clip_frac_high, approx_kl).
inline Metrics5 split_metrics(const at::Tensor& loss, const at::Tensor& stats) {
  return {loss, stats.select(0, 0), stats.select(0, 1), stats.select(0, 2), stats.select(0, 3)};
}

}  // namespace llmrl::clipped_surrogate
