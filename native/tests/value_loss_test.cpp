// value_loss native tests (ALGORITHMS.md §6): registration, values/gradients/clip fraction vs an eager
// float64 composition, closed forms (clipped, tie inside the clip range), normaliser and micro-batches,
// finite differences, masked garbage, all-masked, dtypes, errors.
#include <ATen/core/dispatch/Dispatcher.h>

#include "test_util.h"

namespace {

std::tuple<at::Tensor, at::Tensor> vl(const at::Tensor& v, const at::Tensor& vo, const at::Tensor& r,
                                      const at::Tensor& mask, double clip = 0.2,
                                      std::optional<double> normalizer = std::nullopt) {
  static auto op = c10::Dispatcher::singleton().findSchemaOrThrow("llmrl::value_loss", "")
      .typed<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                                const at::Tensor&, double, std::optional<double>)>();
  return op.call(v, vo, r, mask, clip, normalizer);
}

// Unfused oracle, ALGORITHMS.md §6 (TRL's PPO value loss): loss and clip fraction.
std::tuple<at::Tensor, at::Tensor> vl_ref(const at::Tensor& v, const at::Tensor& vo, const at::Tensor& r,
                                          const at::Tensor& mask, double clip = 0.2) {
  const at::Tensor vc = vo + (v - vo).clamp(-clip, clip);
  const at::Tensor l1 = (v - r).square(), l2 = (vc - r).square();
  const at::Tensor zero = at::zeros_like(v);
  const at::Tensor n = mask.sum().to(v.scalar_type());
  const at::Tensor loss = 0.5 * at::where(mask, at::maximum(l1, l2), zero).sum() / n;
  const at::Tensor frac = at::where(mask, (l2 > l1).to(v.scalar_type()), zero).sum() / n;
  return {loss, frac};
}

double val(const at::Tensor& t) { return t.item<double>(); }

}  // namespace

LLMRL_TEST(value_loss_schema_registered) {
  for (const char* name : {"llmrl::value_loss", "llmrl::value_loss_forward", "llmrl::value_loss_backward"}) {
    auto h = c10::Dispatcher::singleton().findSchema({name, ""});
    CHECK_TRUE(h.has_value());
    CHECK_TRUE(h->hasKernelForDispatchKey(c10::DispatchKey::CPU));
  }
  auto h = c10::Dispatcher::singleton().findSchema({"llmrl::value_loss", ""});
  CHECK_TRUE(h->hasKernelForDispatchKey(c10::DispatchKey::AutogradCPU) ||
             h->hasKernelForDispatchKey(c10::DispatchKey::Autograd));
}

LLMRL_TEST(value_loss_vs_float64_oracle) {
  at::manual_seed(0);
  for (double clip : {0.2, 0.05, 1.0}) {
    at::Tensor v0 = at::randn({6, 45}, at::kDouble), vo = v0 + 0.3 * at::randn({6, 45}, at::kDouble);
    at::Tensor r = at::randn({6, 45}, at::kDouble), mask = at::rand({6, 45}) > 0.3;
    at::Tensor a = v0.clone().requires_grad_(), b = v0.clone().requires_grad_();
    auto [loss, frac] = vl(a, vo, r, mask, clip);
    auto [want, want_frac] = vl_ref(b, vo, r, mask, clip);
    CHECK_TRUE(loss.dim() == 0 && loss.scalar_type() == at::kDouble && !frac.requires_grad());
    CHECK_CLOSE(loss, want, 1e-13, 1e-13);
    CHECK_CLOSE(frac, want_frac, 1e-15, 0);
    CHECK_TRUE(val(frac) > 0 && val(frac) < 1);
    (loss * 3).backward();
    (want * 3).backward();
    CHECK_CLOSE(a.grad(), b.grad(), 1e-15, 1e-13);
  }
}

