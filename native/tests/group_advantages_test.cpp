// group_advantages native tests (ALGORITHMS.md §3d): schema registered, TRL's numbers by hand, every
// scale vs an eager float64 view/mean/std composition, NaN rewards (excluded, A = 0; all-NaN group → 0),
// group_std output, every dtype, no-grad outputs, argument errors; CUDA vs CPU where a GPU is present.
#include <ATen/core/dispatch/Dispatcher.h>

#include <functional>
#include <iostream>

#include "test_util.h"

namespace {

std::tuple<at::Tensor, at::Tensor> group_adv(const at::Tensor& r, int64_t g, const std::string& scale = "group") {
  static auto op = c10::Dispatcher::singleton().findSchemaOrThrow("llmrl::group_advantages", "")
      .typed<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, int64_t, c10::string_view)>();
  return op.call(r, g, scale);
}

// Unfused oracle without NaN: TRL's view(-1, G).mean/std composition (+ RLOO's leave-one-out baseline).
at::Tensor group_adv_ref(const at::Tensor& r, int64_t G, const std::string& scale) {
  at::Tensor x = r.to(at::kDouble).view({-1, G});
  at::Tensor mu = x.mean(1, true), sd = x.std(1, /*unbiased=*/true, true);
  at::Tensor a;
  if (scale == "group") a = (x - mu) / (sd + 1e-4);
  else if (scale == "batch") a = (x - mu) / (r.to(at::kDouble).std() + 1e-4);
  else if (scale == "none") a = x - mu;
  else a = x - (x.sum(1, true) - x) / double(G - 1);
  return a.reshape({-1});
}

bool throws_with(const std::function<void()>& f, const std::string& text) {
  try { f(); } catch (const c10::Error& e) { return std::string(e.what()).find(text) != std::string::npos; }
  return false;
}

}  // namespace

LLMRL_TEST(group_advantages_schema_registered) {
  auto h = c10::Dispatcher::singleton().findSchema({"llmrl::group_advantages", ""});
  CHECK_TRUE(h.has_value());
  CHECK_TRUE(h->hasKernelForDispatchKey(c10::DispatchKey::CPU));
  CHECK_TRUE(h->hasKernelForDispatchKey(c10::DispatchKey::AutogradCPU) ||
             h->hasKernelForDispatchKey(c10::DispatchKey::Autograd));
}

LLMRL_TEST(group_advantages_trl_values_by_hand) {
  // Group 1: [1, 0, 0, 1]: μ = 0.5, σ = sqrt(1/3) → ±0.5/(0.57735… + 1e-4). Group 2: all equal → σ = 0, A = 0.
  at::Tensor r = at::tensor({1.0, 0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 2.0}, at::kDouble);
  auto [a, sd] = group_adv(r, 4, "group");
  const double v = 0.5 / (std::sqrt(1.0 / 3.0) + 1e-4);
  CHECK_CLOSE(a, at::tensor({v, -v, -v, v, 0.0, 0.0, 0.0, 0.0}, at::kDouble), 1e-15, 0);
  CHECK_CLOSE(sd, at::tensor({std::sqrt(1.0 / 3.0), 0.0}, at::kDouble), 1e-15, 0);
  // rloo: A_i = R_i − mean of the other three: [1 − 1/3, 0 − 2/3, …].
  auto [ar, sr] = group_adv(r, 4, "rloo");
  CHECK_CLOSE(ar, at::tensor({2.0 / 3, -2.0 / 3, -2.0 / 3, 2.0 / 3, 0.0, 0.0, 0.0, 0.0}, at::kDouble), 1e-15, 0);
  // none (Dr. GRPO): R − μ.
  CHECK_CLOSE(std::get<0>(group_adv(r, 4, "none")), at::tensor({0.5, -0.5, -0.5, 0.5, 0.0, 0.0, 0.0, 0.0}, at::kDouble), 0, 0);
}

LLMRL_TEST(group_advantages_every_scale_vs_float64_oracle) {
  at::manual_seed(0);
  for (int64_t G : {2, 3, 8}) {
    at::Tensor r = at::randn({G * 13}, at::kDouble) * 2 + 1;
    for (const char* scale : {"group", "batch", "none", "rloo"}) {
      auto [a, sd] = group_adv(r, G, scale);
      CHECK_CLOSE(a, group_adv_ref(r, G, scale), 1e-12, 1e-12);
      CHECK_CLOSE(sd, r.view({-1, G}).std(1, true, false), 1e-12, 1e-12);
    }
  }
}

