// bradley_terry_loss native tests (ALGORITHMS.md §8): schema and kernels registered; loss, accuracy, mean
// margin and gradients vs an eager float64 composition (with and without margin and centering); the ln 2
// closed form; huge score gaps stay finite; finite differences; every dtype; B == 0 and B beyond one
// chunk; argument errors.
#include <ATen/core/dispatch/Dispatcher.h>

#include <cmath>

#include "test_util.h"

namespace {

using OptT = std::optional<at::Tensor>;
using Out = std::tuple<at::Tensor, at::Tensor, at::Tensor>;

Out bt(const at::Tensor& c, const at::Tensor& r, const OptT& margin = std::nullopt, double center = 0.0) {
  static auto op = c10::Dispatcher::singleton().findSchemaOrThrow("llmrl::bradley_terry_loss", "")
      .typed<Out(const at::Tensor&, const at::Tensor&, const OptT&, double)>();
  return op.call(c, r, margin, center);
}

// Unfused oracle, ALGORITHMS.md §8.
std::vector<at::Tensor> bt_ref(const at::Tensor& c, const at::Tensor& r, const OptT& margin = std::nullopt,
                               double center = 0.0) {
  at::Tensor d = c - r;
  if (margin) d = d - margin->to(d.scalar_type());
  at::Tensor loss = -at::log_sigmoid(d).mean();
  if (center != 0) loss = loss + center * (c + r).pow(2).mean();
  return {loss, (c > r).to(c.scalar_type()).mean(), (c - r).mean()};
}

void check_outputs(const Out& got, const std::vector<at::Tensor>& want, double tol) {
  CHECK_CLOSE(std::get<0>(got), want[0], tol, tol);
  CHECK_CLOSE(std::get<1>(got), want[1], tol, tol);
  CHECK_CLOSE(std::get<2>(got), want[2], tol, tol);
}

template <typename F>
bool throws_with(F f, const std::string& needle) {
  try { f(); } catch (const c10::Error& e) { return std::string(e.what()).find(needle) != std::string::npos; }
  return false;
}

}  // namespace

LLMRL_TEST(bradley_terry_loss_schema_registered) {
  for (const char* name : {"llmrl::bradley_terry_loss", "llmrl::bradley_terry_loss_backward"}) {
    auto h = c10::Dispatcher::singleton().findSchema({name, ""});
    CHECK_TRUE(h.has_value());
    CHECK_TRUE(h->hasKernelForDispatchKey(c10::DispatchKey::CPU));
  }
  auto h = c10::Dispatcher::singleton().findSchema({"llmrl::bradley_terry_loss", ""});
  CHECK_TRUE(h->hasKernelForDispatchKey(c10::DispatchKey::AutogradCPU) ||
             h->hasKernelForDispatchKey(c10::DispatchKey::Autograd));
}

LLMRL_TEST(bradley_terry_loss_values_and_grads_vs_float64_oracle) {
  at::manual_seed(0);
  const int64_t B = 41;
  for (bool with_margin : {false, true}) {
    for (double center : {0.0, 0.01}) {
      at::Tensor c0 = at::randn({B}, at::kDouble) * 2, r0 = at::randn({B}, at::kDouble) * 2;
      OptT m = with_margin ? OptT(at::rand({B}, at::kFloat) * 3) : std::nullopt;  // any floating dtype
      at::Tensor a = c0.clone().requires_grad_(), b = r0.clone().requires_grad_();
      at::Tensor a2 = c0.clone().requires_grad_(), b2 = r0.clone().requires_grad_();
      Out got = bt(a, b, m, center);
      auto want = bt_ref(a2, b2, m, center);
      check_outputs(got, want, 1e-12);
      CHECK_TRUE(std::get<0>(got).scalar_type() == at::kDouble && std::get<0>(got).dim() == 0);
      CHECK_TRUE(std::get<0>(got).requires_grad() && !std::get<1>(got).requires_grad() &&
                 !std::get<2>(got).requires_grad());
      (std::get<0>(got) * -0.3).backward();
      (want[0] * -0.3).backward();
      CHECK_CLOSE(a.grad(), a2.grad(), 1e-14, 1e-12);
      CHECK_CLOSE(b.grad(), b2.grad(), 1e-14, 1e-12);
    }
  }
}

