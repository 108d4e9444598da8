// gae native tests (ALGORITHMS.md §3a): schema registered, the λ=0 and λ=γ=1 closed forms, a float64
// per-row reverse-loop oracle with masked gaps, gaps ≡ compacted rows, all-masked rows, masked NaN
// garbage, every dtype, no-grad outputs, argument errors; CUDA vs CPU where a GPU is present.
#include <ATen/core/dispatch/Dispatcher.h>

#include <functional>
#include <iostream>
#include <vector>

#include "test_util.h"

namespace {

std::tuple<at::Tensor, at::Tensor> gae(const at::Tensor& r, const at::Tensor& v, const at::Tensor& m,
                                       double gamma = 1.0, double lam = 0.95) {
  static auto op = c10::Dispatcher::singleton().findSchemaOrThrow("llmrl::gae", "")
      .typed<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                                double, double)>();
  return op.call(r, v, m, gamma, lam);
}

// Oracle: per row, list the valid positions, then run the textbook recursion over that list backwards.
std::tuple<at::Tensor, at::Tensor> gae_ref(const at::Tensor& r, const at::Tensor& v, const at::Tensor& m,
                                           double gamma, double lam) {
  at::Tensor rd = r.to(at::kDouble).contiguous(), vd = v.to(at::kDouble).contiguous();
  at::Tensor md = m.to(at::kBool).contiguous();
  at::Tensor adv = at::zeros_like(rd), ret = at::zeros_like(rd);
  auto R = rd.accessor<double, 2>(), V = vd.accessor<double, 2>();
  auto M = md.accessor<bool, 2>();
  auto A = adv.accessor<double, 2>(), Rt = ret.accessor<double, 2>();
  for (int64_t b = 0; b < rd.size(0); ++b) {
    std::vector<int64_t> idx;
    for (int64_t t = 0; t < rd.size(1); ++t)
      if (M[b][t]) idx.push_back(t);
    double a_next = 0;
    for (int64_t k = int64_t(idx.size()) - 1; k >= 0; --k) {
      const int64_t t = idx[k];
      const double v_next = k + 1 < int64_t(idx.size()) ? V[b][idx[k + 1]] : 0.0;
      const double delta = R[b][t] + gamma * v_next - V[b][t];
      A[b][t] = delta + gamma * lam * a_next;
      Rt[b][t] = A[b][t] + V[b][t];
      a_next = A[b][t];
    }
  }
  return {adv, ret};
}

bool throws_with(const std::function<void()>& f, const std::string& text) {
  try { f(); } catch (const c10::Error& e) { return std::string(e.what()).find(text) != std::string::npos; }
  return false;
}

}  // namespace

LLMRL_TEST(gae_schema_registered) {
  auto h = c10::Dispatcher::singleton().findSchema({"llmrl::gae", ""});
  CHECK_TRUE(h.has_value());
  CHECK_TRUE(h->hasKernelForDispatchKey(c10::DispatchKey::CPU));
  CHECK_TRUE(h->hasKernelForDispatchKey(c10::DispatchKey::AutogradCPU) ||
             h->hasKernelForDispatchKey(c10::DispatchKey::Autograd));
}

LLMRL_TEST(gae_lambda0_closed_form) {
  // ALGORITHMS.md §3a: λ=0, r=[0,0,5], V=[1,2,3], γ=1 → A=[1,1,2]; returns = A + V.
  at::Tensor r = at::tensor({0.0, 0.0, 5.0}, at::kDouble).view({1, 3});
  at::Tensor v = at::tensor({1.0, 2.0, 3.0}, at::kDouble).view({1, 3});
  auto [a, ret] = gae(r, v, at::ones({1, 3}, at::kBool), 1.0, 0.0);
  CHECK_CLOSE(a, at::tensor({1.0, 1.0, 2.0}, at::kDouble).view({1, 3}), 0, 0);
  CHECK_CLOSE(ret, at::tensor({2.0, 3.0, 5.0}, at::kDouble).view({1, 3}), 0, 0);
}

