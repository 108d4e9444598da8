// value_loss CPU kernels (see value_loss.h, ALGORITHMS.md §6): one parallel, branch-free pass over
// fixed-size chunks of the flattened positions writes ∂ℓ_v/∂V (when asked) and per-chunk sums (loss,
// valid count, clipped count; accumulation dtype within a chunk, float64 across chunks) combined in chunk
// order — thread-count independent. float32/bfloat16/float16 run in 4 float lanes. Backward: one
// elementwise pass.
#include "value_loss/value_loss.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <type_traits>
#include <vector>

namespace llmrl::value_loss {

namespace {
constexpr int64_t kChunk = 4096;  // multiple of 4

using f4 = float __attribute__((vector_size(16)));
using i4 = int32_t __attribute__((vector_size(16)));

// Sums over [begin, end) of (ℓ_v, valid, clipped), writing ∂ℓ_v/∂V when dv is given. float32 lanes
// (4 at a time, branch-free, see clipped_surrogate/simd4.h for why) for float32/bfloat16/float16;
// masked positions read as zeros (garbage never enters the math) and their outputs are selected to 0.
template <typename scalar_t>
void chunk_f32(const scalar_t* v, const scalar_t* vo, const scalar_t* r, const bool* m, float eps, int64_t begin,
               int64_t end, float* dv, double* sums) {
  const f4 zero = {}, one = zero + 1.f;
  f4 s = {}, cnt = {}, clipped = {};
  for (int64_t i0 = begin; i0 < end; i0 += 4) {
    f4 a, b, c;
    i4 valid;
    for (int j = 0; j < 4; ++j) {  // lanes past `end` are masked and never read
      const bool in = i0 + j < end;
      const int64_t i = in ? i0 + j : begin;
      a[j] = float(v[i]);
      b[j] = float(vo[i]);
      c[j] = float(r[i]);
      valid[j] = in && m[i] ? -1 : 0;
    }
    f4 l, d;
    i4 was_clipped;
    point(valid ? a : zero, valid ? b : zero, valid ? c : zero, eps, &l, &d, &was_clipped);
    if (dv) {
      d = valid ? d : zero;
      for (int j = 0; j < 4 && i0 + j < end; ++j) dv[i0 + j] = d[j];
    }
    s += l;  // 0 on masked lanes
    cnt += valid ? one : zero;
    clipped += was_clipped ? one : zero;
  }
  sums[0] = double(s[0]) + double(s[1]) + double(s[2]) + double(s[3]);
  sums[1] = double(cnt[0]) + double(cnt[1]) + double(cnt[2]) + double(cnt[3]);
  sums[2] = double(clipped[0]) + double(clipped[1]) + double(clipped[2]) + double(clipped[3]);
}

// The same in float64 (float64 inputs), one position at a time.
void chunk_f64(const double* v, const double* vo, const double* r, const bool* m, double eps, int64_t begin,
               int64_t end, double* dv, double* sums) {
  double s = 0, cnt = 0, clipped = 0;
  for (int64_t i = begin; i < end; ++i) {
    const bool valid = m[i];
    const double a = v[i], b = vo[i], c = r[i];
    double l, d;
    bool was_clipped;
    point(valid ? a : 0.0, valid ? b : 0.0, valid ? c : 0.0, eps, &l, &d, &was_clipped);
    if (dv) dv[i] = valid ? d : 0.0;
    s += l;
    cnt += valid ? 1.0 : 0.0;
    clipped += was_clipped ? 1.0 : 0.0;
  }
  sums[0] = s; sums[1] = cnt; sums[2] = clipped;
}

// All chunks in parallel (float lanes for float accumulation, float64 otherwise).
template <typename scalar_t, typename acc>
void run_chunks(const scalar_t* v, const scalar_t* vo, const scalar_t* r, const bool* m, acc eps, int64_t n, acc* dv,
                double* part) {
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  at::parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t begin = c * kChunk, end = std::min(n, (c + 1) * kChunk);
      if constexpr (std::is_same_v<acc, float>) chunk_f32(v, vo, r, m, eps, begin, end, dv, part + c * 3);
      else chunk_f64(v, vo, r, m, eps, begin, end, dv, part + c * 3);
    }
  });
}

}  // namespace

