// sequence_clipped_surrogate CPU kernels (see sequence_clipped_surrogate.h, ALGORITHMS.md §4b/§4c): rows
// in parallel; per row one pass for log s_b (and the KL sum), one pass writing the per-token loss and
// ∂L/∂ℓ (the row is still in cache). Per-row metric sums are combined in row order (thread-count
// independent). Backward: per row Σ_t m·g, then one elementwise pass. float32/bfloat16/float16 rows
// run in 4 float lanes (clipped_surrogate/simd4.h), float64 one position at a time.
#include "sequence_clipped_surrogate/sequence_clipped_surrogate.h"
#include "clipped_surrogate/simd4.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <type_traits>
#include <vector>

namespace llmrl::sequence_clipped_surrogate {

using clipped_surrogate::acc_dtype;
using clipped_surrogate::clamp_log_ratio;
using clipped_surrogate::exp_acc;
using clipped_surrogate::surrogate;

namespace {

using clipped_surrogate::simd4::f4;
using clipped_surrogate::simd4::i4;
namespace simd4 = clipped_surrogate::simd4;

// One row [T] of the forward; r = the row's metric sums (count, low, high, KL sum; see the header).
// float accumulation: 4 float lanes, branch-free, masked lanes selected away (they may hold NaN/Inf);
// float64: one position at a time.
template <typename scalar_t, typename acc>
void forward_row(const scalar_t* lp, const scalar_t* old, const acc* adv, bool adv_per_token, const bool* m,
                 const Clip<acc>& clip, int64_t T, Level level, scalar_t* out, acc* dout, double* r) {
  double n = 0, sum_x = 0, kl = 0;
  if constexpr (std::is_same_v<acc, float>) {
    const f4 zero = {}, one = simd4::splat(1.f);
    const float lim = float(clipped_surrogate::kLogRatioClamp);
    f4 vn = {}, vx = {}, vkl = {};
    for (int64_t t = 0; t < T; t += 4) {
      const int k = int(std::min<int64_t>(4, T - t));
      const i4 valid = simd4::load_mask4(m + t, k);
      const f4 x0 = valid ? simd4::load4(lp + t, k) - simd4::load4(old + t, k) : zero;
      vn += valid ? one : zero;
      vx += x0 < -lim ? zero - lim : (x0 > lim ? zero + lim : x0);
      vkl += x0 * x0;
    }
    n = simd4::hsum(vn); sum_x = simd4::hsum(vx); kl = simd4::hsum(vkl);
  } else {
    for (int64_t t = 0; t < T; ++t) {
      const bool valid = m[t];
      const acc l_new = lp[t], l_old = old[t];
      bool inside;
      const acc x = clamp_log_ratio(valid ? l_new : acc(0), valid ? l_old : acc(0), &inside);
      n += valid ? 1.0 : 0.0;
      sum_x += x;
      kl += valid ? double((l_new - l_old) * (l_new - l_old)) : 0.0;
    }
  }
  const acc inv_n = acc(1.0 / std::max(n, 1.0));
  const acc s = exp_acc(acc(sum_x) * inv_n);
  if (level == Level::sequence) {
    const acc a = adv[0];
    acc lb = 0, db = 0;
    if (n > 0) surrogate(s, a, clip, &lb, &db);
    const acc dtok = db * inv_n;  // ∂L_b/∂ℓ_t on a valid token inside the log-ratio clamp
    if constexpr (std::is_same_v<acc, float>) {
      const f4 zero = {};
      const float lim = float(clipped_surrogate::kLogRatioClamp);
      for (int64_t t = 0; t < T; t += 4) {
        const int k = int(std::min<int64_t>(4, T - t));
        const i4 valid = simd4::load_mask4(m + t, k);
        simd4::store4(out + t, valid ? zero + lb : zero, k);
        if (dout) {
          const f4 x0 = valid ? simd4::load4(lp + t, k) - simd4::load4(old + t, k) : zero;
          simd4::store4(dout + t, (valid & (x0 >= -lim) & (x0 <= lim)) ? zero + dtok : zero, k);
        }
      }
    } else {
      for (int64_t t = 0; t < T; ++t) {
        bool inside;
        clamp_log_ratio(m[t] ? acc(lp[t]) : acc(0), m[t] ? acc(old[t]) : acc(0), &inside);
        out[t] = m[t] ? static_cast<scalar_t>(lb) : scalar_t(0);
        if (dout) dout[t] = m[t] && inside ? dtok : acc(0);
      }
    }
    if (n > 0) {
      r[0] = 1.0;
      r[1] = (s < clip.lo && a < acc(0)) ? 1.0 : 0.0;
      r[2] = (s > clip.hi && a > acc(0)) ? 1.0 : 0.0;
      r[3] = kl / n;
    }
    return;
  }
  // sequence_token: value s_b at every token, per-token advantage and gradient.
  double low = 0, high = 0;
  if constexpr (std::is_same_v<acc, float>) {
    const f4 zero = {}, one = simd4::splat(1.f), w = simd4::splat(s);
    f4 vlow = {}, vhigh = {};
    for (int64_t t = 0; t < T; t += 4) {
      const int k = int(std::min<int64_t>(4, T - t));
      const i4 valid = simd4::load_mask4(m + t, k);
      const f4 a = valid ? (adv_per_token ? simd4::load4(adv + t, k) : zero + adv[0]) : zero;
      f4 l, d;
      surrogate(w, a, clip, &l, &d);
      simd4::store4(out + t, valid ? l : zero, k);
      if (dout) simd4::store4(dout + t, valid ? d : zero, k);
      vlow += ((w < clip.lo) & (a < 0.f)) ? one : zero;  // a = 0 on masked lanes
      vhigh += ((w > clip.hi) & (a > 0.f)) ? one : zero;
    }
    low = simd4::hsum(vlow); high = simd4::hsum(vhigh);
  } else {
    for (int64_t t = 0; t < T; ++t) {
      const acc a_raw = adv[adv_per_token ? t : 0];
      const acc a = m[t] ? a_raw : acc(0);
      acc l, d;
      surrogate(s, a, clip, &l, &d);
      out[t] = m[t] ? static_cast<scalar_t>(l) : scalar_t(0);
      if (dout) dout[t] = m[t] ? d : acc(0);
      low += (s < clip.lo && a < acc(0)) ? 1.0 : 0.0;
      high += (s > clip.hi && a > acc(0)) ? 1.0 : 0.0;
    }
  }
  r[0] = n; r[1] = low; r[2] = high; r[3] = kl;
}

template <typename scalar_t, typename acc>
void forward_rows(const scalar_t* lp, const scalar_t* old, const acc* adv, bool adv_per_token, const bool* m,
                  const Clip<acc>& clip, int64_t B, int64_t T, Level level, scalar_t* out, acc* dout, double* rows) {
  at::parallel_for(0, B, std::max<int64_t>(1, 16384 / std::max<int64_t>(T, 1)), [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t o = b * T;
      forward_row(lp + o, old + o, adv + (adv_per_token ? o : b), adv_per_token, m + o, clip, T, level, out + o,
                  dout ? dout + o : nullptr, rows + b * 4);
    }
  });
}

// Backward of one row: 'sequence' multiplies ∂L_b/∂ℓ_t by the row's summed valid incoming grads (every
// valid token carries L_b); 'sequence_token' is elementwise. ∂L/∂ℓ = 0 selects 0 (NaN grads stay out).
template <typename scalar_t, typename acc>
void backward_row(const scalar_t* g, const acc* d, const bool* m, int64_t T, bool seq, scalar_t* out) {
  if constexpr (std::is_same_v<acc, float>) {
    const f4 zero = {};
    f4 vs = {};
    if (seq)
      for (int64_t t = 0; t < T; t += 4) {
        const int k = int(std::min<int64_t>(4, T - t));
        vs += simd4::load_mask4(m + t, k) ? simd4::load4(g + t, k) : zero;
      }
    const f4 gsum = simd4::splat(float(simd4::hsum(vs)));
    for (int64_t t = 0; t < T; t += 4) {
      const int k = int(std::min<int64_t>(4, T - t));
      const f4 dt = simd4::load4(d + t, k);
      const f4 gi = seq ? gsum : simd4::load4(g + t, k);
      simd4::store4(out + t, dt != 0.f ? gi * dt : zero, k);
    }
  } else {
    acc gsum = 0;
    if (seq)
      for (int64_t t = 0; t < T; ++t) gsum += m[t] ? acc(g[t]) : acc(0);
    for (int64_t t = 0; t < T; ++t) {
      const acc gi = seq ? gsum : acc(g[t]);
      out[t] = d[t] == acc(0) ? scalar_t(0) : static_cast<scalar_t>(gi * d[t]);
    }
  }
}

template <typename scalar_t, typename acc>
void backward_rows(const scalar_t* g, const acc* d, const bool* m, int64_t B, int64_t T, bool seq, scalar_t* out) {
  at::parallel_for(0, B, std::max<int64_t>(1, 16384 / std::max<int64_t>(T, 1)), [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) backward_row(g + b * T, d + b * T, m + b * T, T, seq, out + b * T);
  });
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> forward_cpu(const at::Tensor& logprobs, const at::Tensor& old_logprobs,
                                                           const at::Tensor& advantages, const at::Tensor& mask,
                                                           double eps_low, double eps_high,
                                                           std::optional<double> dual_clip,
                                                           std::optional<double> delta, c10::string_view level_name,
                                                           bool with_grad) {
  const Level level = parse_level(level_name);
  const at::Tensor m =
      check_inputs(logprobs, old_logprobs, advantages, mask, eps_low, eps_high, dual_clip, delta, level);
  const at::ScalarType acc_t = acc_dtype(logprobs.scalar_type());
  const at::Tensor lp = logprobs.contiguous(), old = old_logprobs.contiguous();
  const at::Tensor adv = advantages.to(acc_t).contiguous();
  const int64_t B = lp.size(0), T = lp.size(1);
  at::Tensor loss = at::empty_like(lp, at::MemoryFormat::Contiguous);
  at::Tensor dloss = with_grad ? at::empty(lp.sizes(), lp.options().dtype(acc_t)) : at::Tensor();
  std::vector<double> rows(static_cast<size_t>(B) * 4, 0.0);  // per-row metric sums, combined in row order
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, lp.scalar_type(), "sequence_clipped_surrogate_cpu", [&] {
    using acc = at::opmath_type<scalar_t>;
    forward_rows(lp.const_data_ptr<scalar_t>(), old.const_data_ptr<scalar_t>(), adv.const_data_ptr<acc>(),
                 adv.dim() == 2, m.const_data_ptr<bool>(),
                 clipped_surrogate::make_clip<acc>(eps_low, eps_high, dual_clip, delta), B, T, level,
                 loss.mutable_data_ptr<scalar_t>(), with_grad ? dloss.mutable_data_ptr<acc>() : nullptr, rows.data());
  });
  double tot[4] = {0, 0, 0, 0};
  for (int64_t b = 0; b < B; ++b)
    for (int k = 0; k < 4; ++k) tot[k] += rows[static_cast<size_t>(b * 4 + k)];
  const double inv = tot[0] > 0 ? 1.0 / tot[0] : 0.0;
  at::Tensor stats = at::tensor({(tot[1] + tot[2]) * inv, tot[1] * inv, tot[2] * inv, 0.5 * tot[3] * inv},
                                at::TensorOptions().dtype(at::kDouble)).to(acc_t);
  return {loss, stats, dloss};
}