LLMRL_TEST(group_advantages_nan_rewards_excluded) {
  // Group 1: one NaN → stats over the 3 others, its own A = 0. Group 2: all NaN → zeros, std 0.
  // Group 3: one valid reward → σ = 0, A = 0 in every scale.
  const double n = NAN;
  at::Tensor r = at::tensor({1.0, n, 4.0, 7.0, n, n, n, n, n, 3.0, n, n}, at::kDouble);
  at::Tensor valid = at::tensor({1.0, 4.0, 7.0}, at::kDouble);  // group 1's valid rewards
  for (const char* scale : {"group", "batch", "none", "rloo"}) {
    auto [a, sd] = group_adv(r, 4, scale);
    CHECK_TRUE(at::isfinite(a).all().item<bool>() && at::isfinite(sd).all().item<bool>());
    at::Tensor want1;
    if (std::string(scale) == "batch") {
      // batch std over all valid rewards {1, 4, 7, 3}
      const double bsd = at::tensor({1.0, 4.0, 7.0, 3.0}, at::kDouble).std().item<double>();
      want1 = (valid - 4.0) / (bsd + 1e-4);
    } else {
      want1 = group_adv_ref(valid, 3, scale);
    }
    CHECK_CLOSE(a.slice(0, 0, 4).index_select(0, at::tensor({0, 2, 3}, at::kLong)), want1, 1e-12, 1e-12);
    CHECK_TRUE(a[1].item<double>() == 0);
    CHECK_TRUE(a.slice(0, 4).abs().max().item<double>() == 0);
    CHECK_CLOSE(sd, at::tensor({3.0, 0.0, 0.0}, at::kDouble), 1e-12, 0);
  }
}

LLMRL_TEST(group_advantages_every_dtype) {
  at::manual_seed(1);
  at::Tensor r = at::randn({64}, at::kDouble);
  for (auto dt : {at::kFloat, at::kBFloat16, at::kHalf}) {
    for (const char* scale : {"group", "batch", "none", "rloo"}) {
      auto [a, sd] = group_adv(r.to(dt), 8, scale);
      CHECK_TRUE(a.scalar_type() == dt && sd.scalar_type() == dt);
      const double tol = dt == at::kFloat ? 1e-5 : 2e-2;
      CHECK_CLOSE(a, group_adv_ref(r.to(dt), 8, scale), tol, tol);
    }
  }
}

LLMRL_TEST(group_advantages_outputs_never_require_grad) {
  at::Tensor r = at::randn({8}).requires_grad_();
  auto [a, sd] = group_adv(r, 4);
  CHECK_TRUE(!a.requires_grad() && !sd.requires_grad());
}

LLMRL_TEST(group_advantages_argument_errors) {
  at::Tensor r = at::zeros({10});
  CHECK_TRUE(throws_with([&] { group_adv(r, 4); }, "group_advantages: the length of 'rewards' (B = 10) must be divisible by 'group_size' (G = 4)"));
  CHECK_TRUE(throws_with([&] { group_adv(r, 1, "group"); }, "'group_size' must be at least 2 with scale='group'"));
  CHECK_TRUE(throws_with([&] { group_adv(r, 1, "rloo"); }, "'group_size' must be at least 2 with scale='rloo'"));
  CHECK_TRUE(throws_with([&] { group_adv(r, 0, "none"); }, "'group_size' must be a positive integer, got 0"));
  CHECK_TRUE(throws_with([&] { group_adv(r, 2, "grpo"); }, "group_advantages: 'scale' must be one of 'group', 'batch', 'none', 'rloo', got 'grpo'"));
  CHECK_TRUE(throws_with([&] { group_adv(at::zeros({2, 4}), 4); }, "group_advantages: 'rewards' must have shape [B]"));
  auto [a, sd] = group_adv(r, 1, "none");  // G = 1 is allowed where no std is needed: A = 0
  CHECK_TRUE(a.abs().max().item<float>() == 0 && sd.numel() == 10);
}

LLMRL_TEST(group_advantages_cuda_matches_cpu) {
  if (!at::hasCUDA()) { std::cout << "(no CUDA device: CUDA vs CPU not checked) "; return; }
  at::manual_seed(2);
  at::Tensor r = at::randn({16 * 300});
  r.index_put_({at::rand({16 * 300}) > 0.9}, NAN);
  for (auto dt : {at::kFloat, at::kDouble, at::kBFloat16, at::kHalf}) {
    for (const char* scale : {"group", "batch", "none", "rloo"}) {
      auto [a, sd] = group_adv(r.to(dt), 16, scale);
      auto [ga, gsd] = group_adv(r.to(dt).cuda(), 16, scale);
      const double tol = dt == at::kFloat || dt == at::kDouble ? 1e-5 : 1e-2;
      CHECK_CLOSE(ga.cpu(), a, tol, tol);
      CHECK_CLOSE(gsd.cpu(), sd, tol, tol);
    }
  }
}
