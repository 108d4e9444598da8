// token_logprobs — log-probabilities of the target tokens (and optionally the entropy) from logits,
// in one pass per row, never writing a [N, V] intermediate (ALGORITHMS.md §1).
//
// Math, per row (one position of [B, T] or [N]), with z = logits / τ:
//   logZ = logsumexp_v z;   logp = z[target] − logZ (≤ 0);   H = logZ − Σ_v softmax(z)_v · z_v (≥ 0, nats)
//   ∂logp/∂logits_v = (1[v = target] − p_v) / τ;   ∂H/∂logits_v = −p_v · (log p_v + H) / τ,  p = softmax(z)
// Both gradients are summed when both outputs receive one.
//
// Forward: ONE read of the row with an online logsumexp. Each SIMD lane keeps a running max m, the
// rescaled sum s = Σ e^{z−m} and t = Σ e^{z−m}·(z − m); when a new max m' arrives, s ← s·e^{m−m'} and
// t ← e^{m−m'}·(t + s·(m − m')) (a rare branch for real logits). The lanes merge the same way at the end:
//   logZ = m + log s,  logp = (z_t − m) − log s,  H = log s − t/s.
// Keeping z − m (not z) in t avoids the cancellation of logZ − Σ p·z for large logits.
// Backward: recomputes p_v = e^{z_v − logZ} from the saved logits and logZ (never a saved softmax) and
// writes grad_logits in one pass: −p_v·(g + g_H·(log p_v + H))/τ, plus g/τ at the target.
//
// Shapes: logits [..., V] (e.g. [B, T, V] or [N, V]; any strides with a unit stride on V are read in
// place — e.g. logits[:, :-1] — other layouts are made contiguous), targets [...] int64 (logits' leading
// shape). logprobs/entropy have targets' shape and logits' dtype; grad_logits is contiguous [..., V].
// Numerics: float32 accumulation for float32/bfloat16/float16 logits, float64 for float64. −inf logits
// (masked vocabulary) get p = 0, contribute 0 to H (0·(−inf) is kept out by flooring log p at kLogFloor)
// and get gradient 0. NaN logits give NaN. A row of only −inf has no distribution: NaN.
// Errors: a target outside [0, V) is an error naming the value and V (CPU: checked as each row is
// read; CUDA: a device flag read back after the forward kernel, one sync per forward call).
// Gradients: once differentiable (the backward op has no autograd kernel); no gradient to targets.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <optional>
#include <tuple>

