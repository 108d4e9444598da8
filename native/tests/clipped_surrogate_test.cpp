// clipped_surrogate native tests (ALGORITHMS.md §4a/§4c): schema and kernels registered, values, gradients
// and metrics vs an eager float64 composition, the −0.6333 closed form, on-policy gradient −A, dual-clip,
// delta, clip-higher, finite differences, masked garbage and log-ratio overflow, all-masked, dtypes, errors.
#include <ATen/core/dispatch/Dispatcher.h>

#include <cmath>

#include "test_util.h"

namespace {

using Out5 = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

Out5 cs(const at::Tensor& lp, const at::Tensor& old, const at::Tensor& adv, const at::Tensor& mask,
        double el = 0.2, double eh = 0.2, std::optional<double> dual = std::nullopt,
        std::optional<double> delta = std::nullopt) {
  static auto op = c10::Dispatcher::singleton().findSchemaOrThrow("llmrl::clipped_surrogate", "")
      .typed<Out5(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, double, double,
                  std::optional<double>, std::optional<double>)>();
  return op.call(lp, old, adv, mask, el, eh, dual, delta);
}

at::Tensor expand_adv(const at::Tensor& adv, const at::Tensor& lp) {
  return adv.dim() == 1 ? adv.unsqueeze(1).expand_as(lp) : adv;
}

// Unfused oracle, ALGORITHMS.md §4a: per-token loss.
at::Tensor cs_ref(const at::Tensor& lp, const at::Tensor& old, const at::Tensor& adv, const at::Tensor& mask,
                  double el = 0.2, double eh = 0.2, std::optional<double> dual = std::nullopt,
                  std::optional<double> delta = std::nullopt) {
  const at::Tensor A = expand_adv(adv, lp);
  const at::Tensor w = (lp - old).clamp(-20, 20).exp();
  const at::Tensor wu = delta ? w.clamp_max(*delta) : w;
  at::Tensor L = -at::minimum(wu * A, w.clamp(1 - el, 1 + eh) * A);
  if (dual) L = at::where(A < 0, at::minimum(L, -*dual * A), L);
  return at::where(mask, L, at::zeros_like(L));
}

// §4c metrics (clip_frac, low, high, approx_kl) as doubles.
std::vector<double> metrics_ref(const at::Tensor& lp, const at::Tensor& old, const at::Tensor& adv,
                                const at::Tensor& mask, double el, double eh) {
  const at::Tensor A = expand_adv(adv, lp);
  const at::Tensor w = (lp - old).clamp(-20, 20).exp();
  const double n = mask.sum().item<double>();
  const double low = ((w < 1 - el) & (A < 0) & mask).sum().item<double>();
  const double high = ((w > 1 + eh) & (A > 0) & mask).sum().item<double>();
  const double kl = at::where(mask, (lp - old).square(), at::zeros_like(lp)).sum().item<double>();
  return {(low + high) / n, low / n, high / n, 0.5 * kl / n};
}

double val(const at::Tensor& t) { return t.item<double>(); }

}  // namespace

LLMRL_TEST(clipped_surrogate_schema_registered) {
  for (const char* name : {"llmrl::clipped_surrogate", "llmrl::clipped_surrogate_forward",
                           "llmrl::clipped_surrogate_backward"}) {
    auto h = c10::Dispatcher::singleton().findSchema({name, ""});
    CHECK_TRUE(h.has_value());
    CHECK_TRUE(h->hasKernelForDispatchKey(c10::DispatchKey::CPU));
  }
  auto h = c10::Dispatcher::singleton().findSchema({"llmrl::clipped_surrogate", ""});
  CHECK_TRUE(h->hasKernelForDispatchKey(c10::DispatchKey::AutogradCPU) ||
             h->hasKernelForDispatchKey(c10::DispatchKey::Autograd));
}

