// sequence_clipped_surrogate — GSPO's sequence-level clipped surrogate and its per-token variant, one
// fused pass per row (ALGORITHMS.md §4b, §4c; GSPO: Zheng et al. 2025, "Group Sequence Policy
// Optimization").
//
// Per row b with n_b = Σ_t m, x_t = clamp(ℓ_t − ℓ_old,t, −20, 20):
//   log s_b = Σ_t m·x_t / max(1, n_b)      (length-normalised: geometric mean of token ratios; NOT detached)
//   s_b = exp(log s_b);  L(s, A) = the token-level surrogate of clipped_surrogate.h (ε_low, ε_high,
//   optional dual-clip c and δ cap), evaluated at ratio s.
// level 'sequence' (GSPO): advantages A_b [B]; L_b = L(s_b, A_b). Every valid token of row b carries
//   L_b in the per-token output (padding 0), so aggregating with seq_mean_token_mean gives the paper's
//   mean over sequences, and token_mean the length-weighted mean (TRL's GSPO). Gradient:
//   ∂L_b/∂ℓ_t = L'(s_b)·m_t·1[|ℓ_t − ℓ_old,t| ≤ 20]/max(1, n_b). Backward for an incoming per-token grad g:
//   ∂/∂ℓ_t = (Σ_u m_u g_u) · ∂L_b/∂ℓ_t.
// level 'sequence_token' (GSPO-token): log w_t = sg[log s_b] + ℓ_t − sg[ℓ_t] — value s_b, gradient per
//   token: L_t = L(s_b, A_t), ∂L_t/∂ℓ_t = L'(s_b) (advantages [B] or [B, T]). With A_t = A_b and
//   seq_mean_token_mean aggregation, value and gradient equal level 'sequence' (no token at the clamp).
// Metrics (§4c): at 'sequence', means over valid sequences (n_b > 0) of 1[s_b < 1−ε_low ∧ A_b < 0],
//   1[s_b > 1+ε_high ∧ A_b > 0], and approx_kl = ½·mean_b(Σ_t m·(ℓ−ℓ_old)²/n_b); at 'sequence_token',
//   masked token means with w_t = s_b and A_t, approx_kl = ½·mean((ℓ−ℓ_old)²).
// Fully masked rows output 0, get gradient 0 and count in no denominator. Masked inputs are never read.
//
// Shapes: logprobs, old_logprobs, mask [B, T]; advantages [B] (or [B, T] at 'sequence_token').
// Dtypes and outputs as in clipped_surrogate.h: per-token loss in the input dtype; ∂L/∂ℓ (saved for the
// backward) and metrics in float32 (float64 for float64 inputs).
#pragma once
#include "clipped_surrogate/clipped_surrogate.h"

#include <string_view>

namespace llmrl::sequence_clipped_surrogate {

using clipped_surrogate::Clip;

enum class Level : int { sequence = 0, sequence_token = 1 };

inline Level parse_level(std::string_view name) {
  if (name == "sequence") return Level::sequence;
  if (name == "sequence_token") return Level::sequence_token;
  TORCH_CHECK(false, "sequence_clipped_surrogate: 'level' must be 'sequence' or 'sequence_token', got '", name, "'");
}

// Shared checks plus the level rule on advantages; returns the bool mask.
inline at::Tensor check_inputs(const at::Tensor& logprobs, const at::Tensor& old_logprobs,
                               const at::Tensor& advantages, const at::Tensor& mask, double eps_low, double eps_high,
                               const std::optional<double>& dual_clip, const std::optional<double>& delta,
                               Level level) {
  at::Tensor m = clipped_surrogate::check_surrogate_inputs("sequence_clipped_surrogate", logprobs, old_logprobs,
                                                           advantages, mask, eps_low, eps_high, dual_clip, delta);
  TORCH_CHECK(level != Level::sequence || advantages.dim() == 1,
              "sequence_clipped_surrogate: 'advantages' must have shape [B] = [", logprobs.size(0),
              "] at level 'sequence' (one advantage per sequence; use level 'sequence_token' for per-token "
              "advantages), got ", advantages.sizes());
  return m;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> forward_cpu(const at::Tensor& logprobs, const at::Tensor& old_logprobs,
                                                           const at::Tensor& advantages, const at::Tensor& mask,
                                                           double eps_low, double eps_high,
                                                           std::optional<double> dual_clip,
                                                           std::optional<double> delta, c10::string_view level,
                                                           bool with_grad);
at::Tensor backward_cpu(const at::Tensor& grad, const at::Tensor& dloss, const at::Tensor& mask,
                        c10::string_view level);

}  // namespace llmrl::sequence_clipped_surrogate
