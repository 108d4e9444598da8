// preference_loss native tests (ALGORITHMS.md §7): schema and kernels registered; loss, metrics and
// gradients vs an eager float64 composition for every loss type, label smoothing, reference-free and ipo
// lengths; closed forms (ln 2 at policy == reference); extreme log-ratios stay finite; finite differences;
// every dtype; B == 0 and B beyond one chunk; argument errors.
#include <ATen/core/dispatch/Dispatcher.h>

#include <cmath>

#include "test_util.h"

namespace {

using OptT = std::optional<at::Tensor>;
using Out = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

struct Cfg {
  std::string type = "sigmoid";
  double beta = 0.1, eps = 0.0;
  bool ref_free = false;
};

Out pref(const at::Tensor& c, const at::Tensor& r, const OptT& rc, const OptT& rr, const Cfg& k,
         const OptT& lc = std::nullopt, const OptT& lr = std::nullopt) {
  static auto op = c10::Dispatcher::singleton().findSchemaOrThrow("llmrl::preference_loss", "")
      .typed<Out(const at::Tensor&, const at::Tensor&, const OptT&, const OptT&, c10::string_view, double, double,
                 const OptT&, const OptT&, bool)>();
  return op.call(c, r, rc, rr, k.type, k.beta, k.eps, lc, lr, k.ref_free);
}

// Unfused oracle, ALGORITHMS.md §7 (ipo on per-token averaged log-ratios, metrics from the same ratios).
std::vector<at::Tensor> pref_ref(const at::Tensor& c, const at::Tensor& r, const at::Tensor& rc,
                                 const at::Tensor& rr, const Cfg& k, const OptT& lc = std::nullopt,
                                 const OptT& lr = std::nullopt) {
  at::Tensor xc = k.ref_free ? c : c - rc, xr = k.ref_free ? r : r - rr;
  at::Tensor losses;
  const double b = k.beta, e = k.eps;
  if (k.type == "ipo") {
    xc = xc / lc->to(xc.scalar_type());
    xr = xr / lr->to(xr.scalar_type());
    losses = (xc - xr - 1 / (2 * b)).pow(2);
  } else {
    at::Tensor z = b * (xc - xr);
    if (k.type == "sigmoid") losses = -(1 - e) * at::log_sigmoid(z) - e * at::log_sigmoid(-z);
    else if (k.type == "hinge") losses = at::relu(1 - z);
    else losses = (-(1 - e) * at::log_sigmoid(z) + e * at::log_sigmoid(-z)) / (1 - 2 * e);
  }
  return {losses.mean(), (b * xc).mean(), (b * xr).mean(), (xc > xr).to(xc.scalar_type()).mean(),
          (b * (xc - xr)).mean()};
}

void check_outputs(const Out& got, const std::vector<at::Tensor>& want, double tol) {
  CHECK_CLOSE(std::get<0>(got), want[0], tol, tol);
  CHECK_CLOSE(std::get<1>(got), want[1], tol, tol);
  CHECK_CLOSE(std::get<2>(got), want[2], tol, tol);
  CHECK_CLOSE(std::get<3>(got), want[3], tol, tol);
  CHECK_CLOSE(std::get<4>(got), want[4], tol, tol);
}

std::vector<Cfg> all_configs() {
  std::vector<Cfg> out;
  for (bool rf : {false, true}) {
    for (double e : {0.0, 0.1, 0.5}) out.push_back({"sigmoid", 0.1, e, rf});
    for (double e : {0.0, 0.2}) out.push_back({"robust", 0.3, e, rf});
    out.push_back({"hinge", 0.5, 0.0, rf});
    out.push_back({"ipo", 0.1, 0.0, rf});
  }
  return out;
}

template <typename F>
bool throws_with(F f, const std::string& needle) {
  try { f(); } catch (const c10::Error& e) { return std::string(e.what()).find(needle) != std::string::npos; }
  return false;
}

}  // namespace