LLMRL_TEST(clipped_surrogate_values_grads_metrics_vs_float64_oracle) {
  at::manual_seed(0);
  struct Opt { double el, eh; std::optional<double> dual, delta; };
  const Opt opts[] = {{0.2, 0.2, std::nullopt, std::nullopt}, {0.2, 0.28, std::nullopt, std::nullopt},
                      {0.2, 0.2, 3.0, std::nullopt}, {0.1, 0.3, std::nullopt, 1.4}, {0.2, 0.2, 2.0, 1.3}};
  for (const Opt& o : opts) {
    for (bool per_token : {false, true}) {
      const int64_t B = 6, T = 41;
      at::Tensor lp0 = at::randn({B, T}, at::kDouble) - 2;
      at::Tensor old = lp0 + 0.5 * at::randn({B, T}, at::kDouble);
      at::Tensor adv = per_token ? at::randn({B, T}, at::kDouble) : at::randn({B}, at::kDouble);
      if (!per_token) adv.slice(0, 0, 2).copy_(at::tensor({0.7, -0.9}, at::kDouble));  // both signs present
      at::Tensor mask = at::rand({B, T}) > 0.25;
      at::Tensor a = lp0.clone().requires_grad_(), b = lp0.clone().requires_grad_();
      auto [loss, cf, cfl, cfh, kl] = cs(a, old, adv, mask, o.el, o.eh, o.dual, o.delta);
      at::Tensor want = cs_ref(b, old, adv, mask, o.el, o.eh, o.dual, o.delta);
      CHECK_TRUE(loss.scalar_type() == at::kDouble && cf.dim() == 0 && kl.scalar_type() == at::kDouble);
      CHECK_CLOSE(loss, want, 1e-12, 1e-12);
      at::Tensor wgt = at::randn({B, T}, at::kDouble);
      (loss * wgt).sum().backward();
      (want * wgt).sum().backward();
      CHECK_CLOSE(a.grad(), b.grad(), 1e-12, 1e-12);
      const auto m = metrics_ref(lp0, old, adv, mask, o.el, o.eh);
      CHECK_TRUE(m[1] > 0 && m[2] > 0);  // the data does exercise both clips
      CHECK_CLOSE(at::stack({cf, cfl, cfh, kl}), at::tensor(m, at::kDouble), 1e-12, 1e-12);
    }
  }
}

LLMRL_TEST(clipped_surrogate_closed_form_minus_0_6333) {
  // w = [0.5, 1, 1.5], A = [1, −1, 2], ε = 0.2 → per token [−0.5, 1, −2.4], token mean −0.6333.
  at::Tensor old = at::zeros({1, 3}, at::kDouble);
  at::Tensor lp = at::log(at::tensor({0.5, 1.0, 1.5}, at::kDouble)).reshape({1, 3});
  at::Tensor adv = at::tensor({1.0, -1.0, 2.0}, at::kDouble).reshape({1, 3});
  at::Tensor mask = at::ones({1, 3}, at::kBool);
  auto [loss, cf, cfl, cfh, kl] = cs(lp, old, adv, mask);
  CHECK_CLOSE(loss, at::tensor({-0.5, 1.0, -2.4}, at::kDouble).reshape({1, 3}), 1e-12, 0);
  CHECK_TRUE(std::abs(val(loss.mean()) - (-1.9 / 3)) < 1e-12);
  CHECK_TRUE(std::abs(val(loss.mean()) - (-0.6333)) < 1e-4);
  // w = 1.5 > 1.2 with A > 0 is the one high clip; w = 0.5 has A > 0 (not a low clip).
  CHECK_TRUE(std::abs(val(cfh) - 1.0 / 3) < 1e-12 && val(cfl) == 0 && std::abs(val(cf) - 1.0 / 3) < 1e-12);
}