LLMRL_TEST(bradley_terry_loss_closed_forms) {
  // Equal scores: loss ln 2, accuracy 0, mean margin 0, gradients ∓1/(2B); centering adds c·mean((2r)²).
  for (auto dt : {at::kFloat, at::kDouble, at::kBFloat16, at::kHalf}) {
    at::Tensor s = (at::randn({16}) * 3).to(dt);
    at::Tensor c = s.clone().requires_grad_(), r = s.clone().requires_grad_();
    Out o = bt(c, r);
    CHECK_CLOSE(std::get<0>(o), at::scalar_tensor(std::log(2.0), at::kDouble), 1e-7, 1e-7);
    CHECK_TRUE(std::get<1>(o).item<double>() == 0 && std::get<2>(o).item<double>() == 0);
    CHECK_TRUE(std::get<0>(o).scalar_type() == (dt == at::kDouble ? at::kDouble : at::kFloat));
    std::get<0>(o).backward();
    CHECK_TRUE(c.grad().scalar_type() == dt);
    CHECK_CLOSE(c.grad(), at::full({16}, -1.0 / 32), 0, 0);
    CHECK_CLOSE(r.grad(), at::full({16}, 1.0 / 32), 0, 0);
  }
  // margin m with r_c − r_r = m: also ln 2; accuracy counts r_c > r_r regardless of the margin.
  at::Tensor c = at::tensor({3.0, 1.0}, at::kDouble), r = at::tensor({1.0, 0.0}, at::kDouble);
  Out o = bt(c, r, at::tensor({2.0, 1.0}, at::kDouble), 0.5);
  // 0.5 · mean((4², 1²)) = 4.25
  CHECK_CLOSE(std::get<0>(o), at::scalar_tensor(std::log(2.0) + 4.25, at::kDouble), 1e-15, 1e-15);
  CHECK_CLOSE(std::get<1>(o), at::scalar_tensor(1.0, at::kDouble), 0, 0);
  CHECK_CLOSE(std::get<2>(o), at::scalar_tensor(1.5, at::kDouble), 0, 0);
}

LLMRL_TEST(bradley_terry_loss_huge_gaps_stay_finite) {
  for (auto dt : {at::kFloat, at::kDouble, at::kHalf}) {
    at::Tensor c = at::tensor({1e4, -1e4, 0.0}, at::kDouble).to(dt).requires_grad_();
    at::Tensor r = at::zeros({3}, dt).requires_grad_();
    Out o = bt(c, r);
    std::get<0>(o).backward();
    // pairs: 0, 1e4, ln 2 → mean (1e4 + ln 2)/3; ∂/∂r_c = −σ(−d)/3 = 0, −1/3, −1/6
    CHECK_CLOSE(std::get<0>(o), at::scalar_tensor((1e4 + std::log(2.0)) / 3), 1e-3, 1e-6);
    CHECK_CLOSE(c.grad(), at::tensor({0.0, -1.0 / 3, -1.0 / 6}, at::kDouble), 1e-3, 1e-3);
    CHECK_TRUE(at::isfinite(r.grad()).all().item<bool>());
  }
}

