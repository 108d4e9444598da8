// preference_loss — the DPO family of pairwise preference losses (ALGORITHMS.md §7): DPO (Rafailov et
// al. 2023, "sigmoid"), cDPO label smoothing, IPO (Azar et al. 2023), SLiC hinge (Zhao et al. 2023) and
// robust DPO (Chowdhury et al. 2024), with TRL's `DPOTrainer` numbers.
//
// Inputs are sequence log-probs [B] (sums over completion tokens, computed by the trainer):
//   ρ_c = logπ(y_c) − logπ_ref(y_c),  ρ_r = logπ(y_r) − logπ_ref(y_r)   (reference_free: logπ_ref = 0)
//   z = β(ρ_c − ρ_r), ε = label_smoothing, per pair:
//   sigmoid: −(1−ε)·logσ(z) − ε·logσ(−z)                 (ε = 0: plain DPO; 0 ≤ ε ≤ 0.5)
//   robust:  [−(1−ε)·logσ(z) + ε·logσ(−z)] / (1 − 2ε)     (0 ≤ ε < 0.5)
//   hinge:   max(0, 1 − z)                                (gradient 0 at z = 1, like torch.relu)
//   ipo:     (ρ_c/|y_c| − ρ_r/|y_r| − 1/(2β))²             (lengths |y| required, > 0)
// loss = mean over pairs. For ipo the log-ratios are per-token averages (ρ/|y|) — as in TRL, which
// divides policy and reference log-probs by the completion length before everything else — so for ipo
// the metrics below are computed from ρ/|y| too. Lengths are ignored by the other loss types.
// Metrics (no gradient), means over pairs: rewards_chosen = βρ_c, rewards_rejected = βρ_r,
// accuracy = 1[ρ_c > ρ_r], margin = β(ρ_c − ρ_r).
// Check: policy == reference → sigmoid loss = ln 2.
//
// Gradient flows to chosen_logps and rejected_logps only; the reference log-probs and lengths are
// constants. RPO's `sft_weight` NLL term is not part of this op (the trainer adds it from token log-probs).
// B == 0 → loss and metrics 0 (not NaN).
//
// Numerics: logσ(x) = min(x, 0) − log1p(e^−|x|) and σ without overflow, so |z| up to ~1e38 stays finite.
// Per-pair math in float32 (float64 for float64 inputs); the batch sums accumulate in float64 in a
// fixed order (deterministic). Outputs are 0-dim: float32 for float32/bfloat16/float16 inputs, float64
// for float64 inputs. Gradients come back in the input dtype.
#pragma once
#include <ATen/ATen.h>

#include <cmath>
#include <optional>
#include <string_view>
#include <tuple>

