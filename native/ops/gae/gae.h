// gae — Generalized Advantage Estimation for PPO (ALGORITHMS.md §3a; Schulman et al. 2016,
// "High-Dimensional Continuous Control Using Generalized Advantage Estimation").
//
// Per row b, a reverse scan over the VALID positions only (mask != 0):
//   δ_t = r_t + γ·V_next − V_t        A_t = δ_t + γλ·A_next        returns_t = A_t + V_t
// where V_next / A_next are the value / advantage of the next VALID position of the row (a masked gap
// inside a sequence is skipped, so they carry over it) and 0 past the last valid token.
// Masked positions return 0 in both outputs and are never read (NaN/Inf there cannot leak).
// Check: λ=0, γ=1, r=[0,0,5], V=[1,2,3] → A=[1,1,2].
//
// Shapes: rewards, values, mask [B, T] (mask bool or any dtype, nonzero = valid); outputs [B, T] in the
// dtype of rewards (values must have the same dtype).
// Numerics: the scan accumulates in float32 for float32/bfloat16/float16 inputs, float64 for float64.
//
// No gradient: GAE outputs are regression/policy TARGETS and the inputs are treated as constants (PPO
// computes them from a rollout without grad). The op registers a no-grad Autograd kernel (autograd.cpp)
// that runs the CPU/CUDA kernel below autograd, so the outputs never require grad — even when rewards or
// values do — and no graph is kept.
// CPU: rows in parallel. CUDA: one thread per row (rows are independent; T is scanned sequentially).
#pragma once
#include <ATen/ATen.h>

#include <tuple>

namespace llmrl::gae {

// Checks shapes/dtypes/devices and gamma/lambda; returns the mask as a contiguous bool tensor.
at::Tensor check_inputs(const at::Tensor& rewards, const at::Tensor& values, const at::Tensor& mask,
                        double gamma, double lam);

// Scans one row of length T backwards (shared by the CPU and CUDA kernels). acc = float or double.
template <typename scalar_t, typename acc>
C10_HOST_DEVICE inline void scan_row(const scalar_t* r, const scalar_t* v, const bool* m, int64_t T,
                                     acc gamma, acc gamma_lam, scalar_t* adv, scalar_t* ret) {
  acc next_v = acc(0), next_a = acc(0);
  for (int64_t t = T - 1; t >= 0; --t) {
    if (!m[t]) {  // skipped: the carried next_v / next_a stay those of the next valid position
      adv[t] = scalar_t(0);
      ret[t] = scalar_t(0);
      continue;
    }
    const acc vt = acc(v[t]);
    const acc a = acc(r[t]) + gamma * next_v - vt + gamma_lam * next_a;
    adv[t] = static_cast<scalar_t>(a);
    ret[t] = static_cast<scalar_t>(a + vt);
    next_v = vt;
    next_a = a;
  }
}

std::tuple<at::Tensor, at::Tensor> gae_cpu(const at::Tensor& rewards, const at::Tensor& values,
                                           const at::Tensor& mask, double gamma, double lam);

}  // namespace llmrl::gae