at::Tensor backward_cpu(const at::Tensor& grad, const at::Tensor& dloss, const at::Tensor& mask,
                        c10::string_view level_name) {
  const Level level = parse_level(level_name);
  TORCH_CHECK(dloss.defined(), "sequence_clipped_surrogate_backward: the forward saved no gradient");
  TORCH_CHECK(dloss.dim() == 2 && mask.sizes() == dloss.sizes(),
              "sequence_clipped_surrogate_backward: 'mask' must have shape ", dloss.sizes(), ", got ", mask.sizes());
  TORCH_CHECK(dloss.scalar_type() == acc_dtype(grad.scalar_type()),
              "sequence_clipped_surrogate_backward: 'dloss' must have dtype ", acc_dtype(grad.scalar_type()), ", got ",
              dloss.scalar_type());
  const at::Tensor g = grad.expand(dloss.sizes()).contiguous();
  const at::Tensor d = dloss.contiguous();
  const at::Tensor m = mask.scalar_type() == at::kBool ? mask.contiguous() : mask.ne(0);
  at::Tensor out = at::empty(d.sizes(), g.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, g.scalar_type(), "sequence_clipped_surrogate_backward_cpu", [&] {
    using acc = at::opmath_type<scalar_t>;
    backward_rows(g.const_data_ptr<scalar_t>(), d.const_data_ptr<acc>(), m.const_data_ptr<bool>(), d.size(0),
                  d.size(1), level == Level::sequence, out.mutable_data_ptr<scalar_t>());
  });
  return out;
}

namespace {

clipped_surrogate::Metrics5 sequence_clipped_surrogate_cpu(const at::Tensor& logprobs, const at::Tensor& old_logprobs,
                                                           const at::Tensor& advantages, const at::Tensor& mask,
                                                           double eps_low, double eps_high,
                                                           std::optional<double> dual_clip,
                                                           std::optional<double> delta, c10::string_view level) {
  auto [loss, stats, dloss] =
      forward_cpu(logprobs, old_logprobs, advantages, mask, eps_low, eps_high, dual_clip, delta, level, false);
  return clipped_surrogate::split_metrics(loss, stats);
}

}  // namespace
}  // namespace llmrl::sequence_clipped_surrogate

TORCH_LIBRARY_IMPL(llmrl, CPU, m) {
  m.impl("sequence_clipped_surrogate", &llmrl::sequence_clipped_surrogate::sequence_clipped_surrogate_cpu);
  m.impl("sequence_clipped_surrogate_forward", &llmrl::sequence_clipped_surrogate::forward_cpu);
  m.impl("sequence_clipped_surrogate_backward", &llmrl::sequence_clipped_surrogate::backward_cpu);
}