namespace llmrl::preference_loss {

enum class LossType : int { sigmoid = 0, ipo = 1, hinge = 2, robust = 3 };

// Parses the loss type; throws a c10::Error naming the op and the allowed values.
LossType parse_loss_type(std::string_view name);

// Validated, contiguous inputs. ref_* are undefined when reference_free; *_len are undefined unless ipo
// (then in the accumulation dtype). acc_dtype = float32, or float64 for float64 inputs.
struct Inputs {
  at::Tensor chosen, rejected, ref_chosen, ref_rejected, chosen_len, rejected_len;
  LossType type;
  at::ScalarType acc_dtype;
};

// Argument checks (shapes [B], dtypes, devices, beta, label_smoothing, lengths). check_lengths_positive
// reads the lengths' values (a device sync on CUDA), done by the forward only.
Inputs check_inputs(const at::Tensor& chosen, const at::Tensor& rejected,
                    const std::optional<at::Tensor>& ref_chosen, const std::optional<at::Tensor>& ref_rejected,
                    c10::string_view loss_type, double beta, double label_smoothing,
                    const std::optional<at::Tensor>& chosen_lengths,
                    const std::optional<at::Tensor>& rejected_lengths, bool reference_free,
                    bool check_lengths_positive);

// e^−|x|, the one exponential a pair needs.
template <typename acc>
C10_HOST_DEVICE inline acc exp_neg_abs(acc x) {
#ifdef __CUDA_ARCH__
  return ::exp(-::fabs(x));
#else
  return std::exp(-std::fabs(x));
#endif
}

// log1p(e) for e ∈ [0, 1]. Host: Goldberg's log(u)·e/(u − 1) with u = 1 + e (≤ 3 ulp; glibc's log1pf is
// ~3× slower than logf and dominated the kernel); device: log1p.
template <typename acc>
C10_HOST_DEVICE inline acc log1p_unit(acc e) {
#ifdef __CUDA_ARCH__
  return ::log1p(e);
#else
  const acc u = acc(1) + e;
  return u == acc(1) ? e : std::log(u) * (e / (u - acc(1)));
#endif
}

// One pair. c, r: policy log-probs; rc, rr: reference log-probs (0 when reference-free); lc, lr: lengths
// (used by ipo only). Writes the pair's loss, ∂loss/∂c, ∂loss/∂r and the log-ratios the metrics use
// (ρ, or ρ/|y| for ipo). kLoss = false (the backward) skips the loss value and its logarithm.
template <typename acc, bool kLoss>
C10_HOST_DEVICE inline void pair(acc c, acc r, acc rc, acc rr, acc lc, acc lr, int type, acc beta, acc eps,
                                 acc* loss, acc* dc, acc* dr, acc* rho_c, acc* rho_r) {
  acc xc = c - rc, xr = r - rr;
  if (type == static_cast<int>(LossType::ipo)) {
    xc = xc / lc;
    xr = xr / lr;
    const acc u = xc - xr - acc(1) / (acc(2) * beta);
    *loss = u * u;
    *dc = acc(2) * u / lc;
    *dr = acc(-2) * u / lr;
  } else {
    const acc z = beta * (xc - xr);
    acc l, dz;  // loss and ∂loss/∂z
    if (type == static_cast<int>(LossType::hinge)) {
      l = z < acc(1) ? acc(1) - z : acc(0);
      dz = z < acc(1) ? acc(-1) : acc(0);
    } else {
      // With e = e^−|z| (never overflows): logσ(±z) = min(±z, 0) − log1p(e); σ(z) = 1/(1+e) for z ≥ 0
      // and e/(1+e) otherwise, σ(−z) the other one — both without cancellation. One exp, one log.
      const acc e = exp_neg_abs<acc>(z), l1p = kLoss ? log1p_unit<acc>(e) : acc(0), inv = acc(1) / (acc(1) + e);
      const acc pos = z >= acc(0) ? inv : e * inv, neg = z >= acc(0) ? e * inv : inv;  // σ(z), σ(−z)
      const acc ls_pos = (z < acc(0) ? z : acc(0)) - l1p, ls_neg = (z > acc(0) ? -z : acc(0)) - l1p;
      if (type == static_cast<int>(LossType::sigmoid)) {
        l = -(acc(1) - eps) * ls_pos - eps * ls_neg;
        dz = -(acc(1) - eps) * neg + eps * pos;
      } else {  // robust
        const acc k = acc(1) / (acc(1) - acc(2) * eps);
        l = (-(acc(1) - eps) * ls_pos + eps * ls_neg) * k;
        dz = (-(acc(1) - eps) * neg - eps * pos) * k;
      }
    }
    *loss = l;
    *dc = beta * dz;
    *dr = -beta * dz;
  }
  *rho_c = xc;
  *rho_r = xr;
}

// Number of batch sums the forward reduces: loss, βρ_c, βρ_r, 1[ρ_c > ρ_r], β(ρ_c − ρ_r).
constexpr int kSums = 5;

using Outputs = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

Outputs preference_loss_cpu(const at::Tensor& chosen, const at::Tensor& rejected,
                            const std::optional<at::Tensor>& ref_chosen,
                            const std::optional<at::Tensor>& ref_rejected, c10::string_view loss_type,
                            double beta, double label_smoothing, const std::optional<at::Tensor>& chosen_lengths,
                            const std::optional<at::Tensor>& rejected_lengths, bool reference_free);
std::tuple<at::Tensor, at::Tensor> preference_loss_backward_cpu(
    const at::Tensor& grad, const at::Tensor& chosen, const at::Tensor& rejected,
    const std::optional<at::Tensor>& ref_chosen, const std::optional<at::Tensor>& ref_rejected,
    c10::string_view loss_type, double beta, double label_smoothing,
    const std::optional<at::Tensor>& chosen_lengths, const std::optional<at::Tensor>& rejected_lengths,
    bool reference_free);

}  // namespace llmrl::preference_loss
