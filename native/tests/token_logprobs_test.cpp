// token_logprobs native tests: schemas registered, values and gradients vs an eager float64
// log_softmax + gather composition (every CPU code path, τ ≠ 1, entropy), finite differences, −inf
// logits, peaked rows, strided views, half dtypes, and argument / target-range errors.
#include <ATen/core/dispatch/Dispatcher.h>

#include <functional>
#include <string>
#include <vector>

#include "test_util.h"
#include "token_logprobs/token_logprobs.h"

namespace {

namespace tlp = llmrl::token_logprobs;

std::tuple<at::Tensor, at::Tensor> op(const at::Tensor& logits, const at::Tensor& targets, double tau, bool ent) {
  static auto h = c10::Dispatcher::singleton().findSchemaOrThrow("llmrl::token_logprobs", "")
      .typed<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, double, bool)>();
  return h.call(logits, targets, tau, ent);
}

// Unfused oracle, ALGORITHMS.md §1. log p is floored in the entropy so that −inf logits give 0·(finite).
std::tuple<at::Tensor, at::Tensor> oracle(const at::Tensor& logits, const at::Tensor& targets, double tau) {
  at::Tensor ls = at::log_softmax(logits / tau, -1);
  at::Tensor lp = ls.gather(-1, targets.unsqueeze(-1)).squeeze(-1);
  at::Tensor h = -(ls.exp() * ls.clamp_min(-1e4)).sum(-1);
  return {lp, h};
}

// Every CPU path this machine has (scalar, AVX2, AVX-512), each once.
std::vector<int> cpu_paths() {
  std::vector<int> out;
  for (int p : {1, 2, 3}) {
    const int got = tlp::set_cpu_path_for_testing(p);
    if (out.empty() || out.back() != got) out.push_back(got);
  }
  tlp::set_cpu_path_for_testing(0);
  return out;
}

std::string error_of(const std::function<void()>& f) {
  try { f(); } catch (const c10::Error& e) { return e.what(); }
  return "";
}

bool contains(const std::string& s, const std::string& what) { return s.find(what) != std::string::npos; }

// Compares values and gradients (through both outputs with random weights) against the oracle run in
// float64 on the same (dtype-rounded) inputs.
void check_vs_oracle(const at::Tensor& x0, const at::Tensor& targets, double tau, double tol) {
  at::Tensor a = x0.detach().clone().requires_grad_();
  at::Tensor b = x0.detach().to(at::kDouble, /*non_blocking=*/false, /*copy=*/true).requires_grad_();
  auto [lp, h] = op(a, targets, tau, true);
  auto [lp_ref, h_ref] = oracle(b, targets, tau);
  CHECK_TRUE(lp.scalar_type() == x0.scalar_type() && h.scalar_type() == x0.scalar_type());
  CHECK_CLOSE(lp, lp_ref, tol, tol);
  CHECK_CLOSE(h, h_ref, tol, tol);
  at::Tensor w = at::randn(lp.sizes(), at::kDouble), wh = at::randn(lp.sizes(), at::kDouble);
  ((lp.to(at::kDouble) * w).sum() + (h.to(at::kDouble) * wh).sum()).backward();
  ((lp_ref * w).sum() + (h_ref * wh).sum()).backward();
  CHECK_TRUE(a.grad().scalar_type() == x0.scalar_type() && a.grad().sizes() == x0.sizes());
  CHECK_CLOSE(a.grad(), b.grad(), tol, tol);
}

}  // namespace

LLMRL_TEST(token_logprobs_schema_registered) {
  auto& d = c10::Dispatcher::singleton();
  auto pub = d.findSchema({"llmrl::token_logprobs", ""});
  CHECK_TRUE(pub.has_value());
  CHECK_TRUE(pub->hasKernelForDispatchKey(c10::DispatchKey::Autograd) ||
             pub->hasKernelForDispatchKey(c10::DispatchKey::AutogradCPU));
  CHECK_TRUE(pub->hasKernelForDispatchKey(c10::DispatchKey::CompositeExplicitAutograd));
  for (const char* name : {"llmrl::token_logprobs_forward", "llmrl::token_logprobs_backward"}) {
    auto h = d.findSchema({name, ""});
    CHECK_TRUE(h.has_value());
    CHECK_TRUE(h->hasKernelForDispatchKey(c10::DispatchKey::CPU));
  }
}

LLMRL_TEST(token_logprobs_values_and_grads_vs_float64_oracle_every_cpu_path) {
  for (int path : cpu_paths()) {
    tlp::set_cpu_path_for_testing(path);
    at::manual_seed(path);
    for (double tau : {1.0, 0.7}) {
      for (int64_t v : {1, 5, 16, 37, 1001}) {  // below, at and off the SIMD width
        at::Tensor x = at::randn({3, 4, v}, at::kDouble) * 3;
        at::Tensor t = at::randint(v, {3, 4}, at::kLong);
        check_vs_oracle(x, t, tau, 1e-12);                 // float64 (scalar path)
        check_vs_oracle(x.to(at::kFloat), t, tau, 2e-5);   // float32 (this path)
      }
    }
  }
  tlp::set_cpu_path_for_testing(0);
}