LLMRL_TEST(clipped_surrogate_on_policy_ratio_one_gradient_minus_A) {
  at::manual_seed(1);
  at::Tensor lp = (at::randn({4, 9}) - 1).requires_grad_();
  at::Tensor adv = at::randn({4});
  at::Tensor mask = at::rand({4, 9}) > 0.2;
  auto [loss, cf, cfl, cfh, kl] = cs(lp, lp.detach(), adv, mask);
  at::Tensor A = adv.unsqueeze(1).expand({4, 9});
  at::Tensor zero = at::zeros({4, 9});
  CHECK_CLOSE(loss, at::where(mask, -A, zero), 0, 0);
  loss.sum().backward();
  CHECK_CLOSE(lp.grad(), at::where(mask, -A, zero), 0, 0);
  CHECK_TRUE(val(cf) == 0 && val(kl) == 0);
}

LLMRL_TEST(clipped_surrogate_dual_clip_delta_and_clip_higher_closed_forms) {
  auto one = [](double w, double a, double el, double eh, std::optional<double> dual, std::optional<double> delta) {
    at::Tensor lp = at::full({1, 1}, std::log(w), at::kDouble).requires_grad_();
    auto [loss, cf, cfl, cfh, kl] = cs(lp, at::zeros({1, 1}, at::kDouble), at::full({1}, a, at::kDouble),
                                       at::ones({1, 1}, at::kBool), el, eh, dual, delta);
    loss.sum().backward();
    return std::vector<double>{val(loss), val(lp.grad()), val(cfl), val(cfh)};
  };
  auto near = [](const std::vector<double>& got, std::vector<double> want) {
    for (size_t i = 0; i < want.size(); ++i)
      if (std::abs(got[i] - want[i]) > 1e-12) return false;
    return true;
  };
  // w = 3, A = −1: plain L = −min(−3, −1.2) = 3 (gradient −A·w = 3); dual-clip c = 2 caps it at −c·A = 2.
  CHECK_TRUE(near(one(3, -1, 0.2, 0.2, std::nullopt, std::nullopt), {3, 3, 0, 0}));
  CHECK_TRUE(near(one(3, -1, 0.2, 0.2, 2.0, std::nullopt), {2, 0, 0, 0}));
  CHECK_TRUE(near(one(3, -1, 0.2, 0.2, 5.0, std::nullopt), {3, 3, 0, 0}));  // cap above L: no effect
  CHECK_TRUE(near(one(3, 1, 0.2, 0.2, 2.0, std::nullopt), {-1.2, 0, 0, 1}));  // A > 0: dual-clip inactive
  // δ = 1.5 caps the unclipped term: w = 2, A = −1 → L = −min(−1.5, −1.2) = 1.5, no gradient (capped).
  CHECK_TRUE(near(one(2, -1, 0.2, 0.2, std::nullopt, 1.5), {1.5, 0, 0, 0}));
  CHECK_TRUE(near(one(2, -1, 0.2, 0.2, std::nullopt, std::nullopt), {2, 2, 0, 0}));
  CHECK_TRUE(near(one(1.4, -1, 0.2, 0.2, std::nullopt, 1.5), {1.4, 1.4, 0, 0}));  // below δ: unchanged
  // clip-higher: w = 1.25, A = 1 is clipped with ε_high = 0.2 but not with ε_high = 0.28.
  CHECK_TRUE(near(one(1.25, 1, 0.2, 0.2, std::nullopt, std::nullopt), {-1.2, 0, 0, 1}));
  CHECK_TRUE(near(one(1.25, 1, 0.2, 0.28, std::nullopt, std::nullopt), {-1.25, -1.25, 0, 0}));
  // low clip: w = 0.7, A = −1 with ε_low = 0.2: L = −min(−0.7, −0.8) = 0.8, gradient 0.
  CHECK_TRUE(near(one(0.7, -1, 0.2, 0.2, std::nullopt, std::nullopt), {0.8, 0, 1, 0}));
}