LLMRL_TEST(value_loss_closed_forms) {
  // V = 1.5, V_old = 1, R = 2, ε = 0.2: v_clip = 1.2, ½·max(0.25, 0.64) = 0.32, gradient 0 (clamped).
  // V = 1.1 (inside the clip range): both terms tie at 0.81, loss 0.405, gradient V − R = −0.9.
  at::Tensor v = at::tensor({1.5, 1.1}, at::kDouble).requires_grad_();
  at::Tensor vo = at::tensor({1.0, 1.0}, at::kDouble), r = at::tensor({2.0, 2.0}, at::kDouble);
  auto [loss, frac] = vl(v, vo, r, at::tensor({1, 0}).to(at::kBool));
  CHECK_TRUE(std::abs(val(loss) - 0.32) < 1e-12 && val(frac) == 1);
  auto [loss2, frac2] = vl(v, vo, r, at::tensor({0, 1}).to(at::kBool));
  CHECK_TRUE(std::abs(val(loss2) - 0.405) < 1e-12 && val(frac2) == 0);
  loss2.backward();
  CHECK_CLOSE(v.grad(), at::tensor({0.0, -0.9}, at::kDouble), 1e-12, 0);
  // Unclipped branch larger: V = 0.5, V_old = 1, R = 2 → v_clip = 0.8; (V−R)² = 2.25 > 1.44: grad V − R.
  at::Tensor w = at::tensor({0.5}, at::kDouble).requires_grad_();
  auto [loss3, frac3] = vl(w, at::tensor({1.0}, at::kDouble), at::tensor({2.0}, at::kDouble), at::ones({1}, at::kBool));
  loss3.backward();
  CHECK_TRUE(std::abs(val(loss3) - 1.125) < 1e-12 && val(frac3) == 0 && std::abs(val(w.grad()) + 1.5) < 1e-12);
}

LLMRL_TEST(value_loss_normalizer_micro_batches) {
  at::manual_seed(1);
  at::Tensor v0 = at::randn({6, 10}, at::kDouble), vo = v0 + 0.3 * at::randn({6, 10}, at::kDouble);
  at::Tensor r = at::randn({6, 10}, at::kDouble), mask = at::rand({6, 10}) > 0.3;
  at::Tensor full = v0.clone().requires_grad_();
  at::Tensor fl = std::get<0>(vl(full, vo, r, mask));
  fl.backward();
  const double N = mask.sum().item<double>();
  at::Tensor acc = v0.clone().requires_grad_();
  double total = 0;
  for (int64_t k = 0; k < 3; ++k) {
    auto sl = [&](const at::Tensor& t) { return t.slice(0, 2 * k, 2 * k + 2); };
    at::Tensor l = std::get<0>(vl(sl(acc), sl(vo), sl(r), sl(mask), 0.2, N));
    total += val(l);
    l.backward();
  }
  CHECK_TRUE(std::abs(total - val(fl)) < 1e-13);
  CHECK_CLOSE(acc.grad(), full.grad(), 1e-15, 1e-13);
}

LLMRL_TEST(value_loss_finite_differences) {
  at::manual_seed(2);
  at::Tensor v = at::randn({12}, at::kDouble), vo = v + 0.3 * at::randn({12}, at::kDouble);
  at::Tensor r = at::randn({12}, at::kDouble), mask = at::rand({12}) > 0.2;
  auto f = [&](const at::Tensor& x) { return std::get<0>(vl(x, vo, r, mask)); };
  at::Tensor x = v.clone().requires_grad_();
  f(x).backward();
  const double h = 1e-6;
  at::Tensor fd = at::empty_like(v);
  for (int64_t i = 0; i < v.numel(); ++i) {
    at::Tensor p = v.clone(), m = v.clone();
    p[i] += h;
    m[i] -= h;
    fd[i] = (f(p) - f(m)) / (2 * h);
  }
  CHECK_CLOSE(x.grad(), fd, 1e-7, 1e-6);
}

