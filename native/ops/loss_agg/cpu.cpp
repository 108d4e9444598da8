// loss_agg CPU kernels (see loss_agg.h, ALGORITHMS.md §5): rows in parallel give (Σ_t m·L, n_b) in
// float64; the combine runs in row order (thread-count independent) and yields the scalar and the
// per-row coefficients that the backward broadcasts (one elementwise pass).
#include "loss_agg/loss_agg.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

namespace llmrl::loss_agg {

namespace {

using f4 = float __attribute__((vector_size(16)));
using d2 = double __attribute__((vector_size(16)));
using u4 = uint32_t __attribute__((vector_size(16)));
using i4 = int32_t __attribute__((vector_size(16)));

// (Σ_t m·L, Σ_t m) of one row: 4 float lanes selected by the mask (masked entries may be NaN/Inf: never
// multiplied), widened to float64 for the running sums (independent lanes, not one latency-bound sum).
template <typename scalar_t>
std::pair<double, int64_t> row_sum(const scalar_t* L, const bool* m, int64_t T) {
  d2 s0 = {}, s1 = {};
  i4 n = {};
  int64_t t = 0;
  const u4 sel = {0xffu, 0xff00u, 0xff0000u, 0xff000000u};
  for (; t + 4 <= T; t += 4) {
    uint32_t w;
    std::memcpy(&w, m + t, sizeof w);
    const i4 valid = ((u4{} + w) & sel) != 0;
    if constexpr (std::is_same_v<scalar_t, double>) {  // float64 stays float64
      const d2 x0 = {L[t], L[t + 1]}, x1 = {L[t + 2], L[t + 3]};
      const i4 v = valid;
      s0 += d2{v[0] ? x0[0] : 0.0, v[1] ? x0[1] : 0.0};
      s1 += d2{v[2] ? x1[0] : 0.0, v[3] ? x1[1] : 0.0};
    } else {
      f4 x;
      if constexpr (std::is_same_v<scalar_t, float>) std::memcpy(&x, L + t, sizeof x);
      else x = f4{float(L[t]), float(L[t + 1]), float(L[t + 2]), float(L[t + 3])};
      x = valid ? x : f4{};
      s0 += d2{x[0], x[1]};
      s1 += d2{x[2], x[3]};
    }
    n -= valid;  // valid lanes are −1
  }
  double total = (s0[0] + s0[1]) + (s1[0] + s1[1]);
  int64_t count = int64_t(n[0]) + n[1] + n[2] + n[3];
  for (; t < T; ++t) {
    const double x = double(L[t]);
    total += m[t] ? x : 0.0;
    count += m[t] ? 1 : 0;
  }
  return {total, count};
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> forward_cpu(const at::Tensor& loss, const at::Tensor& mask, c10::string_view mode_name,
                                               std::optional<double> normalizer,
                                               std::optional<double> num_sequences,
                                               std::optional<int64_t> max_length) {
  const Mode mode = parse_mode(mode_name);
  const at::Tensor m = check_inputs(loss, mask, normalizer, num_sequences, max_length);
  const at::Tensor L = loss.contiguous();
  const int64_t B = L.size(0), T = L.size(1);
  const Norm nm = make_norm(mode, normalizer, num_sequences, max_length, T);
  std::vector<double> rowsum(static_cast<size_t>(B), 0.0), count(static_cast<size_t>(B), 0.0);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, L.scalar_type(), "loss_agg_cpu", [&] {
    const scalar_t* pl = L.const_data_ptr<scalar_t>();
    const bool* pm = m.const_data_ptr<bool>();
    at::parallel_for(0, B, std::max<int64_t>(1, 32768 / std::max<int64_t>(T, 1)), [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        const auto [s, n] = row_sum(pl + b * T, pm + b * T, T);
        rowsum[static_cast<size_t>(b)] = s;
        count[static_cast<size_t>(b)] = double(n);
      }
    });
  });
  double N = 0, S = 0;
  for (int64_t b = 0; b < B; ++b) {
    N += count[static_cast<size_t>(b)];
    S += count[static_cast<size_t>(b)] > 0 ? 1.0 : 0.0;
  }
  const double denom = denominator(nm, N, S);
  const at::ScalarType acc_t = acc_dtype(L.scalar_type());
  at::Tensor coef = at::empty({B}, L.options().dtype(at::kDouble));
  double* pc = coef.mutable_data_ptr<double>();
  double out = 0;
  for (int64_t b = 0; b < B; ++b) {
    pc[b] = row_coef(nm, count[static_cast<size_t>(b)], denom);
    if (pc[b] != 0.0) out += pc[b] * rowsum[static_cast<size_t>(b)];
  }
  return {at::scalar_tensor(out, L.options().dtype(acc_t)), coef.to(acc_t)};
}

at::Tensor backward_cpu(const at::Tensor& grad, const at::Tensor& mask, const at::Tensor& coef, at::ScalarType dtype) {
  TORCH_CHECK(grad.numel() == 1, "loss_agg_backward: 'grad' must have one element, got ", grad.sizes());
  TORCH_CHECK(mask.dim() == 2 && coef.dim() == 1 && coef.size(0) == mask.size(0),
              "loss_agg_backward: 'coef' must have shape [B] = [", mask.size(0), "], got ", coef.sizes());
  TORCH_CHECK(at::isFloatingType(dtype), "loss_agg_backward: 'dtype' must be floating, got ", dtype);
  const at::Tensor m = mask.scalar_type() == at::kBool ? mask.contiguous() : mask.ne(0);
  const int64_t B = m.size(0), T = m.size(1);
  at::Tensor out = at::empty(m.sizes(), m.options().dtype(dtype));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, "loss_agg_backward_cpu", [&] {
    using acc = at::opmath_type<scalar_t>;
    const at::Tensor c = coef.to(c10::CppTypeToScalarType<acc>::value).contiguous();
    const acc g = grad.to(c10::CppTypeToScalarType<acc>::value).item<acc>();
    const acc* pc = c.const_data_ptr<acc>();
    const bool* pm = m.const_data_ptr<bool>();
    scalar_t* po = out.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, B, std::max<int64_t>(1, 32768 / std::max<int64_t>(T, 1)), [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        // coef 0 (empty row, zero denominator): exact zeros, even for a NaN incoming grad.
        const scalar_t v = pc[b] == acc(0) ? scalar_t(0) : static_cast<scalar_t>(g * pc[b]);
        for (int64_t t = 0; t < T; ++t) po[b * T + t] = pm[b * T + t] ? v : scalar_t(0);
      }
    });
  });
  return out;
}

namespace {

at::Tensor loss_agg_cpu(const at::Tensor& loss, const at::Tensor& mask, c10::string_view mode,
                        std::optional<double> normalizer, std::optional<double> num_sequences,
                        std::optional<int64_t> max_length) {
  return std::get<0>(forward_cpu(loss, mask, mode, normalizer, num_sequences, max_length));
}

}  // namespace
}  // namespace llmrl::loss_agg

TORCH_LIBRARY_IMPL(llmrl, CPU, m) {
  m.impl("loss_agg", &llmrl::loss_agg::loss_agg_cpu);
  m.impl("loss_agg_forward", &llmrl::loss_agg::forward_cpu);
  m.impl("loss_agg_backward", &llmrl::loss_agg::backward_cpu);
}