LLMRL_TEST(clipped_surrogate_finite_differences) {
  at::manual_seed(2);
  at::Tensor lp = at::randn({3, 5}, at::kDouble), old = lp + 0.3 * at::randn({3, 5}, at::kDouble);
  at::Tensor adv = at::randn({3, 5}, at::kDouble), mask = at::rand({3, 5}) > 0.2;
  at::Tensor wgt = at::randn({3, 5}, at::kDouble);
  auto f = [&](const at::Tensor& x) { return (std::get<0>(cs(x, old, adv, mask, 0.2, 0.28, 3.0, 1.5)) * wgt).sum(); };
  at::Tensor x = lp.clone().requires_grad_();
  f(x).backward();
  const double h = 1e-6;
  at::Tensor fd = at::empty_like(lp);
  for (int64_t i = 0; i < lp.numel(); ++i) {
    at::Tensor p = lp.clone(), m = lp.clone();
    p.view(-1)[i] += h;
    m.view(-1)[i] -= h;
    fd.view(-1)[i] = (f(p) - f(m)) / (2 * h);
  }
  CHECK_CLOSE(x.grad(), fd, 1e-7, 1e-6);
}

LLMRL_TEST(clipped_surrogate_masked_garbage_overflow_and_all_masked) {
  at::Tensor lp = at::tensor({-1.0f, NAN, INFINITY, 50.0f, -1.0f, -2.0f}, at::kFloat).reshape({2, 3});
  at::Tensor old = at::tensor({-1.2f, 1.0f, NAN, -50.0f, -INFINITY, -2.0f}, at::kFloat).reshape({2, 3});
  at::Tensor adv = at::tensor({1.0f, NAN, INFINITY, -1.0f, NAN, 2.0f}, at::kFloat).reshape({2, 3});
  at::Tensor mask = at::tensor({1, 0, 0, 1, 0, 1}).to(at::kBool).reshape({2, 3});
  at::Tensor x = lp.clone().requires_grad_();
  auto [loss, cf, cfl, cfh, kl] = cs(x, old, adv, mask);
  // Incoming grad is NaN on masked positions: it must not leak either.
  at::Tensor g = at::where(mask, at::ones({2, 3}), at::full({2, 3}, NAN));
  loss.backward(g);
  CHECK_TRUE(at::isfinite(loss).all().item<bool>() && at::isfinite(x.grad()).all().item<bool>());
  CHECK_TRUE(at::isfinite(cf).item<bool>() && at::isfinite(cfl).item<bool>() && at::isfinite(cfh).item<bool>());
  CHECK_TRUE((at::where(mask, at::zeros({2, 3}), loss) == 0).all().item<bool>());
  CHECK_TRUE((at::where(mask, at::zeros({2, 3}), x.grad()) == 0).all().item<bool>());
  // ℓ − ℓ_old = 100 is clamped to 20: finite loss exp(20), gradient 0 past the clamp.
  CHECK_TRUE(std::abs(loss[1][0].item<double>() - std::exp(20.0)) < 1e-6 * std::exp(20.0));
  CHECK_TRUE(x.grad()[1][0].item<float>() == 0.f);

  // All masked: zeros everywhere, metrics 0, zero gradient, no NaN.
  at::Tensor y = lp.clone().requires_grad_();
  auto [l2, f2, f2l, f2h, k2] = cs(y, old, adv, at::zeros({2, 3}, at::kBool));
  l2.sum().backward();
  CHECK_TRUE((l2 == 0).all().item<bool>() && (y.grad() == 0).all().item<bool>());
  CHECK_TRUE(val(f2) == 0 && val(f2l) == 0 && val(f2h) == 0 && val(k2) == 0);
}

