// group_advantages — group-relative advantages for GRPO / GSPO / RLOO / Dr. GRPO (ALGORITHMS.md §3d;
// Shao et al. 2024 "DeepSeekMath" (GRPO), Ahmadian et al. 2024 (RLOO), Liu et al. 2025 (Dr. GRPO)).
//
// rewards R [B], grouped in consecutive blocks of G = group_size (B = n_prompts·G). Per group, over the
// non-NaN rewards only (n valid): μ = mean, σ = std with Bessel correction (σ = 0 when n ≤ 1).
//   scale='group' (default): A = (R − μ)/(σ + 1e-4)       — ε added to σ, TRL's exact behaviour
//   scale='batch':           A = (R − μ)/(σ_batch + 1e-4)  — group mean, Bessel std of all valid rewards
//   scale='none' (Dr. GRPO): A = R − μ
//   scale='rloo':            A_i = R_i − (Σ_{j≠i} R_j)/(n − 1)   (0 when n ≤ 1)
// A row whose reward is NaN ("the reward function returned nothing") gets A = 0 and is left out of μ/σ;
// a group with no valid reward gives zeros. Only NaN is excluded: ±Inf is a (bad) reward and propagates.
//
// Outputs: (advantages [B], group_std [B/G]) in the dtype of rewards. group_std is always the PER-GROUP σ
// above (also with scale='batch'/'none'/'rloo'), so trainers log groups/zeroStdFrac = mean(group_std ≈ 0)
// (TRL: isclose(std, 0)). Note TRL's frac_reward_zero_std under scale='batch' uses the batch std instead.
// Errors: rewards not 1-D, B not divisible by G, G < 1 (G < 2 for 'group' and 'rloo'), unknown scale.
//
// No gradient: advantages are targets, rewards are constants (computed by reward functions). Like gae,
// a no-grad Autograd kernel (autograd.cpp) runs the kernel below autograd: outputs never require grad.
// Numerics: float64 accumulation for every dtype (groups are small). CPU: groups in parallel.
// CUDA: one thread per group (plus a one-block reduction for the batch std).
#pragma once
#include <ATen/ATen.h>

#include <cmath>
#include <string_view>
#include <tuple>

namespace llmrl::group_advantages {

enum class Scale : int { group = 0, batch = 1, none = 2, rloo = 3 };

// Parses the scale name; throws a c10::Error naming the op, the argument and the allowed values.
Scale parse_scale(std::string_view name);

// Checks rewards/group_size against the scale.
void check_inputs(const at::Tensor& rewards, int64_t group_size, Scale scale);

constexpr double kStdEps = 1e-4;

// Mean, Bessel std and count of the non-NaN entries of r[0, n) (two-pass; std = 0 when count ≤ 1).
template <typename scalar_t>
C10_HOST_DEVICE inline void nan_mean_std(const scalar_t* r, int64_t n, double* mean, double* std, int64_t* count) {
  double s = 0;
  int64_t c = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double x = static_cast<double>(r[i]);
    if (x == x) { s += x; ++c; }  // x != x ⇔ NaN (works on host and device)
  }
  const double mu = c > 0 ? s / double(c) : 0.0;
  double q = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double x = static_cast<double>(r[i]);
    if (x == x) q += (x - mu) * (x - mu);
  }
  *mean = mu;
  *count = c;
#ifdef __CUDA_ARCH__
  *std = c > 1 ? ::sqrt(q / double(c - 1)) : 0.0;
#else
  *std = c > 1 ? std::sqrt(q / double(c - 1)) : 0.0;
#endif
}

// One group of G rewards → G advantages and its std (shared by the CPU and CUDA kernels).
template <typename scalar_t>
C10_HOST_DEVICE inline void group_row(const scalar_t* r, int64_t G, int scale, double batch_std,
                                      scalar_t* adv, scalar_t* group_std) {
  double mu, sd;
  int64_t c;
  nan_mean_std(r, G, &mu, &sd, &c);
  *group_std = static_cast<scalar_t>(sd);
  double sum = mu * double(c);  // Σ valid R, for rloo
  for (int64_t i = 0; i < G; ++i) {
    const double x = static_cast<double>(r[i]);
    double a = 0;
    if (x == x) {
      switch (scale) {
        case 0: a = (x - mu) / (sd + kStdEps); break;
        case 1: a = (x - mu) / (batch_std + kStdEps); break;
        case 2: a = x - mu; break;
        default: a = c > 1 ? x - (sum - x) / double(c - 1) : 0.0; break;
      }
    }
    adv[i] = static_cast<scalar_t>(a);
  }
}

std::tuple<at::Tensor, at::Tensor> group_advantages_cpu(const at::Tensor& rewards, int64_t group_size,
                                                        c10::string_view scale);

}  // namespace llmrl::group_advantages
