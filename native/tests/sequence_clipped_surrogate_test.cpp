// sequence_clipped_surrogate native tests (ALGORITHMS.md §4b/§4c): registration, values/gradients/metrics
// vs an eager float64 composition at both levels, sequence vs sequence_token (equal values, gradients equal
// under seq_mean_token_mean and different as specified under non-uniform token weights), a GSPO closed
// form, fully masked rows, finite differences, masked garbage, dtypes, errors.
#include <ATen/core/dispatch/Dispatcher.h>

#include <cmath>

#include "test_util.h"

namespace {

using Out5 = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

Out5 scs(const at::Tensor& lp, const at::Tensor& old, const at::Tensor& adv, const at::Tensor& mask,
         const std::string& level, double el = 0.2, double eh = 0.2, std::optional<double> dual = std::nullopt,
         std::optional<double> delta = std::nullopt) {
  static auto op = c10::Dispatcher::singleton().findSchemaOrThrow("llmrl::sequence_clipped_surrogate", "")
      .typed<Out5(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, double, double,
                  std::optional<double>, std::optional<double>, c10::string_view)>();
  return op.call(lp, old, adv, mask, el, eh, dual, delta, level);
}

// −min(w_u·A, clamp(w)·A) with dual-clip and δ, elementwise (the §4a surrogate at ratio w).
at::Tensor surrogate_ref(const at::Tensor& w, const at::Tensor& A, double el, double eh, std::optional<double> dual,
                         std::optional<double> delta) {
  const at::Tensor wu = delta ? w.clamp_max(*delta) : w;
  at::Tensor L = -at::minimum(wu * A, w.clamp(1 - el, 1 + eh) * A);
  if (dual) L = at::where(A < 0, at::minimum(L, -*dual * A), L);
  return L;
}

// Unfused oracle, ALGORITHMS.md §4b: per-token loss at either level.
at::Tensor scs_ref(const at::Tensor& lp, const at::Tensor& old, const at::Tensor& adv, const at::Tensor& mask,
                   const std::string& level, double el = 0.2, double eh = 0.2,
                   std::optional<double> dual = std::nullopt, std::optional<double> delta = std::nullopt) {
  const at::Tensor zero = at::zeros_like(lp);
  const at::Tensor x = at::where(mask, (lp - old).clamp(-20, 20), zero);
  const at::Tensor n = mask.sum(1).to(lp.scalar_type());
  const at::Tensor log_s = x.sum(1) / n.clamp_min(1);  // NOT detached
  at::Tensor L;
  if (level == "sequence") {
    L = surrogate_ref(log_s.exp(), adv, el, eh, dual, delta).unsqueeze(1).expand_as(lp);
  } else {
    const at::Tensor log_w = log_s.detach().unsqueeze(1) + lp - lp.detach();
    const at::Tensor A = adv.dim() == 1 ? adv.unsqueeze(1).expand_as(lp) : adv;
    L = surrogate_ref(log_w.exp(), A, el, eh, dual, delta);
  }
  return at::where(mask, L, zero);
}

// seq_mean_token_mean of a per-token loss (rows with no valid token excluded).
at::Tensor seq_mean_token_mean(const at::Tensor& L, const at::Tensor& mask) {
  const at::Tensor n = mask.sum(1).to(L.scalar_type());
  const at::Tensor valid = n > 0;
  const at::Tensor per_seq = at::where(mask, L, at::zeros_like(L)).sum(1) / n.clamp_min(1);
  return at::where(valid, per_seq, at::zeros_like(per_seq)).sum() / valid.sum().clamp_min(1);
}

double val(const at::Tensor& t) { return t.item<double>(); }

}  // namespace

LLMRL_TEST(sequence_clipped_surrogate_schema_registered) {
  for (const char* name : {"llmrl::sequence_clipped_surrogate", "llmrl::sequence_clipped_surrogate_forward",
                           "llmrl::sequence_clipped_surrogate_backward"}) {
    auto h = c10::Dispatcher::singleton().findSchema({name, ""});
    CHECK_TRUE(h.has_value());
    CHECK_TRUE(h->hasKernelForDispatchKey(c10::DispatchKey::CPU));
  }
  auto h = c10::Dispatcher::singleton().findSchema({"llmrl::sequence_clipped_surrogate", ""});
  CHECK_TRUE(h->hasKernelForDispatchKey(c10::DispatchKey::AutogradCPU) ||
             h->hasKernelForDispatchKey(c10::DispatchKey::Autograd));
}