LLMRL_TEST(clipped_surrogate_low_precision_dtypes_and_mask_dtype) {
  at::manual_seed(3);
  at::Tensor lp = at::randn({5, 37}, at::kDouble) - 2, old = lp + 0.2 * at::randn({5, 37}, at::kDouble);
  at::Tensor adv = at::randn({5}, at::kDouble);
  at::Tensor mask = at::rand({5, 37}) > 0.3;
  {  // float32 against the float64 oracle; a float mask and float64 advantages are accepted.
    at::Tensor x = lp.to(at::kFloat).requires_grad_();
    auto [loss, cf, cfl, cfh, kl] = cs(x, old.to(at::kFloat), adv, mask.to(at::kFloat));
    CHECK_TRUE(loss.scalar_type() == at::kFloat && cf.scalar_type() == at::kFloat);
    CHECK_CLOSE(loss, cs_ref(lp, old, adv, mask), 1e-5, 1e-5);
  }
  for (auto dt : {at::kBFloat16, at::kHalf}) {
    at::Tensor l = lp.to(dt), o = old.to(dt);
    at::Tensor ld = l.to(at::kDouble).requires_grad_();
    at::Tensor want = cs_ref(ld, o.to(at::kDouble), adv, mask);
    want.sum().backward();
    at::Tensor x = l.clone().requires_grad_();
    auto [loss, cf, cfl, cfh, kl] = cs(x, o, adv.to(at::kFloat), mask);
    loss.sum().backward();
    CHECK_TRUE(loss.scalar_type() == dt && x.grad().scalar_type() == dt && kl.scalar_type() == at::kFloat);
    CHECK_CLOSE(loss, want, 2e-2, 1e-2);
    CHECK_CLOSE(x.grad(), ld.grad(), 2e-2, 1e-2);
  }
}

LLMRL_TEST(clipped_surrogate_no_grad_path_skips_the_gradient) {
  static auto fwd = c10::Dispatcher::singleton().findSchemaOrThrow("llmrl::clipped_surrogate_forward", "")
      .typed<std::tuple<at::Tensor, at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                                            const at::Tensor&, double, double, std::optional<double>,
                                                            std::optional<double>, bool)>();
  at::Tensor lp = at::randn({2, 4}), adv = at::randn({2}), mask = at::ones({2, 4}, at::kBool);
  auto [l0, s0, d0] = fwd.call(lp, lp, adv, mask, 0.2, 0.2, std::nullopt, std::nullopt, false);
  auto [l1, s1, d1] = fwd.call(lp, lp, adv, mask, 0.2, 0.2, std::nullopt, std::nullopt, true);
  CHECK_TRUE(!d0.defined() && d1.defined() && d1.sizes() == lp.sizes());
  at::Tensor x = lp.clone().requires_grad_();
  at::NoGradGuard no_grad;
  CHECK_TRUE(!std::get<0>(cs(x, lp, adv, mask)).requires_grad());
}

LLMRL_TEST(clipped_surrogate_argument_errors) {
  at::Tensor a = at::zeros({2, 3}), m = at::ones({2, 3}, at::kBool);
  auto throws = [](const std::function<void()>& f, const std::string& what) {
    try { f(); } catch (const c10::Error& e) { return std::string(e.what()).find(what) != std::string::npos; }
    return false;
  };
  CHECK_TRUE(throws([&] { cs(a, at::zeros({3, 2}), at::zeros({2}), m); }, "'old_logprobs' must have the shape of 'logprobs'"));
  CHECK_TRUE(throws([&] { cs(a, a, at::zeros({3}), m); }, "'advantages' must have shape [B] = [2] or [B, T]"));
  CHECK_TRUE(throws([&] { cs(a, a, at::zeros({2}), at::ones({2, 2}, at::kBool)); }, "'mask' must have the shape"));
  CHECK_TRUE(throws([&] { cs(at::zeros({6}), at::zeros({6}), at::zeros({6}), at::ones({6}, at::kBool)); },
                    "'logprobs' must have shape [B, T]"));
  CHECK_TRUE(throws([&] { cs(a, a.to(at::kDouble), at::zeros({2}), m); }, "'old_logprobs' must have dtype"));
  CHECK_TRUE(throws([&] { cs(a, a, at::zeros({2}), m, -0.1); }, "'eps_low' must be a finite number >= 0"));
  CHECK_TRUE(throws([&] { cs(a, a, at::zeros({2}), m, 0.2, 0.2, 0.5); }, "'dual_clip' must be a finite number > 1"));
  CHECK_TRUE(throws([&] { cs(a, a, at::zeros({2}), m, 0.2, 0.2, std::nullopt, 0.0); }, "'delta' must be"));
}
