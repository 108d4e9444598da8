// token_logprobs CPU kernels (ALGORITHMS.md §1; math in token_logprobs.h): argument checks, then one
// parallel pass over the rows (at::parallel_for), each row read once by a SIMD row kernel (simd.h,
// AVX-512 or AVX2 chosen at run time) or the scalar fallback (float64, and CPUs without AVX2).
#include "token_logprobs/token_logprobs.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <vector>

#include "token_logprobs/simd.h"

namespace llmrl::token_logprobs {

Inputs check_inputs(const char* op, const at::Tensor& logits, const at::Tensor& targets, double temperature) {
  TORCH_CHECK(logits.defined() && logits.dim() >= 1, op, ": 'logits' must have shape [..., V], got ",
              logits.defined() ? logits.sizes() : at::IntArrayRef{});
  const auto dt = logits.scalar_type();
  TORCH_CHECK(dt == at::kFloat || dt == at::kDouble || dt == at::kBFloat16 || dt == at::kHalf, op,
              ": 'logits' must be float32, float64, bfloat16 or float16, got ", dt);
  TORCH_CHECK(targets.scalar_type() == at::kLong, op, ": 'targets' must be int64, got ", targets.scalar_type());
  const auto lead = logits.sizes().slice(0, logits.dim() - 1);
  TORCH_CHECK(targets.sizes() == lead, op, ": 'targets' must have shape ", lead, " (the leading dims of 'logits' ",
              logits.sizes(), "), got ", targets.sizes());
  TORCH_CHECK(targets.device() == logits.device(), op, ": 'targets' must be on ", logits.device(),
              " like 'logits', got ", targets.device());
  TORCH_CHECK(temperature > 0 && std::isfinite(temperature), op,
              ": 'temperature' must be a positive finite number, got ", temperature);
  Inputs in;
  in.v = logits.size(-1);
  in.n = targets.numel();
  in.inv_tau = 1.0 / temperature;
  in.targets = targets.contiguous().view({-1});
  // Rows are read in place when the vocabulary dim has unit stride (e.g. the view logits[:, :-1]);
  // only other layouts are copied.
  in.logits = (logits.stride(-1) == 1 || in.v <= 1) ? logits : logits.contiguous();
  if (!in.logits.is_contiguous() && in.n > 0) {
    const int64_t nd = in.logits.dim() - 1;
    in.offsets = at::empty({in.n}, at::dtype(at::kLong));
    int64_t* off = in.offsets.mutable_data_ptr<int64_t>();
    std::vector<int64_t> idx(nd, 0);
    int64_t o = 0;
    for (int64_t r = 0; r < in.n; ++r) {
      off[r] = o;
      for (int64_t d = nd - 1; d >= 0; --d) {  // odometer over the leading dims
        o += in.logits.stride(d);
        if (++idx[d] < in.logits.size(d)) break;
        o -= in.logits.stride(d) * idx[d];
        idx[d] = 0;
      }
    }
  }
  return in;
}

void bad_target(const char* op, int64_t value, int64_t row, int64_t v) {
  TORCH_CHECK(false, op, ": 'targets' must be in [0, V) with V = ", v, " (the size of the last dim of 'logits'), got ",
              value, " at flat position ", row);
}

namespace {

// ---- scalar fallback (float64 and CPUs without AVX2): the shared per-element math, row by row ----
// Blocks of 256 entries get their own state, merged into the row's: the sums are not one serial
// float32 sum over the whole row (see rows.inc).
template <typename T, typename acc>
void forward_row_scalar(const T* x, int64_t v, int64_t target, acc inv_tau, acc* logz, acc* logp, acc* ent) {
  Stats<acc> st{kLowest<acc>, acc(0), acc(0)};
  for (int64_t b = 0; b < v; b += 256) {
    Stats<acc> blk{kLowest<acc>, acc(0), acc(0)};
    for (int64_t i = b, e = std::min(v, b + 256); i < e; ++i) push(blk, static_cast<acc>(x[i]) * inv_tau);
    st = merge(st, blk);
  }
  finish(st, static_cast<acc>(x[target]) * inv_tau, logz, logp, ent);
}

template <typename T, typename acc>
void backward_row_scalar(const T* x, T* dx, int64_t v, int64_t target, acc inv_tau, acc logz, acc c0, acc c1,
                         acc g_tau) {
  for (int64_t i = 0; i < v; ++i) dx[i] = static_cast<T>(grad_logit<acc>(static_cast<acc>(x[i]) * inv_tau - logz, c0, c1));
  dx[target] = static_cast<T>(grad_logit<acc>(static_cast<acc>(x[target]) * inv_tau - logz, c0, c1) + g_tau);
}

template <typename T, typename acc = at::opmath_type<T>>
struct RowFns {
  void (*fwd)(const T*, int64_t, int64_t, acc, acc*, acc*, acc*);
  void (*bwd)(const T*, T*, int64_t, int64_t, acc, acc, acc, acc, acc);
};

// __builtin_cpu_supports also checks that the OS saves the AVX / AVX-512 registers. F16C (used for
// float16) is not asked for: every AVX2 and AVX-512 CPU has it, and older clang cannot query it.
int detect_path() {
#ifdef LLMRL_TLP_X86
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("fma")) {
    return 3;
  }
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return 2;
#endif
  return 1;
}

int env_path() {
  const char* e = std::getenv("LLMRL_TOKEN_LOGPROBS_ISA");
  if (!e) return 0;
  if (!std::strcmp(e, "scalar")) return 1;
  if (!std::strcmp(e, "avx2")) return 2;
  if (!std::strcmp(e, "avx512")) return 3;
  return 0;
}

const int kBestPath = detect_path();
std::atomic<int> g_path{0};  // 0 = not chosen yet

template <typename T>
RowFns<T> row_fns(int path) {
  using acc = at::opmath_type<T>;
  if constexpr (std::is_same_v<acc, float>) {
#ifdef LLMRL_TLP_X86
    if (path == 3) return {&avx512::forward_row<T>, &avx512::backward_row<T>};
    if (path == 2) return {&avx2::forward_row<T>, &avx2::backward_row<T>};
#endif
  }
  return {&forward_row_scalar<T, acc>, &backward_row_scalar<T, acc>};
}

// Rows per parallel task: enough elements per task to amortise the scheduling.
int64_t grain(int64_t v) { return std::max<int64_t>(1, 32768 / std::max<int64_t>(v, 1)); }

}  // namespace