LLMRL_TEST(sequence_clipped_surrogate_values_grads_metrics_vs_float64_oracle) {
  at::manual_seed(0);
  struct Opt { double el, eh; std::optional<double> dual, delta; };
  const Opt opts[] = {{0.2, 0.2, std::nullopt, std::nullopt}, {0.03, 0.04, std::nullopt, std::nullopt},
                      {0.02, 0.05, 3.0, 1.05}};
  for (const Opt& o : opts) {
    for (const char* level : {"sequence", "sequence_token"}) {
      for (bool per_token : {false, true}) {
        if (per_token && std::string(level) == "sequence") continue;
        const int64_t B = 24, T = 23;
        at::Tensor lp0 = at::randn({B, T}, at::kDouble) - 2;
        at::Tensor old = lp0 + 0.25 * at::randn({B, T}, at::kDouble);
        at::Tensor adv = per_token ? at::randn({B, T}, at::kDouble) : at::randn({B}, at::kDouble);
        if (!per_token) adv.slice(0, 0, 2).copy_(at::tensor({0.7, -0.9}, at::kDouble));  // both signs present
        at::Tensor mask = at::rand({B, T}) > 0.25;
        mask[3].fill_(false);  // a fully masked row
        at::Tensor a = lp0.clone().requires_grad_(), b = lp0.clone().requires_grad_();
        auto [loss, cf, cfl, cfh, kl] = scs(a, old, adv, mask, level, o.el, o.eh, o.dual, o.delta);
        at::Tensor want = scs_ref(b, old, adv, mask, level, o.el, o.eh, o.dual, o.delta);
        CHECK_CLOSE(loss, want, 1e-12, 1e-12);
        at::Tensor wgt = at::randn({B, T}, at::kDouble);
        (loss * wgt).sum().backward();
        (want * wgt).sum().backward();
        CHECK_CLOSE(a.grad(), b.grad(), 1e-12, 1e-12);
        // Metrics: sequence means over valid rows at 'sequence', token means at 'sequence_token'.
        const at::Tensor n = mask.sum(1).to(at::kDouble);
        const at::Tensor s = (at::where(mask, (lp0 - old).clamp(-20, 20), at::zeros_like(lp0)).sum(1) /
                              n.clamp_min(1)).exp();
        const at::Tensor sqd = at::where(mask, (lp0 - old).square(), at::zeros_like(lp0));
        std::vector<double> want_m;
        if (std::string(level) == "sequence") {
          const at::Tensor valid = n > 0;
          const double S = valid.sum().item<double>();
          const double low = ((s < 1 - o.el) & (adv < 0) & valid).sum().item<double>() / S;
          const double high = ((s > 1 + o.eh) & (adv > 0) & valid).sum().item<double>() / S;
          const double k = at::where(valid, sqd.sum(1) / n.clamp_min(1), at::zeros_like(n)).sum().item<double>();
          want_m = {low + high, low, high, 0.5 * k / S};
        } else {
          const at::Tensor sw = s.unsqueeze(1).expand({B, T});
          const at::Tensor A = per_token ? adv : adv.unsqueeze(1).expand({B, T});
          const double N = mask.sum().item<double>();
          const double low = ((sw < 1 - o.el) & (A < 0) & mask).sum().item<double>() / N;
          const double high = ((sw > 1 + o.eh) & (A > 0) & mask).sum().item<double>() / N;
          want_m = {low + high, low, high, 0.5 * sqd.sum().item<double>() / N};
        }
        if (o.el < 0.1) CHECK_TRUE(want_m[1] > 0 && want_m[2] > 0);  // tight ε: both clips exercised
        CHECK_CLOSE(at::stack({cf, cfl, cfh, kl}), at::tensor(want_m, at::kDouble), 1e-12, 1e-12);
      }
    }
  }
}

