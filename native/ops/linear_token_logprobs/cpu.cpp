// linear_token_logprobs CPU: argument checks, the chunk driver (GEMMs through at::, shared with CUDA)
// and the fused per-row pass (see linear_token_logprobs.h for the math, ALGORITHMS.md §1b).
// The float row pass is plain loops over 16 independent lanes with a branch-free exp, which the compiler
// vectorises; GCC builds AVX-512 / AVX2 / baseline clones of it and picks one at load time (libtorch's
// at::vec in an extension compiles for the baseline ISA only). Double rows use std::exp (tests, oracles).
#include "linear_token_logprobs/linear_token_logprobs.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define LLMRL_LTL_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define LLMRL_LTL_CLONES
#endif

namespace llmrl::linear_token_logprobs {

Inputs check_inputs(const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& targets,
                    const std::optional<at::Tensor>& bias, double temperature, int64_t chunk_size) {
  constexpr const char* op = "linear_token_logprobs: ";
  const auto dt = hidden.scalar_type();
  TORCH_CHECK(dt == at::kFloat || dt == at::kDouble || dt == at::kBFloat16 || dt == at::kHalf, op,
              "'hidden' must be float32, float64, bfloat16 or float16, got ", dt);
  TORCH_CHECK(hidden.dim() >= 1, op, "'hidden' must have shape [..., H] (e.g. [N, H]), got ", hidden.sizes());
  const int64_t h = hidden.size(-1);
  TORCH_CHECK(weight.dim() == 2 && weight.size(1) == h, op, "'weight' must have shape [V, H] = [V, ", h,
              "] (H from 'hidden'), got ", weight.sizes());
  TORCH_CHECK(weight.scalar_type() == dt, op, "'weight' must have dtype ", dt, " like 'hidden', got ",
              weight.scalar_type());
  TORCH_CHECK(weight.device() == hidden.device(), op, "'weight' must be on ", hidden.device(),
              " like 'hidden', got ", weight.device());
  const int64_t v = weight.size(0);
  TORCH_CHECK(v >= 1, op, "'weight' must have at least one row (V ≥ 1), got ", weight.sizes());
  const bool has_bias = bias && bias->defined();
  if (has_bias) {
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == v, op, "'bias' must have shape [V] = [", v, "], got ",
                bias->sizes());
    TORCH_CHECK(bias->scalar_type() == dt, op, "'bias' must have dtype ", dt, " like 'hidden', got ",
                bias->scalar_type());
    TORCH_CHECK(bias->device() == hidden.device(), op, "'bias' must be on ", hidden.device(),
                " like 'hidden', got ", bias->device());
  }
  const auto lead = hidden.sizes().slice(0, hidden.dim() - 1);
  TORCH_CHECK(targets.sizes() == lead, op, "'targets' must have shape ", lead,
              " (the leading dims of 'hidden' ", hidden.sizes(), "), got ", targets.sizes());
  TORCH_CHECK(targets.scalar_type() == at::kLong || targets.scalar_type() == at::kInt, op,
              "'targets' must be int64 (or int32), got ", targets.scalar_type());
  TORCH_CHECK(targets.device() == hidden.device(), op, "'targets' must be on ", hidden.device(),
              " like 'hidden', got ", targets.device());
  TORCH_CHECK(std::isfinite(temperature) && temperature > 0, op, "'temperature' must be a finite number > 0, got ",
              temperature);
  TORCH_CHECK(chunk_size >= 0, op, "'chunk_size' must be ≥ 0 (0 = auto), got ", chunk_size);

  Inputs in;
  in.h = h;
  in.v = v;
  in.hidden = hidden.reshape({-1, h}).contiguous();
  in.n = in.hidden.size(0);
  in.weight = weight.contiguous();
  if (has_bias) in.bias = bias->contiguous();
  in.targets = targets.reshape({-1}).to(at::kLong).contiguous();
  if (in.n > 0) {
    // One reduction (a device sync on CUDA) so that a bad target is an error, never a wild read.
    auto [lo, hi] = at::aminmax(in.targets);
    const int64_t mn = lo.item<int64_t>(), mx = hi.item<int64_t>();
    TORCH_CHECK(mn >= 0 && mx < v, op, "'targets' must be in [0, V) = [0, ", v, "), got a target of ",
                mn < 0 ? mn : mx);
  }
  in.chunk = resolve_chunk(chunk_size, in.n, v, hidden.element_size());
  return in;
}

