// linear_token_logprobs native tests: schemas registered, values and gradients (hidden, weight, bias;
// through logprobs and entropy) vs an eager float64 composition (matmul + log_softmax + gather), τ ≠ 1,
// chunk sizes that do and do not divide N, finite differences, −inf logits, half dtypes, argument errors.
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>

#include <functional>

#include "test_util.h"

namespace {

using Opt = std::optional<at::Tensor>;

std::tuple<at::Tensor, at::Tensor> ltl(const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& targets,
                                       const Opt& bias, double tau, int64_t chunk, bool with_entropy) {
  static auto op = c10::Dispatcher::singleton().findSchemaOrThrow("llmrl::linear_token_logprobs", "")
      .typed<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, const at::Tensor&, const Opt&,
                                                double, int64_t, bool)>();
  return op.call(hidden, weight, targets, bias, tau, chunk, with_entropy);
}

// Unfused oracle, ALGORITHMS.md §1 on logits = hidden·Wᵀ (+bias): logp and entropy.
std::tuple<at::Tensor, at::Tensor> ltl_ref(const at::Tensor& hidden, const at::Tensor& weight,
                                           const at::Tensor& targets, const Opt& bias, double tau) {
  at::Tensor z = at::matmul(hidden, weight.t());
  if (bias) z = z + *bias;
  z = z / tau;
  at::Tensor lsm = at::log_softmax(z, -1);
  at::Tensor logp = lsm.gather(-1, targets.unsqueeze(-1)).squeeze(-1);
  at::Tensor p = lsm.exp();
  at::Tensor ent = -at::where(p > 0, p * lsm, at::zeros_like(p)).sum(-1);
  return {logp, ent};
}

struct Grads {
  at::Tensor lp, ent, gh, gw, gb;
};

// Values and grads of Σ(w1·logp + w2·H) with respect to hidden, weight and bias.
Grads run(bool fused, const at::Tensor& h0, const at::Tensor& w0, const at::Tensor& t, const Opt& b0, double tau,
          int64_t chunk, const at::Tensor& w1, const at::Tensor& w2) {
  at::Tensor h = h0.clone().requires_grad_(), w = w0.clone().requires_grad_();
  Opt b = b0 ? Opt(b0->clone().requires_grad_()) : std::nullopt;
  auto [lp, ent] = fused ? ltl(h, w, t, b, tau, chunk, true) : ltl_ref(h, w, t, b, tau);
  ((lp * w1).sum() + (ent * w2).sum()).backward();
  return {lp.detach(), ent.detach(), h.grad(), w.grad(), b ? b->grad() : at::Tensor()};
}

void check_grads(const Grads& got, const Grads& want, double atol, double rtol) {
  CHECK_CLOSE(got.lp, want.lp, atol, rtol);
  CHECK_CLOSE(got.ent, want.ent, atol, rtol);
  CHECK_CLOSE(got.gh, want.gh, atol, rtol);
  CHECK_CLOSE(got.gw, want.gw, atol, rtol);
  if (want.gb.defined()) CHECK_CLOSE(got.gb, want.gb, atol, rtol);
}

std::string error_of(const std::function<void()>& fn) {
  try { fn(); } catch (const c10::Error& e) { return e.what(); }
  return "";
}

}  // namespace

LLMRL_TEST(linear_token_logprobs_schema_registered) {
  for (const char* name : {"llmrl::linear_token_logprobs", "llmrl::linear_token_logprobs_forward",
                           "llmrl::linear_token_logprobs_backward"}) {
    auto h = c10::Dispatcher::singleton().findSchema({name, ""});
    CHECK_TRUE(h.has_value());
    CHECK_TRUE(h->hasKernelForDispatchKey(c10::DispatchKey::CPU));
  }
  auto h = c10::Dispatcher::singleton().findSchema({"llmrl::linear_token_logprobs", ""});
  CHECK_TRUE(h->hasKernelForDispatchKey(c10::DispatchKey::AutogradCPU) ||
             h->hasKernelForDispatchKey(c10::DispatchKey::Autograd));
}