LLMRL_TEST(sequence_vs_sequence_token_values_and_gradients) {
  at::manual_seed(1);
  const int64_t B = 8, T = 19;
  at::Tensor lp0 = at::randn({B, T}, at::kDouble) - 2, old = lp0 + 0.1 * at::randn({B, T}, at::kDouble);
  at::Tensor adv = at::randn({B}, at::kDouble), mask = at::rand({B, T}) > 0.3;
  mask[5].fill_(false);
  at::Tensor a = lp0.clone().requires_grad_(), b = lp0.clone().requires_grad_();
  at::Tensor ls = std::get<0>(scs(a, old, adv, mask, "sequence", 0.03, 0.04));
  at::Tensor lt = std::get<0>(scs(b, old, adv, mask, "sequence_token", 0.03, 0.04));
  CHECK_CLOSE(ls, lt, 0, 0);  // same value s_b at every valid token
  // seq_mean_token_mean (the paper's mean over sequences): equal gradients.
  seq_mean_token_mean(ls, mask).backward({}, /*retain_graph=*/true);
  seq_mean_token_mean(lt, mask).backward({}, /*retain_graph=*/true);
  CHECK_CLOSE(a.grad(), b.grad(), 1e-15, 1e-12);
  CHECK_TRUE(a.grad().abs().sum().item<double>() > 0);
  // Non-uniform token weights: 'sequence' spreads Σ_t w_t·L'_b/n_b evenly over the row's tokens,
  // 'sequence_token' gives token t exactly w_t·L'_b.
  at::Tensor wgt = at::rand({B, T}, at::kDouble);
  a.grad().zero_();
  b.grad().zero_();
  (ls * wgt).sum().backward();
  (lt * wgt).sum().backward();
  const at::Tensor n = mask.sum(1, true).to(at::kDouble).clamp_min(1);
  const at::Tensor dprime = at::where(mask, b.grad() / wgt, at::zeros_like(wgt));  // L'_b per valid token
  const at::Tensor want_seq = at::where(mask, (at::where(mask, wgt, at::zeros_like(wgt)).sum(1, true) / n) *
                                                  dprime, at::zeros_like(wgt));
  CHECK_CLOSE(a.grad(), want_seq, 1e-15, 1e-12);
  CHECK_TRUE((a.grad() - b.grad()).abs().max().item<double>() > 1e-6);  // they do differ
}

LLMRL_TEST(sequence_clipped_surrogate_gspo_closed_form) {
  // One row, ℓ − ℓ_old = [ln 2, 0] → log s = ln2/2, s = √2. ε = 0.2.
  at::Tensor old = at::zeros({1, 2}, at::kDouble), mask = at::ones({1, 2}, at::kBool);
  auto run = [&](double a) {
    at::Tensor lp = at::tensor({std::log(2.0), 0.0}, at::kDouble).reshape({1, 2}).requires_grad_();
    auto out = scs(lp, old, at::full({1}, a, at::kDouble), mask, "sequence");
    std::get<0>(out).sum().backward();  // each of the 2 tokens carries L_b
    return std::make_tuple(std::get<0>(out), lp.grad(), out);
  };
  {  // A = 1: clipped at 1.2, L = −1.2, gradient 0, one high clip.
    auto [loss, grad, out] = run(1.0);
    CHECK_CLOSE(loss, at::full({1, 2}, -1.2, at::kDouble), 1e-12, 0);
    CHECK_TRUE((grad == 0).all().item<bool>());
    CHECK_TRUE(val(std::get<3>(out)) == 1 && val(std::get<2>(out)) == 0);
  }
  {  // A = −1: L = −min(−√2, −1.2) = √2; ∂(2·L)/∂ℓ_t = 2 · s · (1/2) = √2 per token.
    auto [loss, grad, out] = run(-1.0);
    CHECK_CLOSE(loss, at::full({1, 2}, std::sqrt(2.0), at::kDouble), 1e-12, 0);
    CHECK_CLOSE(grad, at::full({1, 2}, std::sqrt(2.0), at::kDouble), 1e-12, 0);
    CHECK_TRUE(val(std::get<1>(out)) == 0);
    CHECK_TRUE(std::abs(val(std::get<4>(out)) - 0.5 * (std::log(2.0) * std::log(2.0) / 2)) < 1e-12);
  }
}

