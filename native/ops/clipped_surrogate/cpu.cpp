// clipped_surrogate CPU kernels (see clipped_surrogate.h, ALGORITHMS.md §4a/§4c): one parallel pass over
// rows computes the per-token loss, ∂L/∂ℓ (when asked) and per-row metric sums; the row sums are then
// combined in row order, so the metrics do not depend on the thread count. float32/bfloat16/float16
// rows run in 4 float lanes (simd4.h: branch-free selects, vector exp); float64 one position at a time.
// The backward is one elementwise pass.
#include "clipped_surrogate/clipped_surrogate.h"
#include "clipped_surrogate/simd4.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <type_traits>
#include <vector>

namespace llmrl::clipped_surrogate {
namespace {

using simd4::f4;
using simd4::i4;

// Row sums of the metrics, per lane: valid tokens, low-clipped, high-clipped, Σ (ℓ − ℓ_old)².
struct Sums4 {
  f4 n{}, low{}, high{}, kl{};
};

// Four positions of a row in float32 lanes (float32/bfloat16/float16 inputs). Masked lanes read as
// (0, 0, A = 0) — garbage never enters the math — and their outputs are selected to 0.
template <typename scalar_t>
inline void block4(const scalar_t* lp, const scalar_t* old, const float* adv, bool adv_per_token, const bool* m,
                   const Clip<float>& clip, scalar_t* out, float* dout, Sums4& acc) {
  f4 xl = simd4::load4(lp, 4), xo = simd4::load4(old, 4);
  f4 a = adv_per_token ? simd4::load4(adv, 4) : simd4::splat(adv[0]);
  const i4 valid = simd4::load_mask4(m, 4);
  const f4 zero = {}, one = simd4::splat(1.f);
  xl = valid ? xl : zero;
  xo = valid ? xo : zero;
  a = valid ? a : zero;
  const f4 x0 = xl - xo;
  const float lim = float(kLogRatioClamp);
  const i4 inside = (x0 >= -lim) & (x0 <= lim);
  const f4 w = simd4::exp4(x0 < -lim ? zero - lim : (x0 > lim ? zero + lim : x0));
  f4 l, d;
  surrogate(w, a, clip, &l, &d);
  simd4::store4(out, valid ? l : zero, 4);
  if (dout) simd4::store4(dout, (valid & inside) ? d : zero, 4);
  acc.n += valid ? one : zero;
  acc.low += ((w < clip.lo) & (a < 0.f)) ? one : zero;  // a = 0 on masked lanes
  acc.high += ((w > clip.hi) & (a > 0.f)) ? one : zero;
  acc.kl += x0 * x0;
}

// One row [T] in float32 lanes; the tail goes through a zero-padded, masked block.
template <typename scalar_t>
void row_f32(const scalar_t* lp, const scalar_t* old, const float* adv, bool adv_per_token, const bool* m,
             const Clip<float>& clip, int64_t T, scalar_t* out, float* dout, double* sums) {
  Sums4 acc;
  int64_t t = 0;
  for (; t + 4 <= T; t += 4)
    block4(lp + t, old + t, adv_per_token ? adv + t : adv, adv_per_token, m + t, clip, out + t, dout ? dout + t : nullptr,
           acc);
  if (t < T) {
    const int rest = int(T - t);
    scalar_t tl[4] = {}, to[4] = {}, tout[4];
    float ta[4] = {}, tdout[4];
    bool tm[4] = {false, false, false, false};
    for (int j = 0; j < rest; ++j) {
      tl[j] = lp[t + j];
      to[j] = old[t + j];
      ta[j] = adv[adv_per_token ? t + j : 0];
      tm[j] = m[t + j];
    }
    block4(tl, to, ta, adv_per_token, tm, clip, tout, dout ? tdout : nullptr, acc);
    for (int j = 0; j < rest; ++j) {
      out[t + j] = tout[j];
      if (dout) dout[t + j] = tdout[j];
    }
  }
  sums[0] = simd4::hsum(acc.n);
  sums[1] = simd4::hsum(acc.low);
  sums[2] = simd4::hsum(acc.high);
  sums[3] = simd4::hsum(acc.kl);
}

// One row [T] in float64 (float64 inputs), one position at a time, branch-free like block4.
void row_f64(const double* lp, const double* old, const double* adv, bool adv_per_token, const bool* m,
             const Clip<double>& clip, int64_t T, double* out, double* dout, double* sums) {
  double n = 0, low = 0, high = 0, kl = 0;
  for (int64_t t = 0; t < T; ++t) {
    const bool valid = m[t];
    const double x_new = lp[t], x_old = old[t], x_adv = adv[adv_per_token ? t : 0];
    const double l_new = valid ? x_new : 0.0, l_old = valid ? x_old : 0.0, a = valid ? x_adv : 0.0;
    bool inside;
    const double w = exp_acc(clamp_log_ratio(l_new, l_old, &inside));
    double l, d;
    surrogate(w, a, clip, &l, &d);
    out[t] = valid ? l : 0.0;
    if (dout) dout[t] = valid && inside ? d : 0.0;
    n += valid ? 1.0 : 0.0;
    low += (w < clip.lo && a < 0) ? 1.0 : 0.0;
    high += (w > clip.hi && a > 0) ? 1.0 : 0.0;
    kl += (l_new - l_old) * (l_new - l_old);
  }
  sums[0] = n; sums[1] = low; sums[2] = high; sums[3] = kl;
}

// All rows in parallel (float lanes for float accumulation, float64 otherwise).
template <typename scalar_t, typename acc>
void run_rows(const scalar_t* lp, const scalar_t* old, const acc* adv, bool adv_per_token, const bool* m,
              const Clip<acc>& clip, int64_t B, int64_t T, scalar_t* out, acc* dout, double* rows) {
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(T, 1));
  at::parallel_for(0, B, grain, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t o = b * T;
      const acc* a = adv + (adv_per_token ? o : b);
      if constexpr (std::is_same_v<acc, float>) {
        row_f32(lp + o, old + o, a, adv_per_token, m + o, clip, T, out + o, dout ? dout + o : nullptr, rows + b * 4);
      } else {
        row_f64(lp + o, old + o, a, adv_per_token, m + o, clip, T, out + o, dout ? dout + o : nullptr, rows + b * 4);
      }
    }
  });
}