LLMRL_TEST(linear_token_logprobs_float64_values_and_grads_vs_oracle) {
  at::manual_seed(0);
  const int64_t n = 13, hd = 6, v = 29;
  at::Tensor h = at::randn({n, hd}, at::kDouble), w = at::randn({v, hd}, at::kDouble), b = at::randn({v}, at::kDouble);
  at::Tensor t = at::randint(0, v, {n}, at::kLong);
  at::Tensor w1 = at::randn({n}, at::kDouble), w2 = at::randn({n}, at::kDouble);
  for (bool with_bias : {false, true}) {
    for (double tau : {1.0, 0.7, 1.9}) {
      const Opt bias = with_bias ? Opt(b) : std::nullopt;
      Grads want = run(false, h, w, t, bias, tau, 0, w1, w2);
      for (int64_t chunk : {0, 1, 3, 4, 5, 13, 40}) {  // 3, 4, 5 do not divide 13
        check_grads(run(true, h, w, t, bias, tau, chunk, w1, w2), want, 1e-11, 1e-11);
      }
    }
  }
}

LLMRL_TEST(linear_token_logprobs_float32_vs_float64_oracle_and_chunk_invariance) {
  at::manual_seed(1);
  const int64_t n = 37, hd = 16, v = 203;
  at::Tensor h = at::randn({n, hd}, at::kDouble), w = at::randn({v, hd}, at::kDouble) * 0.5;
  at::Tensor b = at::randn({v}, at::kDouble), t = at::randint(0, v, {n}, at::kLong);
  at::Tensor w1 = at::randn({n}, at::kDouble), w2 = at::randn({n}, at::kDouble);
  Grads want = run(false, h, w, t, b, 0.8, 0, w1, w2);
  const auto f = [](const at::Tensor& x) { return x.to(at::kFloat); };
  Grads first;
  for (int64_t chunk : {0, 1, 5, 8, 36, 37}) {
    Grads got = run(true, f(h), f(w), t, f(b), 0.8, chunk, f(w1), f(w2));
    check_grads(got, want, 1e-5, 1e-6);
    if (!first.lp.defined()) first = got;
    else check_grads(got, first, 1e-6, 1e-6);  // chunking changes results only at fp rounding level
  }
}

LLMRL_TEST(linear_token_logprobs_finite_differences) {
  at::manual_seed(2);
  at::Tensor h = at::randn({3, 4}, at::kDouble), w = at::randn({5, 4}, at::kDouble), b = at::randn({5}, at::kDouble);
  at::Tensor t = at::tensor({4, 0, 2}, at::kLong);
  at::Tensor w1 = at::randn({3}, at::kDouble), w2 = at::randn({3}, at::kDouble);
  const double tau = 0.6;
  auto loss = [&](const at::Tensor& hh, const at::Tensor& ww, const at::Tensor& bb) {
    auto [lp, ent] = ltl(hh, ww, t, bb, tau, 2, true);
    return ((lp * w1).sum() + (ent * w2).sum()).item<double>();
  };
  Grads g = run(true, h, w, t, b, tau, 2, w1, w2);
  const double eps = 1e-6;
  for (int which = 0; which < 3; ++which) {
    at::Tensor base = which == 0 ? h : which == 1 ? w : b;
    at::Tensor fd = at::empty_like(base);
    for (int64_t i = 0; i < base.numel(); ++i) {
      at::Tensor p = base.clone(), m = base.clone();
      p.view(-1)[i] += eps;
      m.view(-1)[i] -= eps;
      const double lp = which == 0 ? loss(p, w, b) : which == 1 ? loss(h, p, b) : loss(h, w, p);
      const double lm = which == 0 ? loss(m, w, b) : which == 1 ? loss(h, m, b) : loss(h, w, m);
      fd.view(-1)[i] = (lp - lm) / (2 * eps);
    }
    CHECK_CLOSE(which == 0 ? g.gh : which == 1 ? g.gw : g.gb, fd, 1e-7, 1e-6);
  }
}