int set_cpu_path_for_testing(int path) {
  const int p = path <= 0 ? kBestPath : std::min(path, kBestPath);
  g_path.store(p);
  return p;
}

int cpu_path() {
  int p = g_path.load(std::memory_order_relaxed);
  if (p == 0) p = set_cpu_path_for_testing(env_path());
  return p;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> token_logprobs_forward_cpu(const at::Tensor& logits,
                                                                          const at::Tensor& targets,
                                                                          double temperature, bool with_entropy) {
  const Inputs in = check_inputs("token_logprobs", logits, targets, temperature);
  const auto acc_t = acc_dtype(logits.scalar_type());
  at::Tensor logp = at::empty(targets.sizes(), logits.options());
  at::Tensor logz = at::empty(targets.sizes(), logits.options().dtype(acc_t));
  at::Tensor ent = with_entropy ? at::empty(targets.sizes(), logits.options().dtype(acc_t)) : at::Tensor();
  if (in.n == 0) return {logp, ent, logz};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logits.scalar_type(), "token_logprobs_cpu", [&] {
    using acc = at::opmath_type<scalar_t>;
    const RowFns<scalar_t> fns = row_fns<scalar_t>(cpu_path());
    const scalar_t* x = in.logits.const_data_ptr<scalar_t>();
    const int64_t* tg = in.targets.const_data_ptr<int64_t>();
    const int64_t* off = in.offsets.defined() ? in.offsets.const_data_ptr<int64_t>() : nullptr;
    scalar_t* plp = logp.mutable_data_ptr<scalar_t>();
    acc* plz = logz.mutable_data_ptr<acc>();
    acc* pent = with_entropy ? ent.mutable_data_ptr<acc>() : nullptr;
    const int64_t v = in.v;
    const acc inv_tau = static_cast<acc>(in.inv_tau);
    std::atomic<int64_t> bad{-1};
    at::parallel_for(0, in.n, grain(v), [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const int64_t t = tg[r];
        if (t < 0 || t >= v) {  // never read out of the row; reported after the loop
          bad.store(r, std::memory_order_relaxed);
          plp[r] = std::numeric_limits<scalar_t>::quiet_NaN();
          continue;
        }
        acc lz, lp, h;
        fns.fwd(x + (off ? off[r] : r * v), v, t, inv_tau, &lz, &lp, &h);
        plp[r] = static_cast<scalar_t>(lp);
        plz[r] = lz;
        if (pent) pent[r] = h;
      }
    });
    const int64_t b = bad.load();
    if (b >= 0) bad_target("token_logprobs", tg[b], b, v);
  });
  return {logp, ent, logz};
}