LLMRL_TEST(token_logprobs_large_vocab_float32_accuracy) {
  at::manual_seed(3);
  for (int path : cpu_paths()) {
    tlp::set_cpu_path_for_testing(path);
    at::Tensor x = at::randn({3, 151936}) * 4;
    at::Tensor t = at::randint(151936, {3}, at::kLong);
    auto [lp, h] = op(x, t, 1.0, true);
    auto [lp_ref, h_ref] = oracle(x.to(at::kDouble), t, 1.0);
    CHECK_CLOSE(lp, lp_ref, 1e-5, 1e-6);
    CHECK_CLOSE(h, h_ref, 1e-5, 1e-6);
  }
  tlp::set_cpu_path_for_testing(0);
}

LLMRL_TEST(token_logprobs_finite_differences) {
  at::manual_seed(4);
  at::Tensor x = at::randn({2, 3, 5}, at::kDouble);
  at::Tensor t = at::randint(5, {2, 3}, at::kLong);
  at::Tensor w = at::randn({2, 3}, at::kDouble), wh = at::randn({2, 3}, at::kDouble);
  auto loss = [&](const at::Tensor& in) {
    auto [lp, h] = op(in, t, 0.7, true);
    return (lp * w).sum() + (h * wh).sum();
  };
  at::Tensor a = x.clone().requires_grad_();
  loss(a).backward();
  const double eps = 1e-6;
  at::Tensor fd = at::empty_like(x);
  for (int64_t i = 0; i < x.numel(); ++i) {
    at::Tensor p = x.clone(), m = x.clone();
    p.view(-1)[i] += eps;
    m.view(-1)[i] -= eps;
    fd.view(-1)[i] = (loss(p) - loss(m)) / (2 * eps);
  }
  CHECK_CLOSE(a.grad(), fd, 1e-7, 1e-6);
}

LLMRL_TEST(token_logprobs_neg_inf_logits_stay_finite) {
  for (int path : cpu_paths()) {
    tlp::set_cpu_path_for_testing(path);
    at::manual_seed(5);
    at::Tensor x = at::randn({6, 37});
    at::Tensor t = at::randint(37, {6}, at::kLong);
    at::Tensor masked = at::rand({6, 37}) < 0.5;
    masked.scatter_(1, t.unsqueeze(1), false);  // never the target
    x.masked_fill_(masked, -INFINITY);
    x[2].fill_(-INFINITY);
    x[2][t[2].item<int64_t>()] = 1.5f;  // a row with one finite entry: logp = 0, H = 0
    for (double tau : {1.0, 0.5}) {
      at::Tensor a = x.clone().requires_grad_();
      auto [lp, h] = op(a, t, tau, true);
      (lp.sum() + h.sum()).backward();
      CHECK_TRUE(at::isfinite(lp).all().item<bool>() && at::isfinite(h).all().item<bool>());
      CHECK_TRUE(at::isfinite(a.grad()).all().item<bool>());
      CHECK_TRUE((a.grad().masked_select(masked) == 0).all().item<bool>());
      CHECK_TRUE(lp[2].item<float>() == 0.f && h[2].item<float>() == 0.f);
      check_vs_oracle(x, t, tau, 2e-5);
    }
  }
  tlp::set_cpu_path_for_testing(0);
}

LLMRL_TEST(token_logprobs_peaked_rows_keep_signs) {
  // logp ≤ 0 and H ≥ 0 exactly, also where one logit dominates (p = 1 up to rounding).
  at::Tensor x = at::zeros({3, 40});
  x[0][7] = 1e4;
  x[1][0] = 80;
  x[2] = at::linspace(-50, 50, 40);
  at::Tensor t = at::tensor({7, 0, 39}, at::kLong);
  for (int path : cpu_paths()) {
    tlp::set_cpu_path_for_testing(path);
    auto [lp, h] = op(x, t, 1.0, true);
    CHECK_TRUE((lp <= 0).all().item<bool>() && (h >= 0).all().item<bool>());
    CHECK_TRUE(lp[0].item<float>() == 0.f && h[0].item<float>() == 0.f);
    auto [lp_ref, h_ref] = oracle(x.to(at::kDouble), t, 1.0);
    CHECK_CLOSE(lp, lp_ref, 1e-5, 1e-6);
    CHECK_CLOSE(h, h_ref, 1e-5, 1e-6);
  }
  tlp::set_cpu_path_for_testing(0);
}