LLMRL_TEST(linear_token_logprobs_single_output_gradients_and_leading_dims) {
  at::manual_seed(3);
  at::Tensor h = at::randn({2, 5, 8}, at::kDouble), w = at::randn({11, 8}, at::kDouble);
  at::Tensor t = at::randint(0, 11, {2, 5}, at::kLong);
  // Only logprobs used (entropy not requested), then only entropy used: the unused output gets no grad.
  for (int use : {0, 1}) {
    at::Tensor a = h.clone().requires_grad_(), wa = w.clone().requires_grad_();
    at::Tensor c = h.clone().requires_grad_(), wc = w.clone().requires_grad_();
    auto [lp, ent] = ltl(a, wa, t, std::nullopt, 1.3, 3, use == 1);
    auto [rlp, rent] = ltl_ref(c, wc, t, std::nullopt, 1.3);
    CHECK_TRUE(lp.sizes() == t.sizes());
    CHECK_TRUE(use == 1 ? ent.defined() && ent.sizes() == t.sizes() : !ent.defined());
    (use == 0 ? lp.sum() : ent.sum()).backward();
    (use == 0 ? rlp.sum() : rent.sum()).backward();
    CHECK_CLOSE(a.grad(), c.grad(), 1e-11, 1e-11);
    CHECK_CLOSE(wa.grad(), wc.grad(), 1e-11, 1e-11);
  }
  // Frozen weight (no grad needed) and frozen hidden.
  at::Tensor a = h.clone().requires_grad_();
  std::get<0>(ltl(a, w, t, std::nullopt, 1.0, 0, false)).sum().backward();
  at::Tensor c = h.clone().requires_grad_();
  std::get<0>(ltl_ref(c, w, t, std::nullopt, 1.0)).sum().backward();
  CHECK_CLOSE(a.grad(), c.grad(), 1e-11, 1e-11);
  at::Tensor wa = w.clone().requires_grad_(), wc = w.clone().requires_grad_();
  std::get<0>(ltl(h, wa, t, std::nullopt, 1.0, 4, false)).sum().backward();
  std::get<0>(ltl_ref(h, wc, t, std::nullopt, 1.0)).sum().backward();
  CHECK_CLOSE(wa.grad(), wc.grad(), 1e-11, 1e-11);
}

LLMRL_TEST(linear_token_logprobs_neg_inf_logits_stay_finite) {
  at::manual_seed(4);
  const int64_t n = 6, v = 40;
  at::Tensor h = at::randn({n, 8}), w = at::randn({v, 8}), b = at::zeros({v});
  b.slice(0, 20, v).fill_(-INFINITY);  // masked half of the vocabulary
  at::Tensor t = at::randint(0, 20, {n}, at::kLong);
  at::Tensor hh = h.clone().requires_grad_(), ww = w.clone().requires_grad_(), bb = b.clone().requires_grad_();
  auto [lp, ent] = ltl(hh, ww, t, bb, 0.9, 4, true);
  (lp.sum() + ent.sum()).backward();
  for (const at::Tensor& x : {lp, ent, hh.grad(), ww.grad(), bb.grad()}) CHECK_TRUE(at::isfinite(x).all().item<bool>());
  CHECK_TRUE((lp <= 0).all().item<bool>() && (ent >= 0).all().item<bool>());
  // Same as the oracle on the unmasked vocabulary.
  at::Tensor wk = w.slice(0, 0, 20).to(at::kDouble);
  auto [rlp, rent] = ltl_ref(h.to(at::kDouble), wk, t, std::nullopt, 0.9);
  CHECK_CLOSE(lp, rlp, 1e-5, 1e-5);
  CHECK_CLOSE(ent, rent, 1e-5, 1e-5);
  CHECK_TRUE(ww.grad().slice(0, 20, v).abs().max().item<float>() == 0.f);
}

LLMRL_TEST(linear_token_logprobs_half_dtypes) {
  at::manual_seed(5);
  const int64_t n = 24, hd = 32, v = 300;
  at::Tensor h = at::randn({n, hd}, at::kDouble) * 0.5, w = at::randn({v, hd}, at::kDouble) * 0.5;
  at::Tensor b = at::randn({v}, at::kDouble) * 0.1, t = at::randint(0, v, {n}, at::kLong);
  at::Tensor w1 = at::randn({n}, at::kDouble), w2 = at::randn({n}, at::kDouble);
  for (auto dt : {at::kBFloat16, at::kHalf}) {
    const auto r = [&](const at::Tensor& x) { return x.to(dt); };
    const auto d = [&](const at::Tensor& x) { return x.to(dt).to(at::kDouble); };
    // Oracle on the same rounded inputs, in float64.
    Grads want = run(false, d(h), d(w), t, d(b), 0.9, 0, w1, w2);
    for (int64_t chunk : {0, 7}) {  // one chunk, and several (grad_W accumulated in fp32)
      Grads got = run(true, r(h), r(w), t, r(b), 0.9, chunk, r(w1), r(w2));
      CHECK_TRUE(got.lp.scalar_type() == dt && got.gw.scalar_type() == dt);
      // Outputs and logits are rounded to the dtype (2^-8 relative for bf16, 2^-11 for f16); measured max
      // errors are ~0.6% (bf16) and ~0.08% (f16) of each tensor's largest entry.
      check_grads(got, want, 0, dt == at::kBFloat16 ? 1.5e-2 : 2e-3);
    }
  }
}