int64_t resolve_chunk(int64_t chunk_size, int64_t n, int64_t v, int64_t itemsize) {
  int64_t c = chunk_size > 0 ? chunk_size
                             : std::max(kAutoMinRows, kAutoChunkBytes / std::max<int64_t>(1, v * itemsize));
  return std::max<int64_t>(1, std::min<int64_t>(c, std::max<int64_t>(n, 1)));
}

namespace {

// ---- float row pass (vectorised by the compiler) ----

// e^x to ~1.5 ulp for x ≤ 88 (Cephes' expf: x = n·ln2 + r, polynomial for e^r, 2^n from exponent bits);
// 0 below −87 (true value < 2e-38), +inf above 88, NaN stays NaN. Branch-free so loops vectorise.
inline float exp_f32(float x) {
  const float xc = x < -87.f ? -87.f : (x > 88.f ? 88.f : x);
  float fx = xc * 1.44269504088896341f;
  fx = (fx + 12582912.f) - 12582912.f;  // round to nearest (1.5·2^23 trick; no -ffast-math here)
  const float r = (xc - fx * 0.693359375f) - fx * -2.12194440e-4f;
  float y = 1.9875691500e-4f;
  y = y * r + 1.3981999507e-3f;
  y = y * r + 8.3334519073e-3f;
  y = y * r + 4.1665795894e-2f;
  y = y * r + 1.6666665459e-1f;
  y = y * r + 5.0000001201e-1f;
  y = y * r * r + r + 1.f;
  const int32_t bits = (static_cast<int32_t>(fx) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  y *= scale;
  y = x < -87.f ? 0.f : (x > 88.f ? std::numeric_limits<float>::infinity() : y);
  return x != x ? x : y;
}

constexpr int kLanes = 16;

// One row z[0..v) of raw logits: *m = max_v z·inv_tau, *s = Σ e^{d}, *e = Σ e^{d}·max(d, floor)
// (only when want_e) with d = z·inv_tau − m.
LLMRL_LTL_CLONES
void row_stats_f32(const float* z, int64_t v, float inv_tau, bool want_e, float* m_out, float* s_out,
                   float* e_out) {
  float mx[kLanes];
  for (int j = 0; j < kLanes; ++j) mx[j] = -std::numeric_limits<float>::infinity();
  int64_t i = 0;
  for (; i + kLanes <= v; i += kLanes)
    for (int j = 0; j < kLanes; ++j) mx[j] = z[i + j] > mx[j] ? z[i + j] : mx[j];
  float rm = -std::numeric_limits<float>::infinity();
  for (int j = 0; j < kLanes; ++j) rm = mx[j] > rm ? mx[j] : rm;
  for (; i < v; ++i) rm = z[i] > rm ? z[i] : rm;
  const float m = rm * inv_tau;  // τ > 0, so max(z/τ) = max(z)/τ
  float s[kLanes] = {}, e[kLanes] = {};
  const float lo = float(kLogFloor);
  i = 0;
  if (want_e) {
    for (; i + kLanes <= v; i += kLanes)
      for (int j = 0; j < kLanes; ++j) {
        const float d = z[i + j] * inv_tau - m, p = exp_f32(d);
        s[j] += p;
        e[j] += p * (d > lo ? d : lo);
      }
  } else {
    for (; i + kLanes <= v; i += kLanes)
      for (int j = 0; j < kLanes; ++j) s[j] += exp_f32(z[i + j] * inv_tau - m);
  }
  float st = 0.f, et = 0.f;
  for (int j = 0; j < kLanes; ++j) { st += s[j]; et += e[j]; }
  for (; i < v; ++i) {
    const float d = z[i] * inv_tau - m, p = exp_f32(d);
    st += p;
    et += p * (d > lo ? d : lo);
  }
  *m_out = m;
  *s_out = st;
  *e_out = want_e ? et : 0.f;
}

// Overwrites one row of raw logits with dZ_v = grad_logit(z_v/τ − logZ, …) (target term added by caller).
LLMRL_LTL_CLONES
void row_grad_f32(float* z, int64_t v, float inv_tau, float logz, float a, float gh) {
  for (int64_t i = 0; i < v; ++i) {
    const float d = z[i] * inv_tau - logz;
    z[i] = grad_logit<float>(d, exp_f32(d), a, gh, inv_tau);
  }
}

// ---- double row pass (scalar) ----

void row_stats_f64(const double* z, int64_t v, double inv_tau, bool want_e, double* m_out, double* s_out,
                   double* e_out) {
  double rm = -std::numeric_limits<double>::infinity();
  for (int64_t i = 0; i < v; ++i) rm = z[i] > rm ? z[i] : rm;
  const double m = rm * inv_tau;
  double s = 0, e = 0;
  for (int64_t i = 0; i < v; ++i) {
    const double d = z[i] * inv_tau - m, p = std::exp(d);
    s += p;
    if (want_e) e += p * (d > kLogFloor ? d : kLogFloor);
  }
  *m_out = m;
  *s_out = s;
  *e_out = e;
}

void row_grad_f64(double* z, int64_t v, double inv_tau, double logz, double a, double gh) {
  for (int64_t i = 0; i < v; ++i) {
    const double d = z[i] * inv_tau - logz;
    z[i] = grad_logit<double>(d, std::exp(d), a, gh, inv_tau);
  }
}

// ---- row passes over a chunk, per dtype: float32/float64 work in place; half types go through a
// per-thread float row (converted in, and for backward converted back out) ----

template <typename scalar_t>
constexpr bool kIsHalf = std::is_same_v<scalar_t, at::BFloat16> || std::is_same_v<scalar_t, at::Half>;

template <typename scalar_t>
void forward_rows_impl(const at::Tensor& buf, const int64_t* tg, int64_t row0, double inv_tau,
                       const at::Tensor& logp, const at::Tensor& ent, const at::Tensor& logz) {
  using acc = at::opmath_type<scalar_t>;
  const int64_t rows = buf.size(0), v = buf.size(1);
  const scalar_t* pb = buf.const_data_ptr<scalar_t>();
  acc* plp = logp.mutable_data_ptr<acc>() + row0;
  acc* pz = logz.mutable_data_ptr<acc>() + row0;
  acc* pe = ent.defined() ? ent.mutable_data_ptr<acc>() + row0 : nullptr;
  at::parallel_for(0, rows, std::max<int64_t>(1, 32768 / v), [&](int64_t begin, int64_t end) {
    std::vector<float> scratch(kIsHalf<scalar_t> ? v : 0);
    for (int64_t r = begin; r < end; ++r) {
      const scalar_t* row = pb + r * v;
      acc m, s, e, lz, lp, h;
      if constexpr (std::is_same_v<scalar_t, double>) {
        row_stats_f64(row, v, inv_tau, pe != nullptr, &m, &s, &e);
        finish_row<acc>(m, s, e, row[tg[r]] * inv_tau, &lz, &lp, &h);
      } else {
        const float* f;  // float32 in place; half types via the float scratch row
        if constexpr (kIsHalf<scalar_t>) {
          at::vec::convert(row, scratch.data(), v);
          f = scratch.data();
        } else {
          f = row;
        }
        row_stats_f32(f, v, float(inv_tau), pe != nullptr, &m, &s, &e);
        finish_row<acc>(m, s, e, f[tg[r]] * float(inv_tau), &lz, &lp, &h);
      }
      plp[r] = lp;
      pz[r] = lz;
      if (pe) pe[r] = h;
    }
  });
}

template <typename scalar_t>
void backward_rows_impl(const at::Tensor& buf, const int64_t* tg, int64_t row0, double inv_tau,
                        const at::Tensor& logz, const at::Tensor& ent, const at::Tensor& g, const at::Tensor& gh) {
  using acc = at::opmath_type<scalar_t>;
  const int64_t rows = buf.size(0), v = buf.size(1);
  scalar_t* pb = buf.mutable_data_ptr<scalar_t>();
  const acc* pz = logz.const_data_ptr<acc>() + row0;
  const acc* pg = g.defined() ? g.const_data_ptr<acc>() + row0 : nullptr;
  const acc* pgh = gh.defined() ? gh.const_data_ptr<acc>() + row0 : nullptr;
  const acc* pe = gh.defined() ? ent.const_data_ptr<acc>() + row0 : nullptr;
  const acc it = acc(inv_tau);
  at::parallel_for(0, rows, std::max<int64_t>(1, 32768 / v), [&](int64_t begin, int64_t end) {
    std::vector<float> scratch(kIsHalf<scalar_t> ? v : 0);
    for (int64_t r = begin; r < end; ++r) {
      scalar_t* row = pb + r * v;
      const acc gr = pg ? pg[r] : acc(0), ghr = pgh ? pgh[r] : acc(0);
      const acc a = gr + (pgh ? ghr * pe[r] : acc(0));  // g + gh·H
      if constexpr (std::is_same_v<scalar_t, double>) {
        row_grad_f64(row, v, it, pz[r], a, ghr);
        row[tg[r]] += gr * it;
      } else if constexpr (kIsHalf<scalar_t>) {
        at::vec::convert(row, scratch.data(), v);
        row_grad_f32(scratch.data(), v, it, pz[r], a, ghr);
        scratch[tg[r]] += gr * it;
        at::vec::convert(scratch.data(), row, v);
      } else {
        row_grad_f32(row, v, it, pz[r], a, ghr);
        row[tg[r]] += gr * it;
      }
    }
  });
}

void forward_rows_cpu(const at::Tensor& buf, const at::Tensor& targets, int64_t row0, double inv_tau,
                      const at::Tensor& logp, const at::Tensor& ent, const at::Tensor& logz) {
  const int64_t* tg = targets.const_data_ptr<int64_t>() + row0;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, buf.scalar_type(), "linear_token_logprobs_cpu", [&] {
    forward_rows_impl<scalar_t>(buf, tg, row0, inv_tau, logp, ent, logz);
  });
}

void backward_rows_cpu(const at::Tensor& buf, const at::Tensor& targets, int64_t row0, double inv_tau,
                       const at::Tensor& logz, const at::Tensor& ent, const at::Tensor& g, const at::Tensor& gh) {
  const int64_t* tg = targets.const_data_ptr<int64_t>() + row0;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, buf.scalar_type(), "linear_token_logprobs_backward_cpu", [&] {
    backward_rows_impl<scalar_t>(buf, tg, row0, inv_tau, logz, ent, g, gh);
  });
}