// grad · ∂L/∂ℓ, selected to 0 where ∂L/∂ℓ = 0 (masked, clipped, past the log-ratio clamp) so a NaN/Inf
// incoming grad at masked positions never leaks. float lanes for float accumulation.
template <typename scalar_t, typename acc>
void backward_elems(const scalar_t* g, const acc* d, int64_t n, scalar_t* out) {
  at::parallel_for(0, n, 32768, [&](int64_t begin, int64_t end) {
    if constexpr (std::is_same_v<acc, float>) {
      const f4 zero = {};
      for (int64_t i = begin; i < end; i += 4) {
        const int k = int(std::min<int64_t>(4, end - i));
        const f4 di = simd4::load4(d + i, k);
        simd4::store4(out + i, di != 0.f ? simd4::load4(g + i, k) * di : zero, k);
      }
    } else {
      for (int64_t i = begin; i < end; ++i) out[i] = d[i] == acc(0) ? scalar_t(0) : static_cast<scalar_t>(acc(g[i]) * d[i]);
    }
  });
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> forward_cpu(const at::Tensor& logprobs, const at::Tensor& old_logprobs,
                                                           const at::Tensor& advantages, const at::Tensor& mask,
                                                           double eps_low, double eps_high,
                                                           std::optional<double> dual_clip,
                                                           std::optional<double> delta, bool with_grad) {
  const at::Tensor m = check_surrogate_inputs("clipped_surrogate", logprobs, old_logprobs, advantages, mask, eps_low,
                                              eps_high, dual_clip, delta);
  const at::ScalarType acc_t = acc_dtype(logprobs.scalar_type());
  const at::Tensor lp = logprobs.contiguous(), old = old_logprobs.contiguous();
  const at::Tensor adv = advantages.to(acc_t).contiguous();
  const bool adv_per_token = adv.dim() == 2;
  const int64_t B = lp.size(0), T = lp.size(1);
  at::Tensor loss = at::empty_like(lp, at::MemoryFormat::Contiguous);
  at::Tensor dloss = with_grad ? at::empty(lp.sizes(), lp.options().dtype(acc_t)) : at::Tensor();
  // Per-row sums: valid tokens, low-clipped, high-clipped, Σ (ℓ − ℓ_old)².
  std::vector<double> rows(static_cast<size_t>(B) * 4, 0.0);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, lp.scalar_type(), "clipped_surrogate_cpu", [&] {
    using acc = at::opmath_type<scalar_t>;
    const Clip<acc> clip = make_clip<acc>(eps_low, eps_high, dual_clip, delta);
    const scalar_t* plp = lp.const_data_ptr<scalar_t>();
    const scalar_t* pold = old.const_data_ptr<scalar_t>();
    const acc* padv = adv.const_data_ptr<acc>();
    const bool* pm = m.const_data_ptr<bool>();
    scalar_t* pl = loss.mutable_data_ptr<scalar_t>();
    acc* pd = with_grad ? dloss.mutable_data_ptr<acc>() : nullptr;
    run_rows(plp, pold, padv, adv_per_token, pm, clip, B, T, pl, pd, rows.data());
  });
  double tot[4] = {0, 0, 0, 0};
  for (int64_t b = 0; b < B; ++b)
    for (int k = 0; k < 4; ++k) tot[k] += rows[static_cast<size_t>(b * 4 + k)];
  const double n = tot[0];
  const double inv = n > 0 ? 1.0 / n : 0.0;
  at::Tensor stats = at::tensor({(tot[1] + tot[2]) * inv, tot[1] * inv, tot[2] * inv, 0.5 * tot[3] * inv},
                                at::TensorOptions().dtype(at::kDouble)).to(acc_t);
  return {loss, stats, dloss};
}