LLMRL_TEST(sequence_clipped_surrogate_finite_differences) {
  at::manual_seed(2);
  at::Tensor lp = at::randn({3, 5}, at::kDouble), old = lp + 0.2 * at::randn({3, 5}, at::kDouble);
  at::Tensor mask = at::rand({3, 5}) > 0.2, wgt = at::randn({3, 5}, at::kDouble);
  for (const char* level : {"sequence", "sequence_token"}) {
    at::Tensor adv = at::randn({3}, at::kDouble);
    // sequence_token has a stop-gradient inside: its FD derivative is not the op's gradient; check
    // 'sequence' by FD and 'sequence_token' through the oracle above.
    if (std::string(level) == "sequence_token") continue;
    auto f = [&](const at::Tensor& x) { return (std::get<0>(scs(x, old, adv, mask, level, 0.1, 0.15)) * wgt).sum(); };
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
}

LLMRL_TEST(sequence_clipped_surrogate_masked_garbage_and_all_masked) {
  at::Tensor lp = at::tensor({-1.0f, NAN, INFINITY, -1.0f, -2.0f, NAN}, at::kFloat).reshape({2, 3});
  at::Tensor old = at::tensor({-1.2f, 1.0f, NAN, -INFINITY, -2.5f, 0.0f}, at::kFloat).reshape({2, 3});
  at::Tensor mask = at::tensor({1, 0, 0, 0, 1, 0}).to(at::kBool).reshape({2, 3});
  for (const char* level : {"sequence", "sequence_token"}) {
    at::Tensor adv = std::string(level) == "sequence" ? at::tensor({1.0f, -1.0f})
                                                      : at::tensor({1.0f, NAN, NAN, NAN, -1.0f, INFINITY}).reshape({2, 3});
    at::Tensor x = lp.clone().requires_grad_();
    auto [loss, cf, cfl, cfh, kl] = scs(x, old, adv, mask, level);
    loss.backward(at::where(mask, at::ones({2, 3}), at::full({2, 3}, NAN)));
    CHECK_TRUE(at::isfinite(loss).all().item<bool>() && at::isfinite(x.grad()).all().item<bool>());
    CHECK_TRUE(at::isfinite(at::stack({cf, cfl, cfh, kl})).all().item<bool>());
    CHECK_TRUE((at::where(mask, at::zeros({2, 3}), loss) == 0).all().item<bool>());
    CHECK_TRUE((at::where(mask, at::zeros({2, 3}), x.grad()) == 0).all().item<bool>());
    at::Tensor y = lp.clone().requires_grad_();
    auto [l2, f2, f2l, f2h, k2] = scs(y, old, adv, at::zeros({2, 3}, at::kBool), level);
    l2.sum().backward();
    CHECK_TRUE((l2 == 0).all().item<bool>() && (y.grad() == 0).all().item<bool>());
    CHECK_TRUE(val(f2) == 0 && val(k2) == 0);
  }
}

LLMRL_TEST(sequence_clipped_surrogate_low_precision_dtypes) {
  at::manual_seed(3);
  at::Tensor lp = at::randn({6, 29}, at::kDouble) - 2, old = lp + 0.1 * at::randn({6, 29}, at::kDouble);
  at::Tensor adv = at::randn({6}, at::kDouble), mask = at::rand({6, 29}) > 0.3;
  for (const char* level : {"sequence", "sequence_token"}) {
    for (auto dt : {at::kFloat, at::kBFloat16, at::kHalf}) {
      at::Tensor l = lp.to(dt), o = old.to(dt);
      at::Tensor ld = l.to(at::kDouble).requires_grad_();
      at::Tensor want = scs_ref(ld, o.to(at::kDouble), adv, mask, level);
      want.sum().backward();
      at::Tensor x = l.clone().requires_grad_();
      auto [loss, cf, cfl, cfh, kl] = scs(x, o, adv.to(at::kFloat), mask, level);
      loss.sum().backward();
      CHECK_TRUE(loss.scalar_type() == dt && x.grad().scalar_type() == dt && kl.scalar_type() == at::kFloat);
      const double tol = dt == at::kFloat ? 1e-5 : 2e-2;
      CHECK_CLOSE(loss, want, tol, tol);
      CHECK_CLOSE(x.grad(), ld.grad(), tol, tol);
    }
  }
}

LLMRL_TEST(sequence_clipped_surrogate_argument_errors) {
  at::Tensor a = at::zeros({2, 3}), m = at::ones({2, 3}, at::kBool);
  auto throws = [](const std::function<void()>& f, const std::string& what) {
    try { f(); } catch (const c10::Error& e) { return std::string(e.what()).find(what) != std::string::npos; }
    return false;
  };
  CHECK_TRUE(throws([&] { scs(a, a, at::zeros({2, 3}), m, "sequence"); },
                    "'advantages' must have shape [B] = [2] at level 'sequence'"));
  CHECK_TRUE(throws([&] { scs(a, a, at::zeros({2}), m, "token"); }, "'level' must be 'sequence' or 'sequence_token'"));
  CHECK_TRUE(throws([&] { scs(a, at::zeros({2, 2}), at::zeros({2}), m, "sequence"); },
                    "sequence_clipped_surrogate: 'old_logprobs' must have the shape"));
  // per-token advantages are fine at 'sequence_token'
  CHECK_TRUE(std::get<0>(scs(a, a, at::zeros({2, 3}), m, "sequence_token")).sizes() == a.sizes());
}
