// masked_whiten native tests (ALGORITHMS.md §3c): schema registered, values and gradients vs an eager
// float64 composition (TRL's masked_whiten with masked positions zeroed), finite differences, single valid
// token and all-masked edge cases, masked NaN garbage, a large-mean float32 input (two-pass accuracy),
// every dtype, results independent of the thread count, argument errors; CUDA vs CPU where present.
#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <functional>
#include <iostream>

#include "test_util.h"

namespace {

at::Tensor whiten(const at::Tensor& x, const at::Tensor& m, bool shift_mean = true) {
  static auto op = c10::Dispatcher::singleton().findSchemaOrThrow("llmrl::masked_whiten", "")
      .typed<at::Tensor(const at::Tensor&, const at::Tensor&, bool)>();
  return op.call(x, m, shift_mean);
}

// Unfused oracle: TRL's masked_mean / masked_var(unbiased) / masked_whiten, then masked positions → 0.
at::Tensor whiten_ref(const at::Tensor& x, const at::Tensor& mask, bool shift_mean) {
  at::Tensor m = mask.to(at::kBool);
  at::Tensor zero = at::zeros_like(x);
  at::Tensor n = m.sum().to(x.scalar_type());
  at::Tensor mean = at::where(m, x, zero).sum() / n;
  at::Tensor dev = at::where(m, x - mean, zero);
  at::Tensor var = dev.square().sum() / (n - 1);
  at::Tensor y = (x - mean) * at::rsqrt(var + 1e-8);
  if (!shift_mean) y = y + mean;
  return at::where(m, y, zero);
}

bool throws_with(const std::function<void()>& f, const std::string& text) {
  try { f(); } catch (const c10::Error& e) { return std::string(e.what()).find(text) != std::string::npos; }
  return false;
}

}  // namespace

LLMRL_TEST(masked_whiten_schema_registered) {
  auto h = c10::Dispatcher::singleton().findSchema({"llmrl::masked_whiten", ""});
  CHECK_TRUE(h.has_value());
  CHECK_TRUE(h->hasKernelForDispatchKey(c10::DispatchKey::CPU));
  CHECK_TRUE(h->hasKernelForDispatchKey(c10::DispatchKey::AutogradCPU) ||
             h->hasKernelForDispatchKey(c10::DispatchKey::Autograd));
  CHECK_TRUE(c10::Dispatcher::singleton().findSchema({"llmrl::masked_whiten_backward", ""}).has_value());
}

LLMRL_TEST(masked_whiten_values_and_grads_vs_float64_oracle) {
  at::manual_seed(0);
  for (bool shift : {true, false}) {
    for (auto shape : {std::vector<int64_t>{6, 41}, std::vector<int64_t>{3, 5, 7}, std::vector<int64_t>{40000}}) {
      at::Tensor x0 = at::randn(shape, at::kDouble) * 3 + 2;
      at::Tensor m = at::rand(shape) > 0.4;
      at::Tensor a = x0.clone().requires_grad_(), b = x0.clone().requires_grad_();
      at::Tensor got = whiten(a, m, shift), want = whiten_ref(b, m, shift);
      CHECK_CLOSE(got, want, 1e-12, 1e-12);
      at::Tensor w = at::randn(shape, at::kDouble);
      (got * w).sum().backward();
      (want * w).sum().backward();
      CHECK_CLOSE(a.grad(), b.grad(), 1e-12, 1e-12);
    }
  }
}

LLMRL_TEST(masked_whiten_whitened_moments) {
  // The valid entries of the output have mean 0 and (Bessel) variance var/(var + 1e-8) ≈ 1.
  at::manual_seed(1);
  at::Tensor x = at::randn({8, 64}, at::kDouble) * 5 - 3;
  at::Tensor m = at::rand({8, 64}) > 0.5;
  at::Tensor y = whiten(x, m).masked_select(m);
  CHECK_TRUE(std::abs(y.mean().item<double>()) < 1e-12);
  CHECK_TRUE(std::abs(y.var().item<double>() - 1) < 1e-8);
}

LLMRL_TEST(masked_whiten_finite_differences) {
  at::manual_seed(2);
  at::Tensor x = at::randn({3, 4}, at::kDouble), m = at::tensor({1, 1, 0, 1, 1, 1, 1, 0, 1, 0, 1, 1}).view({3, 4});
  at::Tensor wgt = at::randn({3, 4}, at::kDouble);
  for (bool shift : {true, false}) {
    at::Tensor xg = x.clone().requires_grad_();
    (whiten(xg, m, shift) * wgt).sum().backward();
    const double h = 1e-6;
    at::Tensor fd = at::empty_like(x);
    for (int64_t i = 0; i < x.numel(); ++i) {
      at::Tensor p = x.clone(), q = x.clone();
      p.view(-1)[i] += h;
      q.view(-1)[i] -= h;
      fd.view(-1)[i] = ((whiten(p, m, shift) - whiten(q, m, shift)) * wgt).sum() / (2 * h);
    }
    CHECK_CLOSE(xg.grad(), fd, 1e-7, 1e-6);
  }
}

LLMRL_TEST(masked_whiten_single_valid_token_and_all_masked) {
  // One valid token: var is defined as 0 (TRL raises), so y = 0 (shift) or y = x (keep mean); grad 0 / g.
  at::Tensor x = at::tensor({5.0, 7.0, -1.0}, at::kDouble);
  at::Tensor one = at::tensor({0, 1, 0}).to(at::kBool);
  for (bool shift : {true, false}) {
    at::Tensor xg = x.clone().requires_grad_();
    at::Tensor y = whiten(xg, one, shift);
    CHECK_CLOSE(y, at::tensor({0.0, shift ? 0.0 : 7.0, 0.0}, at::kDouble), 0, 0);
    y.backward(at::tensor({2.0, 3.0, 4.0}, at::kDouble));
    CHECK_CLOSE(xg.grad(), at::tensor({0.0, shift ? 0.0 : 3.0, 0.0}, at::kDouble), 0, 0);
  }
  // All masked → zeros, zero gradient, never NaN.
  at::Tensor xg = x.clone().requires_grad_();
  at::Tensor y = whiten(xg, at::zeros({3}, at::kBool), false);
  y.sum().backward();
  CHECK_CLOSE(y, at::zeros({3}, at::kDouble), 0, 0);
  CHECK_CLOSE(xg.grad(), at::zeros({3}, at::kDouble), 0, 0);
}