at::Tensor backward_cpu(const at::Tensor& grad, const at::Tensor& dloss) {
  TORCH_CHECK(dloss.defined(), "clipped_surrogate_backward: the forward saved no gradient (with_grad was false)");
  TORCH_CHECK(dloss.scalar_type() == acc_dtype(grad.scalar_type()), "clipped_surrogate_backward: 'dloss' must have dtype ",
              acc_dtype(grad.scalar_type()), ", got ", dloss.scalar_type());
  const at::Tensor g = grad.expand(dloss.sizes()).contiguous();
  const at::Tensor d = dloss.contiguous();
  at::Tensor out = at::empty(d.sizes(), g.options());
  const int64_t n = d.numel();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, g.scalar_type(), "clipped_surrogate_backward_cpu", [&] {
    using acc = at::opmath_type<scalar_t>;
    backward_elems(g.const_data_ptr<scalar_t>(), d.const_data_ptr<acc>(), n, out.mutable_data_ptr<scalar_t>());
  });
  return out;
}

namespace {

Metrics5 clipped_surrogate_cpu(const at::Tensor& logprobs, const at::Tensor& old_logprobs, const at::Tensor& advantages,
                               const at::Tensor& mask, double eps_low, double eps_high,
                               std::optional<double> dual_clip, std::optional<double> delta) {
  auto [loss, stats, dloss] =
      forward_cpu(logprobs, old_logprobs, advantages, mask, eps_low, eps_high, dual_clip, delta, false);
  return split_metrics(loss, stats);
}

}  // namespace
}  // namespace llmrl::clipped_surrogate

TORCH_LIBRARY_IMPL(llmrl, CPU, m) {
  m.impl("clipped_surrogate", &llmrl::clipped_surrogate::clipped_surrogate_cpu);
  m.impl("clipped_surrogate_forward", &llmrl::clipped_surrogate::forward_cpu);
  m.impl("clipped_surrogate_backward", &llmrl::clipped_surrogate::backward_cpu);
}