namespace llmrl::token_logprobs {

// log p below this is treated as p = 0 in the entropy terms: e^{kLogFloor} underflows to 0 in the
// accumulation dtype, and flooring keeps 0·(−inf) = NaN out of p·log p. Also the lower clamp of the
// max-rescale exponent (a lane that has only seen −inf).
template <typename acc> constexpr acc kLogFloor = acc(-200);
template <> inline constexpr double kLogFloor<double> = -1000.0;
// Start of a running max: the lowest finite value (a constant, usable in device code without
// --expt-relaxed-constexpr, unlike std::numeric_limits).
template <typename acc> constexpr acc kLowest = acc(-3.40282347e+38f);
template <> inline constexpr double kLowest<double> = -1.7976931348623157e+308;

// Validated inputs shared by the CPU and CUDA kernels.
struct Inputs {
  at::Tensor logits;   // [..., V], unit stride on the last dim (possibly a non-contiguous view)
  at::Tensor targets;  // [N] int64 contiguous
  at::Tensor offsets;  // [N] int64 CPU: element offset of each row, or undefined when rows are packed
  int64_t n = 0, v = 0;
  double inv_tau = 1.0;
};

// Checks shapes, dtypes, devices and temperature (messages name the op and argument). `op` names the
// calling op ("token_logprobs" or "token_logprobs_backward").
Inputs check_inputs(const char* op, const at::Tensor& logits, const at::Tensor& targets, double temperature);

// The accumulation dtype: float64 for float64 logits, float32 otherwise.
inline at::ScalarType acc_dtype(at::ScalarType t) { return t == at::kDouble ? at::kDouble : at::kFloat; }

// Throws the out-of-range target error (shared by CPU and CUDA).
[[noreturn]] void bad_target(const char* op, int64_t value, int64_t row, int64_t v);

// ---- per-row math shared by the CPU and CUDA kernels (acc = float or double) ----

template <typename acc>
C10_HOST_DEVICE inline acc exp_(acc x) {
#ifdef __CUDA_ARCH__
  return ::exp(x);
#else
  return std::exp(x);
#endif
}

template <typename acc>
C10_HOST_DEVICE inline acc log_(acc x) {
#ifdef __CUDA_ARCH__
  return ::log(x);
#else
  return std::log(x);
#endif
}

// Online state of a (part of a) row: m = running max of z, s = Σ e^{z−m}, t = Σ e^{z−m}·(z−m).
// m starts at the lowest finite value (not −inf) so that m − m' never becomes −inf − (−inf).
template <typename acc>
struct Stats {
  acc m, s, t;
};

// Adds one z to the state.
template <typename acc>
C10_HOST_DEVICE inline void push(Stats<acc>& st, acc z) {
  if (z > st.m) {  // new max: rescale what is there (e^{m−z} is 0 for a state that has seen only −inf)
    acc d = st.m - z;
    d = d > kLogFloor<acc> ? d : kLogFloor<acc>;
    const acc e = exp_(d);
    st.t = e * (st.t + st.s * d);
    st.s = e * st.s;
    st.m = z;
  }
  const acc d = z - st.m;
  const acc p = exp_(d);
  st.s += p;
  st.t += p * (d > kLogFloor<acc> ? d : kLogFloor<acc>);
}

// Merges two states (associative; used for lanes, threads and warps).
template <typename acc>
C10_HOST_DEVICE inline Stats<acc> merge(const Stats<acc>& a, const Stats<acc>& b) {
  const acc m = a.m > b.m ? a.m : b.m;
  acc da = a.m - m, db = b.m - m;
  da = da > kLogFloor<acc> ? da : kLogFloor<acc>;
  db = db > kLogFloor<acc> ? db : kLogFloor<acc>;
  const acc ea = exp_(da), eb = exp_(db);
  return {m, a.s * ea + b.s * eb, ea * (a.t + a.s * da) + eb * (b.t + b.s * db)};
}

// Finishes a row from its merged state and zt = z[target]: logZ, logp = (zt − m) − log s (≤ 0, since
// zt ≤ m and s ≥ 1) and H = log s − t/s (≥ 0, since t ≤ 0). Both are clamped against rounding (e.g. a
// contracted fma in zt − m) in a way that keeps NaN.
template <typename acc>
C10_HOST_DEVICE inline void finish(const Stats<acc>& st, acc zt, acc* logz, acc* logp, acc* ent) {
  const acc ls = log_(st.s);
  *logz = st.m + ls;
  const acc lp = (zt - st.m) - ls;
  *logp = lp > acc(0) ? acc(0) : lp;
  const acc h = ls - st.t / st.s;
  *ent = h < acc(0) ? acc(0) : h;
}

// ∂L/∂logits_v for a non-target v, given d = z_v − logZ (= log p_v) and the row's coefficients
// c0 = −(g + g_H·H)/τ, c1 = −g_H/τ: p·(c0 + c1·max(d, floor)). The target adds g/τ.
template <typename acc>
C10_HOST_DEVICE inline acc grad_logit(acc d, acc c0, acc c1) {
  const acc p = exp_(d);
  return p * (c0 + c1 * (d > kLogFloor<acc> ? d : kLogFloor<acc>));
}

// ---- CPU ops (cpu.cpp) ----
std::tuple<at::Tensor, at::Tensor, at::Tensor> token_logprobs_forward_cpu(const at::Tensor& logits,
                                                                          const at::Tensor& targets,
                                                                          double temperature, bool with_entropy);
at::Tensor token_logprobs_backward_cpu(const std::optional<at::Tensor>& grad_logprobs,
                                       const std::optional<at::Tensor>& grad_entropy, const at::Tensor& logits,
                                       const at::Tensor& targets, const at::Tensor& logz,
                                       const std::optional<at::Tensor>& entropy, double temperature);

// Which CPU code path runs the row loops: 0 = auto (best the CPU supports), 1 = scalar, 2 = AVX2,
// 3 = AVX-512. The env var LLMRL_TOKEN_LOGPROBS_ISA=scalar|avx2|avx512 sets it at load; tests and
// benchmarks may force a path (a path the CPU lacks falls back to the best supported one).
// Returns the path actually used.
int set_cpu_path_for_testing(int path);
int cpu_path();

}  // namespace llmrl::token_logprobs
