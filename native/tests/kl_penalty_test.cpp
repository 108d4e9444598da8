// kl_penalty native tests: schema registered, CPU values and gradients vs an eager float64 composition,
// finite differences, masked garbage stays out, every dtype, argument errors.
#include <ATen/core/dispatch/Dispatcher.h>

#include "test_util.h"

namespace {

at::Tensor kl(const at::Tensor& lp, const at::Tensor& ref, const std::optional<at::Tensor>& mask,
              const std::optional<at::Tensor>& old, const std::string& est) {
  static auto op = c10::Dispatcher::singleton().findSchemaOrThrow("llmrl::kl_penalty", "")
      .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
                        const std::optional<at::Tensor>&, c10::string_view)>();
  return op.call(lp, ref, mask, old, est);
}

// Unfused oracle, ALGORITHMS.md §2.
at::Tensor kl_ref(const at::Tensor& lp, const at::Tensor& ref, const std::optional<at::Tensor>& mask,
                  const std::optional<at::Tensor>& old, const std::string& est) {
  at::Tensor d = (ref - lp).clamp(-20, 20);
  at::Tensor k;
  if (est == "k1") k = -d;
  else if (est == "k2") k = 0.5 * d * d;
  else if (est == "k3") k = d.exp() - d - 1;
  else k = d.abs();
  if (old) k = k * (lp - *old).clamp(-20, 20).exp();
  if (mask) k = at::where(*mask, k, at::zeros_like(k));
  return k;
}

}  // namespace

LLMRL_TEST(kl_penalty_schema_registered) {
  auto h = c10::Dispatcher::singleton().findSchema({"llmrl::kl_penalty", ""});
  CHECK_TRUE(h.has_value());
  CHECK_TRUE(h->hasKernelForDispatchKey(c10::DispatchKey::CPU));
  CHECK_TRUE(h->hasKernelForDispatchKey(c10::DispatchKey::AutogradCPU) ||
             h->hasKernelForDispatchKey(c10::DispatchKey::Autograd));
}

LLMRL_TEST(kl_penalty_values_and_grads_vs_float64_oracle) {
  at::manual_seed(0);
  for (const char* est : {"k1", "k2", "k3", "abs"}) {
    for (bool ratio : {false, true}) {
      at::Tensor lp0 = at::randn({5, 37}, at::kDouble) - 2, ref = at::randn({5, 37}, at::kDouble) - 2;
      at::Tensor old = at::randn({5, 37}, at::kDouble) - 2;
      at::Tensor mask = at::rand({5, 37}) > 0.3;
      std::optional<at::Tensor> o = ratio ? std::optional<at::Tensor>(old) : std::nullopt;
      at::Tensor a = lp0.clone().requires_grad_(), b = lp0.clone().requires_grad_();
      at::Tensor got = kl(a, ref, mask, o, est), want = kl_ref(b, ref, mask, o, est);
      CHECK_CLOSE(got, want, 1e-12, 1e-12);
      at::Tensor w = at::randn({5, 37}, at::kDouble);
      (got * w).sum().backward();
      (want * w).sum().backward();
      CHECK_CLOSE(a.grad(), b.grad(), 1e-12, 1e-12);
    }
  }
}

LLMRL_TEST(kl_penalty_finite_differences) {
  at::manual_seed(1);
  at::Tensor lp = at::randn({3, 4}, at::kDouble), ref = at::randn({3, 4}, at::kDouble);
  at::Tensor old = at::randn({3, 4}, at::kDouble);
  at::Tensor x = lp.clone().requires_grad_();
  kl(x, ref, std::nullopt, old, "k3").sum().backward();
  const double h = 1e-6;
  at::Tensor fd = at::empty_like(lp);
  for (int64_t i = 0; i < lp.numel(); ++i) {
    at::Tensor p = lp.clone(), m = lp.clone();
    p.view(-1)[i] += h;
    m.view(-1)[i] -= h;
    fd.view(-1)[i] = (kl(p, ref, std::nullopt, old, "k3").sum() - kl(m, ref, std::nullopt, old, "k3").sum()) / (2 * h);
  }
  CHECK_CLOSE(x.grad(), fd, 1e-7, 1e-6);
}

LLMRL_TEST(kl_penalty_masked_garbage_and_overflow_stay_finite) {
  at::Tensor lp = at::tensor({-1.0, NAN, INFINITY, -1e4}, at::kFloat);
  at::Tensor ref = at::tensor({-2.0, 1.0, NAN, 0.0}, at::kFloat);
  at::Tensor mask = at::tensor({1, 0, 0, 1}).to(at::kBool);
  at::Tensor x = lp.clone().requires_grad_();
  at::Tensor out = kl(x, ref, mask, std::nullopt, "k3");
  out.sum().backward();
  CHECK_TRUE(at::isfinite(out).all().item<bool>());
  CHECK_TRUE(at::isfinite(x.grad()).all().item<bool>());
  CHECK_TRUE(out[1].item<float>() == 0.f && out[2].item<float>() == 0.f);
  CHECK_TRUE(x.grad()[1].item<float>() == 0.f && x.grad()[2].item<float>() == 0.f);
}

LLMRL_TEST(kl_penalty_low_precision_dtypes) {
  at::manual_seed(2);
  at::Tensor lp = at::randn({4, 33}, at::kDouble) - 1, ref = at::randn({4, 33}, at::kDouble) - 1;
  at::Tensor want = kl_ref(lp, ref, std::nullopt, std::nullopt, "k3");
  CHECK_CLOSE(kl(lp.to(at::kFloat), ref.to(at::kFloat), std::nullopt, std::nullopt, "k3"), want, 1e-5, 1e-5);
  for (auto dt : {at::kBFloat16, at::kHalf}) {
    at::Tensor l = lp.to(dt), r = ref.to(dt);
    at::Tensor w = kl_ref(l.to(at::kDouble), r.to(at::kDouble), std::nullopt, std::nullopt, "k3");
    at::Tensor got = kl(l, r, std::nullopt, std::nullopt, "k3");
    CHECK_TRUE(got.scalar_type() == dt);
    CHECK_CLOSE(got, w, 1e-2, 1e-2);
  }
}

LLMRL_TEST(kl_penalty_argument_errors) {
  at::Tensor a = at::zeros({2, 3}), b = at::zeros({3, 2});
  bool threw = false;
  try { kl(a, b, std::nullopt, std::nullopt, "k3"); } catch (const c10::Error& e) {
    threw = std::string(e.what()).find("'ref_logprobs' must have the shape") != std::string::npos;
  }
  CHECK_TRUE(threw);
  threw = false;
  try { kl(a, a, std::nullopt, std::nullopt, "k9"); } catch (const c10::Error& e) {
    threw = std::string(e.what()).find("'estimator' must be one of") != std::string::npos;
  }
  CHECK_TRUE(threw);
}