LLMRL_TEST(linear_token_logprobs_argument_errors) {
  at::Tensor h = at::randn({4, 3}), w = at::randn({7, 3});
  at::Tensor t = at::tensor({0, 1, 2, 6}, at::kLong);
  auto has = [](const std::string& s, const char* what) { return s.find(what) != std::string::npos; };
  CHECK_TRUE(has(error_of([&] { ltl(h, w, at::tensor({0, 1, 7, 2}, at::kLong), std::nullopt, 1, 0, false); }),
                 "'targets' must be in [0, V) = [0, 7), got a target of 7"));
  CHECK_TRUE(has(error_of([&] { ltl(h, w, at::tensor({0, -1, 3, 2}, at::kLong), std::nullopt, 1, 0, false); }),
                 "got a target of -1"));
  CHECK_TRUE(has(error_of([&] { ltl(h, at::randn({7, 4}), t, std::nullopt, 1, 0, false); }),
                 "'weight' must have shape [V, H] = [V, 3]"));
  CHECK_TRUE(has(error_of([&] { ltl(h, w, t, at::randn({6}), 1, 0, false); }), "'bias' must have shape [V] = [7]"));
  CHECK_TRUE(has(error_of([&] { ltl(h, w, at::tensor({0, 1}, at::kLong), std::nullopt, 1, 0, false); }),
                 "'targets' must have shape [4]"));
  CHECK_TRUE(has(error_of([&] { ltl(h, w, t.to(at::kFloat), std::nullopt, 1, 0, false); }),
                 "'targets' must be int64"));
  CHECK_TRUE(has(error_of([&] { ltl(h, w.to(at::kDouble), t, std::nullopt, 1, 0, false); }),
                 "'weight' must have dtype Float"));
  CHECK_TRUE(has(error_of([&] { ltl(h, w, t, std::nullopt, 0.0, 0, false); }), "'temperature' must be"));
  CHECK_TRUE(has(error_of([&] { ltl(h, w, t, std::nullopt, 1.0, -2, false); }), "'chunk_size' must be"));
  // int32 targets are accepted; an empty batch gives empty outputs and zero weight grads.
  CHECK_CLOSE(std::get<0>(ltl(h, w, t.to(at::kInt), std::nullopt, 1, 0, false)),
              std::get<0>(ltl(h, w, t, std::nullopt, 1, 0, false)), 0, 0);
  at::Tensor we = w.clone().requires_grad_();
  auto [lp, ent] = ltl(at::randn({0, 3}), we, at::zeros({0}, at::kLong), std::nullopt, 1, 0, true);
  CHECK_TRUE(lp.numel() == 0 && ent.numel() == 0);
  (lp.sum() + ent.sum()).backward();
  CHECK_TRUE(!we.grad().defined() || we.grad().abs().max().item<float>() == 0.f);
}

LLMRL_TEST(linear_token_logprobs_no_autograd_path_matches) {
  at::manual_seed(6);
  at::Tensor h = at::randn({9, 5}), w = at::randn({17, 5}), b = at::randn({17});
  at::Tensor t = at::randint(0, 17, {9}, at::kLong);
  auto [lp, ent] = ltl(h, w, t, b, 1.1, 2, true);
  at::AutoDispatchBelowADInplaceOrView below;  // straight to the CPU kernel
  auto [lp2, ent2] = ltl(h, w, t, b, 1.1, 4, true);
  CHECK_CLOSE(lp, lp2, 1e-6, 1e-6);
  CHECK_CLOSE(ent, ent2, 1e-6, 1e-6);
}
