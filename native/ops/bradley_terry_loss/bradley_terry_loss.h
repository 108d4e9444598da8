// bradley_terry_loss — the reward-model pairwise loss (ALGORITHMS.md §8; Bradley & Terry 1952, as in
// InstructGPT and TRL's `RewardTrainer`, with Llama 2's margin and TRL's `center_rewards_coefficient`).
//
// Scores r_c, r_r [B] (the value head on the last non-pad token, computed by the trainer), margin m [B]
// (optional, a constant — 0 when absent):
//   L = −mean_b logσ(r_c − r_r − m) + center_coef · mean_b (r_c + r_r)²
//   ∂L/∂r_c = [−σ(−d) + 2·center_coef·(r_c + r_r)] / B,  ∂L/∂r_r = [σ(−d) + 2·center_coef·(r_c + r_r)] / B,
//   with d = r_c − r_r − m.
// Metrics (no gradient): accuracy = mean 1[r_c > r_r] (the margin plays no part), mean_margin =
// mean (r_c − r_r). Gradient flows to both scores; margin is a constant. B == 0 → all outputs 0.
//
// Numerics: logσ(x) = min(x, 0) − log1p(e^−|x|), so huge score gaps stay finite. Per-pair math in float32
// (float64 for float64 scores); margin (any floating dtype) is read in that precision; batch sums in
// float64, fixed order (deterministic). Outputs are 0-dim float32 (float64 for float64 scores);
// gradients come back in the scores' dtype.
#pragma once
#include <ATen/ATen.h>

#include <cmath>
#include <optional>
#include <tuple>

namespace llmrl::bradley_terry_loss {

// Validated, contiguous inputs; margin (undefined when absent) is in acc_dtype.
struct Inputs {
  at::Tensor chosen, rejected, margin;
  at::ScalarType acc_dtype;
};

Inputs check_inputs(const at::Tensor& chosen, const at::Tensor& rejected, const std::optional<at::Tensor>& margin,
                    double center_coef);

// One pair: loss and ∂loss/∂r_c, ∂loss/∂r_r (before the 1/B of the mean). With e = e^−|d| (never
// overflows): −logσ(d) = max(−d, 0) + log1p(e); σ(−d) = e/(1+e) for d ≥ 0, else 1/(1+e). One exp and, for
// the loss (kLoss; the backward skips it), one log: log1p(e) = log(u)·e/(u − 1) with u = 1 + e on the host
// (Goldberg; ≤ 3 ulp, ~3× faster than glibc's log1pf), log1p on the device.
template <typename acc, bool kLoss>
C10_HOST_DEVICE inline void pair(acc rc, acc rr, acc m, acc center, acc* loss, acc* dc, acc* dr) {
  const acc d = rc - rr - m, s = rc + rr;
#ifdef __CUDA_ARCH__
  const acc e = ::exp(-::fabs(d));
  const acc l1p = kLoss ? ::log1p(e) : acc(0);
#else
  const acc e = std::exp(-std::fabs(d)), u = acc(1) + e;
  const acc l1p = !kLoss ? acc(0) : (u == acc(1) ? e : std::log(u) * (e / (u - acc(1))));
#endif
  const acc inv = acc(1) / (acc(1) + e);
  const acc sn = d >= acc(0) ? e * inv : inv;  // σ(−d)
  *loss = kLoss ? (d < acc(0) ? -d : acc(0)) + l1p + center * s * s : acc(0);
  *dc = -sn + acc(2) * center * s;
  *dr = sn + acc(2) * center * s;
}

// Batch sums the forward reduces: loss, 1[r_c > r_r], r_c − r_r.
constexpr int kSums = 3;

using Outputs = std::tuple<at::Tensor, at::Tensor, at::Tensor>;

Outputs bradley_terry_loss_cpu(const at::Tensor& chosen, const at::Tensor& rejected,
                               const std::optional<at::Tensor>& margin, double center_coef);
std::tuple<at::Tensor, at::Tensor> bradley_terry_loss_backward_cpu(const at::Tensor& grad, const at::Tensor& chosen,
                                                                   const at::Tensor& rejected,
                                                                   const std::optional<at::Tensor>& margin,
                                                                   double center_coef);

}  // namespace llmrl::bradley_terry_loss