at::Tensor token_logprobs_backward_cpu(const std::optional<at::Tensor>& grad_logprobs,
                                       const std::optional<at::Tensor>& grad_entropy, const at::Tensor& logits,
                                       const at::Tensor& targets, const at::Tensor& logz,
                                       const std::optional<at::Tensor>& entropy, double temperature) {
  constexpr const char* op = "token_logprobs_backward";
  const Inputs in = check_inputs(op, logits, targets, temperature);
  const auto acc_t = acc_dtype(logits.scalar_type());
  // Per-row inputs ([N], small) in the accumulation dtype; a grad from .sum() arrives expanded.
  auto per_row = [&](const at::Tensor& t, const char* name) {
    TORCH_CHECK(t.sizes() == targets.sizes(), op, ": '", name, "' must have shape ", targets.sizes(), ", got ", t.sizes());
    return t.to(acc_t).contiguous();
  };
  const bool has_g = grad_logprobs && grad_logprobs->defined();
  const bool has_gh = grad_entropy && grad_entropy->defined();
  const at::Tensor lz = per_row(logz, "logz");
  const at::Tensor g = has_g ? per_row(*grad_logprobs, "grad_logprobs") : at::Tensor();
  const at::Tensor gh = has_gh ? per_row(*grad_entropy, "grad_entropy") : at::Tensor();
  TORCH_CHECK(!has_gh || (entropy && entropy->defined()), op, ": 'entropy' is required with 'grad_entropy'");
  const at::Tensor h = has_gh ? per_row(*entropy, "entropy") : at::Tensor();
  at::Tensor dx = at::empty(logits.sizes(), logits.options().memory_format(at::MemoryFormat::Contiguous));
  if (in.n == 0 || in.v == 0) return dx;
  if (!has_g && !has_gh) return dx.zero_();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logits.scalar_type(), "token_logprobs_backward_cpu", [&] {
    using acc = at::opmath_type<scalar_t>;
    const RowFns<scalar_t> fns = row_fns<scalar_t>(cpu_path());
    const scalar_t* x = in.logits.const_data_ptr<scalar_t>();
    const int64_t* tg = in.targets.const_data_ptr<int64_t>();
    const int64_t* off = in.offsets.defined() ? in.offsets.const_data_ptr<int64_t>() : nullptr;
    const acc* plz = lz.const_data_ptr<acc>();
    const acc* pg = has_g ? g.const_data_ptr<acc>() : nullptr;
    const acc* pgh = has_gh ? gh.const_data_ptr<acc>() : nullptr;
    const acc* ph = has_gh ? h.const_data_ptr<acc>() : nullptr;
    scalar_t* pdx = dx.mutable_data_ptr<scalar_t>();
    const int64_t v = in.v;
    const acc inv_tau = static_cast<acc>(in.inv_tau);
    std::atomic<int64_t> bad{-1};
    at::parallel_for(0, in.n, grain(v), [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const int64_t t = tg[r];
        if (t < 0 || t >= v) {
          bad.store(r, std::memory_order_relaxed);
          continue;
        }
        const acc gr = pg ? pg[r] : acc(0), ghr = pgh ? pgh[r] : acc(0), hr = ph ? ph[r] : acc(0);
        fns.bwd(x + (off ? off[r] : r * v), pdx + r * v, v, t, inv_tau, plz[r], -(gr + ghr * hr) * inv_tau,
                -ghr * inv_tau, gr * inv_tau);
      }
    });
    const int64_t b = bad.load();
    if (b >= 0) bad_target(op, tg[b], b, v);
  });
  return dx;
}

}  // namespace llmrl::token_logprobs

TORCH_LIBRARY_IMPL(llmrl, CPU, m) {
  m.impl("token_logprobs_forward", &llmrl::token_logprobs::token_logprobs_forward_cpu);
  m.impl("token_logprobs_backward", &llmrl::token_logprobs::token_logprobs_backward_cpu);
}