LLMRL_TEST(value_loss_masked_garbage_and_all_masked) {
  at::Tensor v = at::tensor({1.0f, NAN, INFINITY, 0.5f}, at::kFloat);
  at::Tensor vo = at::tensor({1.1f, 0.0f, NAN, -INFINITY}, at::kFloat);
  at::Tensor r = at::tensor({2.0f, NAN, 1.0f, INFINITY}, at::kFloat);
  at::Tensor mask = at::tensor({1, 0, 0, 0}).to(at::kBool);
  at::Tensor x = v.clone().requires_grad_();
  auto [loss, frac] = vl(x, vo, r, mask);
  loss.backward();
  CHECK_TRUE(at::isfinite(loss).item<bool>() && at::isfinite(x.grad()).all().item<bool>());
  CHECK_TRUE(std::abs(val(loss) - 0.5) < 1e-6);  // only the first position: ½·(1 − 2)²
  CHECK_TRUE((x.grad().slice(0, 1) == 0).all().item<bool>());
  at::Tensor y = v.clone().requires_grad_();
  auto [l2, f2] = vl(y, vo, r, at::zeros({4}, at::kBool));
  l2.backward();
  CHECK_TRUE(val(l2) == 0 && val(f2) == 0 && (y.grad() == 0).all().item<bool>());
  at::Tensor z = v.clone().requires_grad_();
  auto [l3, f3] = vl(z, vo, r, mask, 0.2, 0.0);  // zero normaliser
  l3.backward();
  CHECK_TRUE(val(l3) == 0 && (z.grad() == 0).all().item<bool>());
}

LLMRL_TEST(value_loss_dtypes) {
  at::manual_seed(3);
  at::Tensor v = at::randn({4, 50}, at::kDouble), vo = v + 0.3 * at::randn({4, 50}, at::kDouble);
  at::Tensor r = at::randn({4, 50}, at::kDouble), mask = at::rand({4, 50}) > 0.3;
  for (auto dt : {at::kFloat, at::kBFloat16, at::kHalf}) {
    at::Tensor a = v.to(dt), o = vo.to(dt), rr = r.to(dt);
    at::Tensor x = a.clone().requires_grad_();
    auto [loss, frac] = vl(x, o, rr, mask.to(at::kFloat));
    loss.backward();
    CHECK_TRUE(loss.scalar_type() == at::kFloat && frac.scalar_type() == at::kFloat && x.grad().scalar_type() == dt);
    at::Tensor xd = a.to(at::kDouble).requires_grad_();
    auto [want, want_frac] = vl_ref(xd, o.to(at::kDouble), rr.to(at::kDouble), mask);
    want.backward();
    CHECK_CLOSE(loss, want, 1e-5, 1e-5);
    CHECK_CLOSE(x.grad(), xd.grad(), dt == at::kFloat ? 1e-6 : 1e-3, 1e-2);
  }
}

LLMRL_TEST(value_loss_argument_errors) {
  at::Tensor a = at::zeros({2, 3}), m = at::ones({2, 3}, at::kBool);
  auto throws = [](const std::function<void()>& f, const std::string& what) {
    try { f(); } catch (const c10::Error& e) { return std::string(e.what()).find(what) != std::string::npos; }
    return false;
  };
  CHECK_TRUE(throws([&] { vl(a, at::zeros({3, 2}), a, m); }, "value_loss: 'old_values' must have the shape of 'values'"));
  CHECK_TRUE(throws([&] { vl(a, a, a.to(at::kDouble), m); }, "'returns' must have dtype"));
  CHECK_TRUE(throws([&] { vl(a, a, a, at::ones({2}, at::kBool)); }, "'mask' must have the shape"));
  CHECK_TRUE(throws([&] { vl(a, a, a, m, -0.2); }, "'clip' must be a finite number >= 0"));
  CHECK_TRUE(throws([&] { vl(a, a, a, m, 0.2, -1.0); }, "'normalizer' must be a finite number >= 0"));
}