LLMRL_TEST(gae_lambda1_gamma1_is_reward_to_go) {
  // With γ = λ = 1 the values telescope: returns_t = Σ_{k ≥ t, valid} r_k, A_t = returns_t − V_t.
  at::manual_seed(3);
  at::Tensor r = at::randn({4, 19}, at::kDouble), v = at::randn({4, 19}, at::kDouble);
  at::Tensor m = at::rand({4, 19}) > 0.25;
  at::Tensor rm = at::where(m, r, at::zeros_like(r));
  at::Tensor togo = rm.flip({1}).cumsum(1).flip({1});
  auto [a, ret] = gae(r, v, m, 1.0, 1.0);
  CHECK_CLOSE(ret, at::where(m, togo, at::zeros_like(r)), 1e-12, 1e-12);
  CHECK_CLOSE(a, at::where(m, togo - v, at::zeros_like(r)), 1e-12, 1e-12);
}

LLMRL_TEST(gae_vs_float64_oracle_with_gaps) {
  at::manual_seed(0);
  for (auto [gamma, lam] : std::vector<std::pair<double, double>>{{1.0, 0.95}, {0.99, 0.9}, {0.5, 1.0}, {1.0, 0.0}}) {
    at::Tensor r = at::randn({7, 53}, at::kDouble), v = at::randn({7, 53}, at::kDouble);
    at::Tensor m = at::rand({7, 53}) > 0.3;  // random gaps inside rows
    m[2].fill_(false);                       // one all-masked row
    auto [a, ret] = gae(r, v, m, gamma, lam);
    auto [ea, eret] = gae_ref(r, v, m, gamma, lam);
    CHECK_CLOSE(a, ea, 1e-12, 1e-12);
    CHECK_CLOSE(ret, eret, 1e-12, 1e-12);
    CHECK_TRUE(a[2].abs().max().item<double>() == 0 && ret[2].abs().max().item<double>() == 0);
  }
}

LLMRL_TEST(gae_gap_equals_compacted_row) {
  // A masked gap is skipped: the row with gaps equals the same valid tokens packed together.
  at::Tensor r = at::tensor({1.0, 9.0, 2.0, 9.0, 9.0, 3.0, 9.0}, at::kDouble).view({1, 7});
  at::Tensor v = at::tensor({0.5, 7.0, 0.25, 7.0, 7.0, 1.5, 7.0}, at::kDouble).view({1, 7});
  at::Tensor m = at::tensor({1, 0, 1, 0, 0, 1, 0}).to(at::kBool).view({1, 7});
  at::Tensor idx = at::tensor({0, 2, 5}, at::kLong);
  auto [a, ret] = gae(r, v, m, 0.9, 0.8);
  auto [ca, cret] = gae(r.index_select(1, idx), v.index_select(1, idx), at::ones({1, 3}, at::kBool), 0.9, 0.8);
  CHECK_CLOSE(a.index_select(1, idx), ca, 1e-15, 0);
  CHECK_CLOSE(ret.index_select(1, idx), cret, 1e-15, 0);
  CHECK_TRUE(a.masked_select(~m).abs().max().item<double>() == 0);
}

LLMRL_TEST(gae_masked_garbage_stays_out) {
  at::Tensor r = at::tensor({1.0f, NAN, INFINITY, 2.0f}).view({1, 4});
  at::Tensor v = at::tensor({0.5f, INFINITY, NAN, 1.0f}).view({1, 4});
  at::Tensor m = at::tensor({1, 0, 0, 1}).view({1, 4});  // integer mask: nonzero = valid
  auto [a, ret] = gae(r, v, m, 1.0, 0.5);
  CHECK_TRUE(at::isfinite(a).all().item<bool>() && at::isfinite(ret).all().item<bool>());
  auto [ea, eret] = gae_ref(at::tensor({1.0, 0.0, 0.0, 2.0}).view({1, 4}), at::tensor({0.5, 0.0, 0.0, 1.0}).view({1, 4}),
                            m, 1.0, 0.5);
  CHECK_CLOSE(a, ea, 1e-6, 0);
  CHECK_CLOSE(ret, eret, 1e-6, 0);
}