LLMRL_TEST(preference_loss_schema_registered) {
  for (const char* name : {"llmrl::preference_loss", "llmrl::preference_loss_backward"}) {
    auto h = c10::Dispatcher::singleton().findSchema({name, ""});
    CHECK_TRUE(h.has_value());
    CHECK_TRUE(h->hasKernelForDispatchKey(c10::DispatchKey::CPU));
  }
  auto h = c10::Dispatcher::singleton().findSchema({"llmrl::preference_loss", ""});
  CHECK_TRUE(h->hasKernelForDispatchKey(c10::DispatchKey::AutogradCPU) ||
             h->hasKernelForDispatchKey(c10::DispatchKey::Autograd));
}

LLMRL_TEST(preference_loss_values_and_grads_vs_float64_oracle) {
  at::manual_seed(0);
  const int64_t B = 37;
  for (const Cfg& k : all_configs()) {
    // sequence log-probs of plausible size: sums over ~50 tokens
    at::Tensor c0 = at::randn({B}, at::kDouble) * 3 - 60, r0 = at::randn({B}, at::kDouble) * 3 - 60;
    at::Tensor rc = c0 + at::randn({B}, at::kDouble) * 4, rr = r0 + at::randn({B}, at::kDouble) * 4;
    at::Tensor lc = at::randint(1, 80, {B}, at::kLong), lr = at::randint(1, 80, {B}, at::kLong);
    const bool ipo = k.type == "ipo";
    OptT olc = ipo ? OptT(lc) : std::nullopt, olr = ipo ? OptT(lr) : std::nullopt;
    at::Tensor a = c0.clone().requires_grad_(), b = r0.clone().requires_grad_();
    at::Tensor a2 = c0.clone().requires_grad_(), b2 = r0.clone().requires_grad_();
    OptT orc = k.ref_free ? std::nullopt : OptT(rc), orr = k.ref_free ? std::nullopt : OptT(rr);
    Out got = pref(a, b, orc, orr, k, olc, olr);
    auto want = pref_ref(a2, b2, rc, rr, k, olc, olr);
    check_outputs(got, want, 1e-12);
    CHECK_TRUE(std::get<0>(got).scalar_type() == at::kDouble && std::get<0>(got).dim() == 0);
    CHECK_TRUE(std::get<0>(got).requires_grad());
    CHECK_TRUE(!std::get<1>(got).requires_grad() && !std::get<3>(got).requires_grad());
    (std::get<0>(got) * 1.7).backward();
    (want[0] * 1.7).backward();
    CHECK_CLOSE(a.grad(), a2.grad(), 1e-13, 1e-12);
    CHECK_CLOSE(b.grad(), b2.grad(), 1e-13, 1e-12);
    // Lengths are ignored by the non-ipo types.
    if (!ipo) check_outputs(pref(c0, r0, orc, orr, k, lc, lr), want, 1e-12);
  }
}

LLMRL_TEST(preference_loss_closed_forms_at_policy_equals_reference) {
  at::Tensor lp = at::randn({64}) * 5 - 40, lp2 = at::randn({64}) * 5 - 40;
  at::Tensor len = at::full({64}, 7.0);
  const double ln2 = std::log(2.0);
  for (auto dt : {at::kFloat, at::kDouble, at::kBFloat16, at::kHalf}) {
    at::Tensor c = lp.to(dt), r = lp2.to(dt);
    // sigmoid (with or without smoothing) and robust: ln 2; hinge: 1; ipo: (1/(2β))².
    for (const Cfg& k : {Cfg{"sigmoid", 0.1, 0.0, false}, Cfg{"sigmoid", 0.5, 0.3, false},
                         Cfg{"robust", 0.1, 0.25, false}}) {
      Out o = pref(c, r, c, r, k);
      CHECK_CLOSE(std::get<0>(o), at::scalar_tensor(ln2, at::kDouble), 1e-7, 1e-7);
      CHECK_TRUE(std::get<1>(o).item<double>() == 0 && std::get<3>(o).item<double>() == 0 &&
                 std::get<4>(o).item<double>() == 0);
      CHECK_TRUE(std::get<0>(o).scalar_type() == (dt == at::kDouble ? at::kDouble : at::kFloat));
    }
    CHECK_CLOSE(std::get<0>(pref(c, r, c, r, {"hinge", 0.1, 0.0, false})), at::scalar_tensor(1.0), 0, 0);
    CHECK_CLOSE(std::get<0>(pref(c, r, c, r, {"ipo", 0.1, 0.0, false}, len, len)), at::scalar_tensor(25.0), 1e-5, 1e-7);
  }
  // Gradient at Δ = 0 for plain DPO: ∂/∂c = −β·σ(0)/B = −β/(2B), ∂/∂r = +β/(2B).
  at::Tensor c = lp.to(at::kDouble).requires_grad_(), r = lp2.to(at::kDouble).requires_grad_();
  std::get<0>(pref(c, r, lp.to(at::kDouble), lp2.to(at::kDouble), {})).backward();
  CHECK_CLOSE(c.grad(), at::full({64}, -0.1 / 128, at::kDouble), 1e-16, 1e-12);
  CHECK_CLOSE(r.grad(), at::full({64}, 0.1 / 128, at::kDouble), 1e-16, 1e-12);
}