// logits of rows [row0, row0 + rows) into out [rows, V]: hidden·Wᵀ (+ bias), one GEMM in the input dtype.
void chunk_logits(const Inputs& in, int64_t row0, int64_t rows, at::Tensor& out) {
  const at::Tensor hc = in.hidden.narrow(0, row0, rows);
  if (in.bias.defined()) at::addmm_out(out, in.bias, hc, in.weight.t());
  else at::mm_out(out, hc, in.weight.t());
}

at::Tensor acc_1d(const std::optional<at::Tensor>& t, int64_t n, at::ScalarType acc, const char* name) {
  if (!t || !t->defined()) return at::Tensor();
  TORCH_CHECK(t->numel() == n, "linear_token_logprobs_backward: '", name, "' must have ", n, " elements, got ",
              t->sizes());
  return t->reshape({-1}).to(acc).contiguous();
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> forward_driver(
    const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& targets,
    const std::optional<at::Tensor>& bias, double temperature, int64_t chunk_size, bool with_entropy,
    ForwardRows rows_fn) {
  const Inputs in = check_inputs(hidden, weight, targets, bias, temperature, chunk_size);
  const auto dt = hidden.scalar_type();
  const auto acc_opts = hidden.options().dtype(at::toOpMathType(dt));
  at::Tensor logp = at::empty({in.n}, acc_opts), logz = at::empty({in.n}, acc_opts);
  at::Tensor ent = with_entropy ? at::empty({in.n}, acc_opts) : at::Tensor();
  if (in.n > 0) {
    at::Tensor buf = at::empty({in.chunk, in.v}, hidden.options());  // the one [chunk, V] buffer
    for (int64_t row0 = 0; row0 < in.n; row0 += in.chunk) {
      const int64_t rows = std::min(in.chunk, in.n - row0);
      at::Tensor b = buf.narrow(0, 0, rows);
      chunk_logits(in, row0, rows, b);
      rows_fn(b, in.targets, row0, 1.0 / temperature, logp, ent, logz);
    }
  }
  logp = logp.to(dt).view(targets.sizes());
  if (ent.defined()) ent = ent.to(dt).view(targets.sizes());
  return {logp, ent, logz};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> backward_driver(
    const std::optional<at::Tensor>& grad_logprobs, const std::optional<at::Tensor>& grad_entropy,
    const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& targets,
    const std::optional<at::Tensor>& bias, const at::Tensor& logz, const std::optional<at::Tensor>& entropy,
    double temperature, int64_t chunk_size, std::array<bool, 3> output_mask, BackwardRows rows_fn) {
  const Inputs in = check_inputs(hidden, weight, targets, bias, temperature, chunk_size);
  const auto dt = hidden.scalar_type();
  const auto acc = at::toOpMathType(dt);
  const at::Tensor g = acc_1d(grad_logprobs, in.n, acc, "grad_logprobs");
  const at::Tensor gh = acc_1d(grad_entropy, in.n, acc, "grad_entropy");
  const at::Tensor ent = gh.defined() ? acc_1d(entropy, in.n, acc, "entropy") : at::Tensor();
  TORCH_CHECK(!gh.defined() || ent.defined(),
              "linear_token_logprobs_backward: 'entropy' is required when 'grad_entropy' is given");
  TORCH_CHECK(logz.numel() == in.n && logz.scalar_type() == acc, "linear_token_logprobs_backward: 'logz' must be [",
              in.n, "] ", acc, ", got ", logz.sizes(), " ", logz.scalar_type());
  const at::Tensor lz = logz.reshape({-1}).contiguous();
  const bool want_h = output_mask[0], want_w = output_mask[1], want_b = output_mask[2] && in.bias.defined();
  const int64_t chunks = in.n == 0 ? 0 : (in.n + in.chunk - 1) / in.chunk;
  const bool active = in.n > 0 && (g.defined() || gh.defined()) && (want_h || want_w || want_b);

  at::Tensor gx = want_h ? (active ? at::empty({in.n, in.h}, hidden.options()) : at::zeros({in.n, in.h}, hidden.options()))
                         : at::Tensor();
  // grad_W: accumulated in place in the input dtype for float32/float64 (first chunk writes, later chunks
  // addmm_); for half types over several chunks, in a float32 buffer so it is rounded once.
  const bool w_f32_acc = want_w && active && chunks > 1 && acc != dt;
  at::Tensor gw, gw_acc, gw_part;
  if (want_w) {
    gw = active ? at::empty({in.v, in.h}, hidden.options()) : at::zeros({in.v, in.h}, hidden.options());
    if (w_f32_acc) {
      gw_acc = at::zeros({in.v, in.h}, hidden.options().dtype(acc));
      gw_part = gw;  // the per-chunk half partial reuses gw's storage
    }
  }
  at::Tensor gb_acc = want_b ? at::zeros({in.v}, hidden.options().dtype(acc)) : at::Tensor();

  if (active) {
    at::Tensor buf = at::empty({in.chunk, in.v}, hidden.options());
    for (int64_t row0 = 0; row0 < in.n; row0 += in.chunk) {
      const int64_t rows = std::min(in.chunk, in.n - row0);
      at::Tensor b = buf.narrow(0, 0, rows);
      chunk_logits(in, row0, rows, b);
      rows_fn(b, in.targets, row0, 1.0 / temperature, lz, ent, g, gh);  // b := dZ [rows, V]
      const at::Tensor hc = in.hidden.narrow(0, row0, rows);
      if (want_h) {
        at::Tensor out = gx.narrow(0, row0, rows);
        at::mm_out(out, b, in.weight);
      }
      if (want_w) {
        if (w_f32_acc) {
          at::mm_out(gw_part, b.t(), hc);
          gw_acc.add_(gw_part);
        } else if (row0 == 0) {
          at::mm_out(gw, b.t(), hc);
        } else {
          gw.addmm_(b.t(), hc);
        }
      }
      if (want_b) gb_acc.add_(at::sum(b, {0}, false, acc));
    }
    if (w_f32_acc) gw.copy_(gw_acc);
  }
  if (gx.defined()) gx = gx.view(hidden.sizes());
  at::Tensor gb = want_b ? gb_acc.to(dt) : at::Tensor();
  return {gx, gw, gb};
}

namespace {

std::tuple<at::Tensor, at::Tensor> ltl_cpu(const at::Tensor& hidden, const at::Tensor& weight,
                                           const at::Tensor& targets, const std::optional<at::Tensor>& bias,
                                           double temperature, int64_t chunk_size, bool with_entropy) {
  auto [lp, ent, logz] = forward_driver(hidden, weight, targets, bias, temperature, chunk_size, with_entropy,
                                        &forward_rows_cpu);
  return {lp, ent};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ltl_forward_cpu(
    const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& targets,
    const std::optional<at::Tensor>& bias, double temperature, int64_t chunk_size, bool with_entropy) {
  return forward_driver(hidden, weight, targets, bias, temperature, chunk_size, with_entropy, &forward_rows_cpu);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ltl_backward_cpu(
    const std::optional<at::Tensor>& grad_logprobs, const std::optional<at::Tensor>& grad_entropy,
    const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& targets,
    const std::optional<at::Tensor>& bias, const at::Tensor& logz, const std::optional<at::Tensor>& entropy,
    double temperature, int64_t chunk_size, std::array<bool, 3> output_mask) {
  return backward_driver(grad_logprobs, grad_entropy, hidden, weight, targets, bias, logz, entropy, temperature,
                         chunk_size, output_mask, &backward_rows_cpu);
}

}  // namespace
}  // namespace llmrl::linear_token_logprobs

TORCH_LIBRARY_IMPL(llmrl, CPU, m) {
  m.impl("linear_token_logprobs", &llmrl::linear_token_logprobs::ltl_cpu);
  m.impl("linear_token_logprobs_forward", &llmrl::linear_token_logprobs::ltl_forward_cpu);
  m.impl("linear_token_logprobs_backward", &llmrl::linear_token_logprobs::ltl_backward_cpu);
}
