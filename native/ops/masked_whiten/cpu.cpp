// masked_whiten CPU kernel (see masked_whiten.h, ALGORITHMS.md §3c): two float64 reduction passes
// (sum/count, then squared deviations — two-pass for accuracy when |μ| ≫ σ), then one elementwise pass;
// the backward adds one more reduction (Σ m·g, Σ m·g·(x − μ)). Reductions run over fixed-size chunks in
// parallel and combine the chunk partials in order, so results do not depend on the thread count.
#include "masked_whiten/masked_whiten.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <bit>
#include <cstdint>
#include <vector>

namespace llmrl::masked_whiten {

at::Tensor check_inputs(const at::Tensor& x, const at::Tensor& mask, const at::Tensor* grad) {
  TORCH_CHECK(at::isFloatingType(x.scalar_type()), "masked_whiten: 'x' must be a floating tensor, got ",
              x.scalar_type());
  TORCH_CHECK(mask.sizes() == x.sizes(), "masked_whiten: 'mask' must have the shape of 'x' ", x.sizes(),
              ", got ", mask.sizes());
  TORCH_CHECK(mask.device() == x.device(), "masked_whiten: 'mask' must be on ", x.device(), " like 'x', got ",
              mask.device());
  if (grad) {
    TORCH_CHECK(grad->device() == x.device() && grad->scalar_type() == x.scalar_type(),
                "masked_whiten_backward: 'grad' must be a ", x.scalar_type(), " tensor on ", x.device(), ", got ",
                grad->scalar_type(), " on ", grad->device());
  }
  return mask.scalar_type() == at::kBool ? mask.contiguous() : mask.ne(0);
}

namespace {

constexpr int64_t kChunk = 16384;

// keep ? v : +0.0 without a branch (a data-dependent branch on a ragged mask mispredicts and made these
// loops ~2.5× slower): AND the bits with 0 or ~0. Exact, and garbage (NaN/Inf) in v never survives.
inline double keep_or_zero(bool keep, double v) {
  return std::bit_cast<double>(std::bit_cast<uint64_t>(v) & (uint64_t(0) - uint64_t(keep)));
}
inline float keep_or_zero(bool keep, float v) {
  return std::bit_cast<float>(std::bit_cast<uint32_t>(v) & (uint32_t(0) - uint32_t(keep)));
}

struct Sums {
  double a = 0, b = 0;
};

// Σ over i of the pair f adds into (a, b), in fixed chunks of kChunk combined in order. Inside a chunk,
// kLanes independent accumulators break the floating-add dependency chain (the compiler may not
// reorder a float reduction by itself); lanes and chunks are fixed, so the result is deterministic.
constexpr int kLanes = 8;

template <typename F>
Sums chunked_sum(int64_t n, const F& f) {
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  std::vector<Sums> part(static_cast<size_t>(chunks));
  at::parallel_for(0, chunks, 1, [&](int64_t cb, int64_t ce) {
    for (int64_t c = cb; c < ce; ++c) {
      double a[kLanes] = {}, b[kLanes] = {};
      const int64_t end = std::min(n, (c + 1) * kChunk);
      int64_t i = c * kChunk;
      for (; i + kLanes <= end; i += kLanes)
        for (int l = 0; l < kLanes; ++l) f(i + l, a[l], b[l]);
      for (; i < end; ++i) f(i, a[0], b[0]);
      Sums s;
      for (int l = 0; l < kLanes; ++l) { s.a += a[l]; s.b += b[l]; }
      part[static_cast<size_t>(c)] = s;
    }
  });
  Sums s;
  for (const Sums& p : part) { s.a += p.a; s.b += p.b; }
  return s;
}

struct Stats {
  double count, mean, rstd;
};

template <typename scalar_t>
Stats statistics(const scalar_t* px, const bool* pm, int64_t n) {
  // Masked entries are selected away (keep_or_zero), never added: they may hold NaN/Inf.
  const Sums s1 = chunked_sum(n, [&](int64_t i, double& a, double& b) {
    const double xi = static_cast<double>(px[i]);
    a += keep_or_zero(pm[i], xi);
    b += static_cast<double>(pm[i]);
  });
  const double mean = mean_of(s1.a, s1.b);
  const Sums s2 = chunked_sum(n, [&](int64_t i, double& a, double&) {
    const double d = static_cast<double>(px[i]) - mean;
    a += keep_or_zero(pm[i], d * d);
  });
  return {s1.b, mean, rstd_of(s2.a, s1.b)};
}

// Forward (grad == nullptr) or backward.
at::Tensor run(const at::Tensor* grad, const at::Tensor& x, const at::Tensor& mask, bool shift_mean) {
  const at::Tensor m = check_inputs(x, mask, grad);
  const at::Tensor xc = x.contiguous();
  const at::Tensor g = grad ? grad->expand(x.sizes()).contiguous() : at::Tensor();
  at::Tensor out = at::empty_like(xc, at::MemoryFormat::Contiguous);
  const int64_t n = xc.numel();
  if (n == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, xc.scalar_type(), "masked_whiten_cpu", [&] {
    using acc = at::opmath_type<scalar_t>;
    const scalar_t* px = xc.const_data_ptr<scalar_t>();
    const bool* pm = m.const_data_ptr<bool>();
    scalar_t* po = out.mutable_data_ptr<scalar_t>();
    const Stats st = statistics(px, pm, n);
    const acc mean = acc(st.mean), rstd = acc(st.rstd);
    if (!grad) {
      at::parallel_for(0, n, 32768, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) {
          // computed everywhere, then selected branch-free
          po[i] = static_cast<scalar_t>(keep_or_zero(pm[i], whiten_point<acc>(acc(px[i]), mean, rstd, shift_mean)));
        }
      });
      return;
    }
    const scalar_t* pg = g.const_data_ptr<scalar_t>();
    const double mean64 = st.mean;
    const Sums sg = chunked_sum(n, [&](int64_t i, double& a, double& b) {
      const double gi = static_cast<double>(pg[i]);
      const double gd = gi * (static_cast<double>(px[i]) - mean64);
      a += keep_or_zero(pm[i], gi);
      b += keep_or_zero(pm[i], gd);
    });
    const acc gbar = acc(mean_of(sg.a, st.count)), k = acc(grad_coef(sg.b, st.rstd, st.count));
    at::parallel_for(0, n, 32768, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        po[i] = static_cast<scalar_t>(
            keep_or_zero(pm[i], whiten_grad_point<acc>(acc(pg[i]), acc(px[i]), mean, rstd, gbar, k, shift_mean)));
      }
    });
  });
  return out;
}

}  // namespace

at::Tensor masked_whiten_cpu(const at::Tensor& x, const at::Tensor& mask, bool shift_mean) {
  return run(nullptr, x, mask, shift_mean);
}

at::Tensor masked_whiten_backward_cpu(const at::Tensor& grad, const at::Tensor& x, const at::Tensor& mask,
                                      bool shift_mean) {
  return run(&grad, x, mask, shift_mean);
}

}  // namespace llmrl::masked_whiten

TORCH_LIBRARY_IMPL(llmrl, CPU, m) {
  m.impl("masked_whiten", &llmrl::masked_whiten::masked_whiten_cpu);
  m.impl("masked_whiten_backward", &llmrl::masked_whiten::masked_whiten_backward_cpu);
}