LLMRL_TEST(masked_whiten_masked_garbage_stays_out) {
  at::Tensor x = at::tensor({1.0f, NAN, 3.0f, INFINITY, 2.0f});
  at::Tensor m = at::tensor({1, 0, 1, 0, 1});
  at::Tensor xg = x.clone().requires_grad_();
  at::Tensor y = whiten(xg, m, true);
  y.backward(at::tensor({1.0f, NAN, -2.0f, 5.0f, 0.5f}));  // garbage incoming grads at masked positions too
  CHECK_TRUE(at::isfinite(y).all().item<bool>() && at::isfinite(xg.grad()).all().item<bool>());
  // valid x = [1, 3, 2]: μ = 2, var = 1 → y = (x − 2)/sqrt(1 + 1e-8)
  const double s = 1 / std::sqrt(1 + 1e-8);
  CHECK_CLOSE(y, at::tensor({-s, 0.0, s, 0.0, 0.0}), 1e-6, 0);
  CHECK_TRUE(xg.grad()[1].item<float>() == 0 && xg.grad()[3].item<float>() == 0);
}

LLMRL_TEST(masked_whiten_large_mean_float32_accuracy) {
  // |μ| ≫ σ: one-pass Σx² in float32 would lose every digit; the float64 two-pass sums do not.
  at::manual_seed(3);
  at::Tensor x = (at::randn({64, 512}, at::kDouble) + 1e4).to(at::kFloat);
  at::Tensor m = at::rand({64, 512}) > 0.2;
  CHECK_CLOSE(whiten(x, m), whiten_ref(x.to(at::kDouble), m, true), 2e-3, 0);  // one float32 rounding of x − μ near 1e4
}

LLMRL_TEST(masked_whiten_every_dtype) {
  at::manual_seed(4);
  at::Tensor x = at::randn({9, 77}, at::kDouble) * 2 + 1, m = at::rand({9, 77}) > 0.3;
  for (auto dt : {at::kFloat, at::kBFloat16, at::kHalf}) {
    at::Tensor xd = x.to(dt);
    at::Tensor xg = xd.clone().requires_grad_();
    at::Tensor y = whiten(xg, m, false);
    CHECK_TRUE(y.scalar_type() == dt);
    at::Tensor w = at::randn({9, 77}, at::kDouble);
    (y * w.to(dt)).sum().backward();
    CHECK_TRUE(xg.grad().scalar_type() == dt);
    at::Tensor xr = xd.to(at::kDouble).requires_grad_();
    at::Tensor yr = whiten_ref(xr, m, false);
    (yr * w.to(dt).to(at::kDouble)).sum().backward();
    const double tol = dt == at::kFloat ? 1e-5 : 2e-2;
    CHECK_CLOSE(y, yr, tol, tol);
    CHECK_CLOSE(xg.grad(), xr.grad(), tol, tol);
  }
}

LLMRL_TEST(masked_whiten_independent_of_thread_count) {
  at::manual_seed(5);
  at::Tensor x = at::randn({300000}), m = at::rand({300000}) > 0.5;
  const int before = at::get_num_threads();
  at::set_num_threads(1);
  at::Tensor one = whiten(x, m);
  at::set_num_threads(std::max(2, before));
  at::Tensor many = whiten(x, m);
  at::set_num_threads(before);
  CHECK_TRUE(at::equal(one, many));
}

LLMRL_TEST(masked_whiten_argument_errors) {
  at::Tensor x = at::zeros({2, 3});
  CHECK_TRUE(throws_with([&] { whiten(x, at::ones({3, 2})); }, "masked_whiten: 'mask' must have the shape of 'x' [2, 3], got [3, 2]"));
  CHECK_TRUE(throws_with([&] { whiten(x.to(at::kLong), at::ones({2, 3})); }, "masked_whiten: 'x' must be a floating tensor"));
  CHECK_TRUE(whiten(at::zeros({0, 3}), at::ones({0, 3})).numel() == 0);
}

LLMRL_TEST(masked_whiten_cuda_matches_cpu) {
  if (!at::hasCUDA()) { std::cout << "(no CUDA device: CUDA vs CPU not checked) "; return; }
  at::manual_seed(6);
  at::Tensor x = at::randn({37, 1001}) * 3 + 1, m = at::rand({37, 1001}) > 0.3, w = at::randn({37, 1001});
  for (auto dt : {at::kFloat, at::kDouble, at::kBFloat16, at::kHalf}) {
    for (bool shift : {true, false}) {
      at::Tensor a = x.to(dt).requires_grad_(), b = x.to(dt).cuda().requires_grad_();
      at::Tensor ya = whiten(a, m, shift), yb = whiten(b, m.cuda(), shift);
      (ya * w.to(dt)).sum().backward();
      (yb * w.to(dt).cuda()).sum().backward();
      const double tol = dt == at::kFloat || dt == at::kDouble ? 1e-5 : 1e-2;
      CHECK_CLOSE(yb.cpu(), ya, tol, tol);
      CHECK_CLOSE(b.grad().cpu(), a.grad(), tol, tol);
    }
  }
}