LLMRL_TEST(preference_loss_extreme_log_ratios_stay_finite) {
  // Δ = ±1e4 with β = 1 (z = ±1e4): loss 0 / 1e4, gradients 0 / ∓1 per pair, never inf or NaN.
  for (auto dt : {at::kFloat, at::kDouble, at::kBFloat16}) {
    at::Tensor c = at::tensor({1e4, -1e4, 0.0, 5e3}, at::kDouble).to(dt).requires_grad_();
    at::Tensor r = at::zeros({4}, dt).requires_grad_();
    at::Tensor zero = at::zeros({4}, dt);
    for (const Cfg& k : {Cfg{"sigmoid", 1.0, 0.0, false}, Cfg{"sigmoid", 1.0, 0.1, false},
                         Cfg{"robust", 1.0, 0.1, false}, Cfg{"hinge", 1.0, 0.0, false}}) {
      c.mutable_grad() = at::Tensor();
      r.mutable_grad() = at::Tensor();
      Out o = pref(c, r, zero, zero, k);
      std::get<0>(o).backward();
      CHECK_TRUE(std::isfinite(std::get<0>(o).item<double>()));
      CHECK_TRUE(at::isfinite(c.grad()).all().item<bool>() && at::isfinite(r.grad()).all().item<bool>());
      at::Tensor want = pref_ref(c.detach().to(at::kDouble), r.detach().to(at::kDouble), zero.to(at::kDouble),
                                 zero.to(at::kDouble), k)[0];
      CHECK_CLOSE(std::get<0>(o), want, 1e-3, 1e-6);
    }
  }
  // Plain DPO, float32: exact values. Pairs: z = 1e4 → 0; z = −1e4 → 1e4; z = 0 → ln 2; z = 5e3 → 0.
  at::Tensor c = at::tensor({1e4, -1e4, 0.0, 5e3}, at::kFloat).requires_grad_();
  at::Tensor zero = at::zeros({4});
  Out o = pref(c, zero, zero, zero, {"sigmoid", 1.0, 0.0, false});
  std::get<0>(o).backward();
  CHECK_CLOSE(std::get<0>(o), at::scalar_tensor((1e4 + std::log(2.0)) / 4), 1e-3, 1e-7);
  CHECK_CLOSE(c.grad(), at::tensor({0.0, -0.25, -0.125, 0.0}, at::kFloat), 1e-7, 0);
}