Forward forward_cpu(const at::Tensor& values, const at::Tensor& old_values, const at::Tensor& returns,
                    const at::Tensor& mask, double clip, std::optional<double> normalizer, bool with_grad) {
  const at::Tensor m = check_inputs(values, old_values, returns, mask, clip, normalizer);
  const at::ScalarType acc_t = acc_dtype(values.scalar_type());
  const at::Tensor v = values.contiguous(), vo = old_values.contiguous(), r = returns.contiguous();
  const int64_t n = v.numel();
  at::Tensor dvalues = with_grad ? at::empty(v.sizes(), v.options().dtype(acc_t)) : at::Tensor();
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  std::vector<double> part(static_cast<size_t>(chunks) * 3, 0.0);  // Σ ℓ_v, valid, clipped
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, v.scalar_type(), "value_loss_cpu", [&] {
    using acc = at::opmath_type<scalar_t>;
    const scalar_t* pv = v.const_data_ptr<scalar_t>();
    const scalar_t* pvo = vo.const_data_ptr<scalar_t>();
    const scalar_t* pr = r.const_data_ptr<scalar_t>();
    const bool* pm = m.const_data_ptr<bool>();
    acc* pd = with_grad ? dvalues.mutable_data_ptr<acc>() : nullptr;
    run_chunks(pv, pvo, pr, pm, acc(clip), n, pd, part.data());
  });
  double s = 0, cnt = 0, clipped = 0;
  for (int64_t c = 0; c < chunks; ++c) {
    s += part[static_cast<size_t>(c * 3)];
    cnt += part[static_cast<size_t>(c * 3 + 1)];
    clipped += part[static_cast<size_t>(c * 3 + 2)];
  }
  const double denom = normalizer ? *normalizer : cnt;
  const double scale = denom > 0 ? 1.0 / denom : 0.0;
  const auto opts = v.options().dtype(acc_t);
  return {at::scalar_tensor(s * scale, opts), at::scalar_tensor(cnt > 0 ? clipped / cnt : 0.0, opts), dvalues,
          at::scalar_tensor(scale, opts)};
}

at::Tensor backward_cpu(const at::Tensor& grad, const at::Tensor& dvalues, const at::Tensor& scale,
                        at::ScalarType dtype) {
  TORCH_CHECK(dvalues.defined(), "value_loss_backward: the forward saved no gradient (with_grad was false)");
  TORCH_CHECK(grad.numel() == 1 && scale.numel() == 1, "value_loss_backward: 'grad' and 'scale' must have one element");
  TORCH_CHECK(dvalues.scalar_type() == acc_dtype(dtype), "value_loss_backward: 'dvalues' must have dtype ",
              acc_dtype(dtype), ", got ", dvalues.scalar_type());
  const at::Tensor d = dvalues.contiguous();
  at::Tensor out = at::empty(d.sizes(), d.options().dtype(dtype));
  const int64_t n = d.numel();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, "value_loss_backward_cpu", [&] {
    using acc = at::opmath_type<scalar_t>;
    const acc sc = scale.to(d.scalar_type()).item<acc>();
    const acc k = sc == acc(0) ? acc(0) : grad.to(d.scalar_type()).item<acc>() * sc;  // D = 0: exact zeros
    const acc* pd = d.const_data_ptr<acc>();
    scalar_t* po = out.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, n, 32768, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) po[i] = pd[i] == acc(0) ? scalar_t(0) : static_cast<scalar_t>(k * pd[i]);
    });
  });
  return out;
}

namespace {

std::tuple<at::Tensor, at::Tensor> value_loss_cpu(const at::Tensor& values, const at::Tensor& old_values,
                                                  const at::Tensor& returns, const at::Tensor& mask, double clip,
                                                  std::optional<double> normalizer) {
  auto [loss, clip_frac, dvalues, scale] = forward_cpu(values, old_values, returns, mask, clip, normalizer, false);
  return {loss, clip_frac};
}

}  // namespace
}  // namespace llmrl::value_loss

TORCH_LIBRARY_IMPL(llmrl, CPU, m) {
  m.impl("value_loss", &llmrl::value_loss::value_loss_cpu);
  m.impl("value_loss_forward", &llmrl::value_loss::forward_cpu);
  m.impl("value_loss_backward", &llmrl::value_loss::backward_cpu);
}