LLMRL_TEST(bradley_terry_loss_finite_differences) {
  at::manual_seed(1);
  const int64_t B = 7;
  at::Tensor c0 = at::randn({B}, at::kDouble), r0 = at::randn({B}, at::kDouble), m = at::rand({B}, at::kDouble);
  auto loss = [&](const at::Tensor& c, const at::Tensor& r) { return std::get<0>(bt(c, r, m, 0.1)).item<double>(); };
  at::Tensor c = c0.clone().requires_grad_(), r = r0.clone().requires_grad_();
  std::get<0>(bt(c, r, m, 0.1)).backward();
  const double h = 1e-6;
  at::Tensor fc = at::empty({B}, at::kDouble), fr = at::empty({B}, at::kDouble);
  for (int64_t i = 0; i < B; ++i) {
    at::Tensor p = c0.clone(), q = c0.clone();
    p[i] += h;
    q[i] -= h;
    fc[i] = (loss(p, r0) - loss(q, r0)) / (2 * h);
    p = r0.clone();
    q = r0.clone();
    p[i] += h;
    q[i] -= h;
    fr[i] = (loss(c0, p) - loss(c0, q)) / (2 * h);
  }
  CHECK_CLOSE(c.grad(), fc, 1e-8, 1e-6);
  CHECK_CLOSE(r.grad(), fr, 1e-8, 1e-6);
}

LLMRL_TEST(bradley_terry_loss_low_precision_dtypes) {
  at::manual_seed(2);
  const int64_t B = 64;
  at::Tensor c0 = at::randn({B}, at::kDouble) * 2, r0 = at::randn({B}, at::kDouble) * 2;
  at::Tensor m = at::rand({B}, at::kDouble);
  for (auto dt : {at::kFloat, at::kBFloat16, at::kHalf}) {
    at::Tensor c = c0.to(dt).requires_grad_(), r = r0.to(dt).requires_grad_();
    at::Tensor c2 = c.detach().to(at::kDouble).requires_grad_(), r2 = r.detach().to(at::kDouble).requires_grad_();
    Out o = bt(c, r, m, 0.05);
    // margin read in float32: the oracle sees it rounded the same way
    auto want = bt_ref(c2, r2, m.to(at::kFloat), 0.05);
    CHECK_TRUE(std::get<0>(o).scalar_type() == at::kFloat);
    check_outputs(o, want, 1e-6);
    std::get<0>(o).backward();
    want[0].backward();
    CHECK_TRUE(c.grad().scalar_type() == dt);
    const double gtol = dt == at::kFloat ? 1e-6 : 1e-2;
    CHECK_CLOSE(c.grad(), c2.grad(), 1e-7, gtol);
    CHECK_CLOSE(r.grad(), r2.grad(), 1e-7, gtol);
  }
}

LLMRL_TEST(bradley_terry_loss_empty_batch_and_many_chunks) {
  at::Tensor e = at::empty({0}).requires_grad_();
  Out o = bt(e, e);
  CHECK_TRUE(std::get<0>(o).item<float>() == 0.f && std::get<1>(o).item<float>() == 0.f);
  std::get<0>(o).backward();
  CHECK_TRUE(e.grad().numel() == 0);
  at::manual_seed(3);
  const int64_t B = 9000;
  at::Tensor c = at::randn({B}, at::kDouble), r = at::randn({B}, at::kDouble), m = at::rand({B}, at::kDouble);
  check_outputs(bt(c, r, m, 0.02), bt_ref(c, r, m, 0.02), 1e-12);
}

LLMRL_TEST(bradley_terry_loss_argument_errors) {
  at::Tensor a = at::zeros({4});
  CHECK_TRUE(throws_with([&] { bt(a, at::zeros({5})); },
                         "bradley_terry_loss: 'rejected_scores' must have the shape of 'chosen_scores' [4], got [5]"));
  CHECK_TRUE(throws_with([&] { bt(at::zeros({4, 1}), at::zeros({4, 1})); },
                         "'chosen_scores' must have shape [B], got [4, 1]"));
  CHECK_TRUE(throws_with([&] { bt(a, a.to(at::kHalf)); }, "'rejected_scores' must have dtype Float"));
  CHECK_TRUE(throws_with([&] { bt(a, a, at::zeros({3})); }, "'margin' must have the shape of 'chosen_scores'"));
  CHECK_TRUE(throws_with([&] { bt(a, a, at::zeros({4}, at::kLong)); }, "'margin' must be a floating tensor"));
  CHECK_TRUE(throws_with([&] { bt(a, a, std::nullopt, -1.0); }, "'center_coef' must be a finite number ≥ 0, got -1"));
}