LLMRL_TEST(preference_loss_finite_differences) {
  at::manual_seed(1);
  const int64_t B = 6;
  at::Tensor c0 = at::randn({B}, at::kDouble) * 2 - 20, r0 = at::randn({B}, at::kDouble) * 2 - 20;
  at::Tensor rc = c0 + at::randn({B}, at::kDouble), rr = r0 + at::randn({B}, at::kDouble);
  at::Tensor lc = at::randint(1, 20, {B}, at::kLong), lr = at::randint(1, 20, {B}, at::kLong);
  for (const Cfg& k : {Cfg{"sigmoid", 0.7, 0.2, false}, Cfg{"robust", 0.7, 0.2, false}, Cfg{"ipo", 0.3, 0.0, false},
                       Cfg{"hinge", 0.2, 0.0, false}, Cfg{"sigmoid", 0.7, 0.0, true}}) {
    auto loss = [&](const at::Tensor& c, const at::Tensor& r) {
      return std::get<0>(pref(c, r, rc, rr, k, lc, lr)).item<double>();
    };
    at::Tensor c = c0.clone().requires_grad_(), r = r0.clone().requires_grad_();
    std::get<0>(pref(c, r, rc, rr, k, lc, lr)).backward();
    const double h = 1e-6;
    at::Tensor fc = at::empty({B}, at::kDouble), fr = at::empty({B}, at::kDouble);
    for (int64_t i = 0; i < B; ++i) {
      at::Tensor p = c0.clone(), m = c0.clone();
      p[i] += h;
      m[i] -= h;
      fc[i] = (loss(p, r0) - loss(m, r0)) / (2 * h);
      p = r0.clone();
      m = r0.clone();
      p[i] += h;
      m[i] -= h;
      fr[i] = (loss(c0, p) - loss(c0, m)) / (2 * h);
    }
    CHECK_CLOSE(c.grad(), fc, 1e-7, 1e-5);
    CHECK_CLOSE(r.grad(), fr, 1e-7, 1e-5);
  }
}

LLMRL_TEST(preference_loss_low_precision_dtypes) {
  at::manual_seed(2);
  const int64_t B = 50;
  at::Tensor c0 = at::randn({B}, at::kDouble) * 3 - 20, r0 = at::randn({B}, at::kDouble) * 3 - 20;
  at::Tensor rc0 = c0 + at::randn({B}, at::kDouble) * 4, rr0 = r0 + at::randn({B}, at::kDouble) * 4;
  at::Tensor lc = at::randint(1, 30, {B}, at::kInt), lr = at::randint(1, 30, {B}, at::kInt).to(at::kFloat);
  for (auto dt : {at::kFloat, at::kBFloat16, at::kHalf}) {
    for (const Cfg& k : {Cfg{"sigmoid", 0.1, 0.1, false}, Cfg{"ipo", 0.1, 0.0, false}, Cfg{"robust", 0.5, 0.1, true}}) {
      at::Tensor c = c0.to(dt).requires_grad_(), r = r0.to(dt).requires_grad_(), rc = rc0.to(dt), rr = rr0.to(dt);
      // The oracle sees the same rounded inputs, in float64.
      at::Tensor c2 = c.detach().to(at::kDouble).requires_grad_(), r2 = r.detach().to(at::kDouble).requires_grad_();
      Out o = pref(c, r, rc, rr, k, lc, lr);
      auto want = pref_ref(c2, r2, rc.to(at::kDouble), rr.to(at::kDouble), k, lc, lr);
      CHECK_TRUE(std::get<0>(o).scalar_type() == at::kFloat);
      // float32 math on log-probs of size ~20: relative 1e-6 of the inputs
      check_outputs(o, want, 2e-5);
      std::get<0>(o).backward();
      want[0].backward();
      CHECK_TRUE(c.grad().scalar_type() == dt && r.grad().scalar_type() == dt);
      const double gtol = dt == at::kFloat ? 1e-6 : 1e-2;  // one bf16/f16 rounding of each gradient
      CHECK_CLOSE(c.grad(), c2.grad(), 1e-7, gtol);
      CHECK_CLOSE(r.grad(), r2.grad(), 1e-7, gtol);
    }
  }
}

LLMRL_TEST(preference_loss_empty_batch_and_many_chunks) {
  at::Tensor e = at::empty({0}, at::kFloat).requires_grad_();
  Out o = pref(e, e, e, e, {});
  CHECK_TRUE(std::get<0>(o).item<float>() == 0.f && std::get<3>(o).item<float>() == 0.f);
  std::get<0>(o).backward();
  CHECK_TRUE(e.grad().numel() == 0);
  // B spanning several 2048-pair chunks (the parallel partial sums), float64 vs the oracle.
  at::manual_seed(3);
  const int64_t B = 10001;
  at::Tensor c = at::randn({B}, at::kDouble) - 30, r = at::randn({B}, at::kDouble) - 30;
  at::Tensor rc = at::randn({B}, at::kDouble) - 30, rr = at::randn({B}, at::kDouble) - 30;
  check_outputs(pref(c, r, rc, rr, {"sigmoid", 0.1, 0.05, false}), pref_ref(c, r, rc, rr, {"sigmoid", 0.1, 0.05, false}),
                1e-12);
  // float32 inputs: the float64 batch sums keep the mean at float32 per-pair precision.
  Cfg k{"sigmoid", 0.1, 0.0, false};
  check_outputs(pref(c.to(at::kFloat), r.to(at::kFloat), rc.to(at::kFloat), rr.to(at::kFloat), k),
                pref_ref(c.to(at::kFloat).to(at::kDouble), r.to(at::kFloat).to(at::kDouble),
                         rc.to(at::kFloat).to(at::kDouble), rr.to(at::kFloat).to(at::kDouble), k),
                1e-6);
}