LLMRL_TEST(token_logprobs_strided_view_read_in_place) {
  // logits[:, :-1] (a non-contiguous view) and a transposed layout both equal the contiguous result.
  at::manual_seed(6);
  at::Tensor full = at::randn({2, 6, 33});
  at::Tensor view = full.slice(1, 0, 5);
  at::Tensor t = at::randint(33, {2, 5}, at::kLong);
  at::Tensor a = full.clone().requires_grad_();
  auto [lp, h] = op(a.slice(1, 0, 5), t, 0.9, true);
  auto [lp_c, h_c] = op(view.contiguous(), t, 0.9, true);
  CHECK_CLOSE(lp, lp_c, 0, 0);
  CHECK_CLOSE(h, h_c, 0, 0);
  (lp.sum() + h.sum()).backward();
  check_vs_oracle(view.contiguous(), t, 0.9, 2e-5);
  CHECK_TRUE((a.grad().select(1, 5) == 0).all().item<bool>());
  at::Tensor tr = at::randn({33, 4}).t();  // unit stride on the leading dim: copied
  at::Tensor t2 = at::randint(33, {4}, at::kLong);
  CHECK_CLOSE(std::get<0>(op(tr, t2, 1.0, false)), std::get<0>(op(tr.contiguous(), t2, 1.0, false)), 0, 0);
}

LLMRL_TEST(token_logprobs_low_precision_dtypes) {
  at::manual_seed(7);
  for (int path : cpu_paths()) {
    tlp::set_cpu_path_for_testing(path);
    for (auto dt : {at::kBFloat16, at::kHalf}) {
      for (int64_t v : {37, 1001}) {
        at::Tensor x = (at::randn({4, v}) * 3).to(dt);
        at::Tensor t = at::randint(v, {4}, at::kLong);
        // oracle on the rounded inputs; tolerance: one rounding of outputs and gradients
        check_vs_oracle(x, t, 0.8, dt == at::kBFloat16 ? 3e-2 : 4e-3);
      }
    }
  }
  tlp::set_cpu_path_for_testing(0);
}

LLMRL_TEST(token_logprobs_single_output_grads) {
  // Only logprobs, or only entropy, receives a gradient (the other grad arrives undefined).
  at::manual_seed(8);
  at::Tensor x = at::randn({5, 29}, at::kDouble), t = at::randint(29, {5}, at::kLong);
  at::Tensor a = x.clone().requires_grad_(), b = x.clone().requires_grad_();
  std::get<1>(op(a, t, 1.3, true)).sum().backward();
  std::get<1>(oracle(b, t, 1.3)).sum().backward();
  CHECK_CLOSE(a.grad(), b.grad(), 1e-12, 1e-12);
  at::Tensor c = x.clone().requires_grad_(), d = x.clone().requires_grad_();
  auto [lp, h] = op(c, t, 1.3, false);
  CHECK_TRUE(!h.defined());
  lp.sum().backward();
  std::get<0>(oracle(d, t, 1.3)).sum().backward();
  CHECK_CLOSE(c.grad(), d.grad(), 1e-12, 1e-12);
}

LLMRL_TEST(token_logprobs_inference_mode_and_empty) {
  at::Tensor x = at::randn({3, 7}), t = at::tensor({0, 6, 3}, at::kLong);
  at::Tensor want = std::get<0>(oracle(x.to(at::kDouble), t, 1.0));
  {
    c10::InferenceMode guard;
    CHECK_CLOSE(std::get<0>(op(x, t, 1.0, false)), want, 1e-5, 1e-5);
  }
  auto [lp, h] = op(at::randn({0, 7}), at::zeros({0}, at::kLong), 1.0, true);
  CHECK_TRUE(lp.numel() == 0 && h.numel() == 0);
}

LLMRL_TEST(token_logprobs_target_out_of_range_is_an_error) {
  at::Tensor x = at::randn({2, 3, 37});
  for (int path : cpu_paths()) {
    tlp::set_cpu_path_for_testing(path);
    for (int64_t bad : {37, -1, 1000000}) {
      at::Tensor t = at::zeros({2, 3}, at::kLong);
      t[1][2] = bad;
      const std::string e = error_of([&] { op(x, t, 1.0, false); });
      CHECK_TRUE(contains(e, "token_logprobs: 'targets' must be in [0, V) with V = 37"));
      CHECK_TRUE(contains(e, "got " + std::to_string(bad) + " at flat position 5"));
    }
  }
  tlp::set_cpu_path_for_testing(0);
}

LLMRL_TEST(token_logprobs_argument_errors) {
  at::Tensor x = at::randn({2, 3, 5});
  CHECK_TRUE(contains(error_of([&] { op(x, at::zeros({3, 2}, at::kLong), 1.0, false); }),
                      "token_logprobs: 'targets' must have shape [2, 3] (the leading dims of 'logits' [2, 3, 5]), got [3, 2]"));
  CHECK_TRUE(contains(error_of([&] { op(x, at::zeros({2, 3}), 1.0, false); }), "'targets' must be int64, got Float"));
  CHECK_TRUE(contains(error_of([&] { op(x, at::zeros({2, 3}, at::kLong), 0.0, false); }),
                      "'temperature' must be a positive finite number, got 0"));
  CHECK_TRUE(contains(error_of([&] { op(x.to(at::kInt), at::zeros({2, 3}, at::kLong), 1.0, false); }),
                      "'logits' must be float32, float64, bfloat16 or float16, got Int"));
}