LLMRL_TEST(gae_every_dtype) {
  at::manual_seed(4);
  at::Tensor r = at::randn({5, 300}, at::kDouble), v = at::randn({5, 300}, at::kDouble);
  at::Tensor m = at::rand({5, 300}) > 0.1;
  for (auto dt : {at::kFloat, at::kBFloat16, at::kHalf}) {
    at::Tensor rr = r.to(dt), vv = v.to(dt);
    auto [a, ret] = gae(rr, vv, m, 1.0, 0.95);
    CHECK_TRUE(a.scalar_type() == dt && ret.scalar_type() == dt);
    auto [ea, eret] = gae_ref(rr, vv, m, 1.0, 0.95);  // oracle on the same rounded inputs
    // float32 accumulation: float32 output is exact to ~1e-5; half outputs to one rounding (2^-8 relative).
    const double tol = dt == at::kFloat ? 1e-5 : 1e-2;
    CHECK_CLOSE(a, ea, tol, tol);
    CHECK_CLOSE(ret, eret, tol, tol);
  }
}

LLMRL_TEST(gae_outputs_never_require_grad) {
  at::Tensor r = at::randn({2, 5}).requires_grad_(), v = at::randn({2, 5}).requires_grad_();
  auto [a, ret] = gae(r, v, at::ones({2, 5}, at::kBool));
  CHECK_TRUE(!a.requires_grad() && !ret.requires_grad());
  CHECK_TRUE(!a.grad_fn() && !ret.grad_fn());
}

LLMRL_TEST(gae_argument_errors) {
  at::Tensor a = at::zeros({2, 3}), m = at::ones({2, 3}, at::kBool);
  CHECK_TRUE(throws_with([&] { gae(a, at::zeros({3, 2}), m); }, "gae: 'values' must have the shape of 'rewards' [2, 3], got [3, 2]"));
  CHECK_TRUE(throws_with([&] { gae(a, a, at::ones({2, 4})); }, "gae: 'mask' must have the shape of 'rewards'"));
  CHECK_TRUE(throws_with([&] { gae(at::zeros({6}), at::zeros({6}), at::ones({6})); }, "gae: 'rewards' must have shape [B, T], got [6]"));
  CHECK_TRUE(throws_with([&] { gae(a, a.to(at::kDouble), m); }, "gae: 'values' must have dtype Float like 'rewards', got Double"));
  CHECK_TRUE(throws_with([&] { gae(a, a, m, NAN, 0.9); }, "gae: 'gamma' must be a finite number"));
  CHECK_TRUE(throws_with([&] { gae(a.to(at::kLong), a.to(at::kLong), m); }, "gae: 'rewards' must be a floating tensor"));
  auto [e1, e2] = gae(at::zeros({0, 4}), at::zeros({0, 4}), at::ones({0, 4}));
  CHECK_TRUE(e1.numel() == 0 && e2.numel() == 0);
}

LLMRL_TEST(gae_cuda_matches_cpu) {
  if (!at::hasCUDA()) { std::cout << "(no CUDA device: CUDA vs CPU not checked) "; return; }
  at::manual_seed(5);
  at::Tensor r = at::randn({33, 257}), v = at::randn({33, 257}), m = at::rand({33, 257}) > 0.2;
  for (auto dt : {at::kFloat, at::kDouble, at::kBFloat16, at::kHalf}) {
    auto [a, ret] = gae(r.to(dt), v.to(dt), m, 0.99, 0.95);
    auto [ga, gret] = gae(r.to(dt).cuda(), v.to(dt).cuda(), m.cuda(), 0.99, 0.95);
    const double tol = dt == at::kFloat || dt == at::kDouble ? 1e-5 : 1e-2;  // FMA may flip one half ulp
    CHECK_CLOSE(ga.cpu(), a, tol, tol);
    CHECK_CLOSE(gret.cpu(), ret, tol, tol);
  }
}