LLMRL_TEST(preference_loss_reference_grads_are_not_propagated) {
  at::Tensor c = at::randn({5}, at::kDouble).requires_grad_(), r = at::randn({5}, at::kDouble).requires_grad_();
  at::Tensor rc = at::randn({5}, at::kDouble).requires_grad_(), rr = at::randn({5}, at::kDouble).requires_grad_();
  Out o = pref(c, r, rc, rr, {});
  std::get<0>(o).backward();
  CHECK_TRUE(c.grad().defined() && r.grad().defined());
  CHECK_TRUE(!rc.grad().defined() && !rr.grad().defined());
  // Only one side needing grad still works.
  at::Tensor c2 = at::randn({5}, at::kDouble).requires_grad_();
  std::get<0>(pref(c2, r.detach(), rc.detach(), rr.detach(), {})).backward();
  CHECK_TRUE(c2.grad().defined());
}

LLMRL_TEST(preference_loss_argument_errors) {
  at::Tensor a = at::zeros({4}), b = at::zeros({3}), len = at::ones({4});
  CHECK_TRUE(throws_with([&] { pref(a, b, a, a, {}); },
                         "preference_loss: 'rejected_logps' must have the shape of 'chosen_logps' [4], got [3]"));
  CHECK_TRUE(throws_with([&] { pref(at::zeros({2, 2}), a, a, a, {}); }, "'chosen_logps' must have shape [B], got [2, 2]"));
  CHECK_TRUE(throws_with([&] { pref(a, a, a, a.to(at::kDouble), {}); }, "'ref_rejected_logps' must have dtype Float"));
  CHECK_TRUE(throws_with([&] { pref(a, a, std::nullopt, a, {}); }, "required unless reference_free"));
  CHECK_TRUE(throws_with([&] { pref(a, a, a, a, {"dpo"}); }, "'loss_type' must be one of 'sigmoid', 'ipo'"));
  CHECK_TRUE(throws_with([&] { pref(a, a, a, a, {"sigmoid", 0.0}); }, "'beta' must be a finite number > 0, got 0"));
  CHECK_TRUE(throws_with([&] { pref(a, a, a, a, {"sigmoid", 0.1, 0.6}); }, "'label_smoothing' must be in [0, 0.5]"));
  CHECK_TRUE(throws_with([&] { pref(a, a, a, a, {"robust", 0.1, 0.5}); }, "must be in [0, 0.5) for 'robust'"));
  CHECK_TRUE(throws_with([&] { pref(a, a, a, a, {"hinge", 0.1, 0.1}); }, "applies only to 'sigmoid' and 'robust'"));
  CHECK_TRUE(throws_with([&] { pref(a, a, a, a, {"ipo"}); }, "'chosen_lengths' (the number of completion tokens"));
  CHECK_TRUE(throws_with([&] { pref(a, a, a, a, {"ipo"}, len, std::nullopt); }, "'rejected_lengths'"));
  CHECK_TRUE(throws_with([&] { pref(a, a, a, a, {"ipo"}, len, at::tensor({1, 2, 0, 3})); },
                         "'rejected_lengths' must be > 0 (token counts), got a minimum of 0"));
  CHECK_TRUE(throws_with([&] { pref(a, a, a, a, {"ipo"}, at::ones({5}), len); },
                         "'chosen_lengths' must have the shape of 'chosen_logps'"));
  CHECK_TRUE(throws_with([&] { pref(at::zeros({4}, at::kLong), at::zeros({4}, at::kLong), a, a, {}); },
                         "'chosen_logps' must be a floating tensor"));
}
