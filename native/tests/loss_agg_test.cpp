// loss_agg native tests (ALGORITHMS.md §5): registration, the four modes vs an eager float64 composition
// (values and gradients, fully masked rows excluded), closed forms, micro-batch gradient accumulation with
// global counts equals the full batch for every mode, all-masked / zero normaliser → 0 with zero gradient,
// masked garbage, dtypes, errors.
#include <ATen/core/dispatch/Dispatcher.h>

#include "test_util.h"

namespace {

const char* kModes[] = {"token_mean", "seq_mean_token_mean", "seq_mean_token_sum_norm", "seq_mean_token_sum"};

at::Tensor agg(const at::Tensor& L, const at::Tensor& mask, const std::string& mode,
               std::optional<double> normalizer = std::nullopt, std::optional<double> num_sequences = std::nullopt,
               std::optional<int64_t> max_length = std::nullopt) {
  static auto op = c10::Dispatcher::singleton().findSchemaOrThrow("llmrl::loss_agg", "")
      .typed<at::Tensor(const at::Tensor&, const at::Tensor&, c10::string_view, std::optional<double>,
                        std::optional<double>, std::optional<int64_t>)>();
  return op.call(L, mask, mode, normalizer, num_sequences, max_length);
}

// Unfused oracle, ALGORITHMS.md §5 (no normaliser options).
at::Tensor agg_ref(const at::Tensor& L, const at::Tensor& mask, const std::string& mode, int64_t max_length) {
  const at::Tensor Lm = at::where(mask, L, at::zeros_like(L));
  const at::Tensor n = mask.sum(1).to(L.scalar_type());
  const at::Tensor valid = n > 0;
  const at::Tensor S = valid.sum().to(L.scalar_type());
  if (mode == "token_mean") return Lm.sum() / n.sum();
  if (mode == "seq_mean_token_mean") {
    const at::Tensor per = Lm.sum(1) / n.clamp_min(1);
    return at::where(valid, per, at::zeros_like(per)).sum() / S;
  }
  if (mode == "seq_mean_token_sum_norm") return Lm.sum() / (S * double(max_length));
  return Lm.sum(1).sum() / S;
}

double val(const at::Tensor& t) { return t.item<double>(); }

}  // namespace

LLMRL_TEST(loss_agg_schema_registered) {
  for (const char* name : {"llmrl::loss_agg", "llmrl::loss_agg_forward", "llmrl::loss_agg_backward"}) {
    auto h = c10::Dispatcher::singleton().findSchema({name, ""});
    CHECK_TRUE(h.has_value());
    CHECK_TRUE(h->hasKernelForDispatchKey(c10::DispatchKey::CPU));
  }
  auto h = c10::Dispatcher::singleton().findSchema({"llmrl::loss_agg", ""});
  CHECK_TRUE(h->hasKernelForDispatchKey(c10::DispatchKey::AutogradCPU) ||
             h->hasKernelForDispatchKey(c10::DispatchKey::Autograd));
}

LLMRL_TEST(loss_agg_modes_vs_float64_oracle) {
  at::manual_seed(0);
  const int64_t B = 7, T = 33;
  for (const char* mode : kModes) {
    for (std::optional<int64_t> max_len : {std::optional<int64_t>(), std::optional<int64_t>(64)}) {
      at::Tensor L0 = at::randn({B, T}, at::kDouble);
      at::Tensor mask = at::rand({B, T}) > 0.4;
      mask[2].fill_(false);  // a fully masked row: contributes nothing, not counted
      at::Tensor a = L0.clone().requires_grad_(), b = L0.clone().requires_grad_();
      at::Tensor got = agg(a, mask, mode, std::nullopt, std::nullopt, max_len);
      at::Tensor want = agg_ref(b, mask, mode, max_len.value_or(T));
      CHECK_TRUE(got.dim() == 0 && got.scalar_type() == at::kDouble);
      CHECK_CLOSE(got, want, 1e-13, 1e-13);
      got.backward();
      want.backward();
      CHECK_CLOSE(a.grad(), b.grad(), 1e-15, 1e-13);
    }
  }
}

LLMRL_TEST(loss_agg_closed_forms) {
  at::Tensor L = at::tensor({1.0, 2.0, 3.0, 0.0, 4.0, 0.0, 0.0, 0.0, 9.0, 9.0, 9.0, 9.0}, at::kDouble).reshape({3, 4});
  at::Tensor m = at::tensor({1, 1, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0}).to(at::kBool).reshape({3, 4});
  // rows: sums 6 (3 tokens), 4 (1 token), fully masked. S = 2, N = 4, T = 4.
  CHECK_TRUE(val(agg(L, m, "token_mean")) == 10.0 / 4);
  CHECK_TRUE(val(agg(L, m, "seq_mean_token_mean")) == (2.0 + 4.0) / 2);
  CHECK_TRUE(val(agg(L, m, "seq_mean_token_sum_norm")) == 10.0 / (2 * 4));
  CHECK_TRUE(val(agg(L, m, "seq_mean_token_sum_norm", std::nullopt, std::nullopt, 10)) == 10.0 / (2 * 10));
  CHECK_TRUE(val(agg(L, m, "seq_mean_token_sum")) == 10.0 / 2);
  // Normalisers replace the counts; each mode reads only its own.
  CHECK_TRUE(val(agg(L, m, "token_mean", 8.0, 100.0)) == 10.0 / 8);
  CHECK_TRUE(val(agg(L, m, "seq_mean_token_mean", 100.0, 4.0)) == 6.0 / 4);
  CHECK_TRUE(val(agg(L, m, "seq_mean_token_sum", 100.0, 5.0)) == 10.0 / 5);
}

LLMRL_TEST(loss_agg_micro_batches_accumulate_to_the_full_batch_gradient) {
  at::manual_seed(1);
  const int64_t B = 8, T = 21;
  at::Tensor L0 = at::randn({B, T}, at::kDouble);
  at::Tensor mask = at::rand({B, T}) > 0.3;
  mask[1].fill_(false);
  mask[6].slice(0, 3).fill_(false);
  const double N = mask.sum().item<double>();
  const double S = (mask.sum(1) > 0).sum().item<double>();
  for (const char* mode : kModes) {
    at::Tensor full = L0.clone().requires_grad_();
    at::Tensor full_loss = agg(full, mask, mode, std::nullopt, std::nullopt, 30);
    full_loss.backward();
    // Three uneven micro-batches, each with the global counts; gradients accumulate into one leaf.
    at::Tensor acc = L0.clone().requires_grad_();
    double total = 0;
    const int64_t cuts[] = {0, 3, 4, 8};
    for (int k = 0; k < 3; ++k) {
      at::Tensor part = acc.slice(0, cuts[k], cuts[k + 1]);
      at::Tensor l = agg(part, mask.slice(0, cuts[k], cuts[k + 1]), mode, N, S, 30);
      total += val(l);
      l.backward();
    }
    CHECK_TRUE(std::abs(total - val(full_loss)) < 1e-13);
    CHECK_CLOSE(acc.grad(), full.grad(), 1e-15, 1e-13);
  }
}

LLMRL_TEST(loss_agg_all_masked_zero_normalizer_and_garbage) {
  at::Tensor L = at::tensor({1.0f, NAN, INFINITY, -INFINITY, 2.0f, NAN}, at::kFloat).reshape({2, 3});
  at::Tensor m = at::tensor({1, 0, 0, 0, 1, 0}).to(at::kBool).reshape({2, 3});
  for (const char* mode : kModes) {
    at::Tensor x = L.clone().requires_grad_();
    at::Tensor out = agg(x, m, mode);
    out.backward();
    CHECK_TRUE(at::isfinite(out).item<bool>() && at::isfinite(x.grad()).all().item<bool>());
    CHECK_TRUE((at::where(m, at::zeros({2, 3}), x.grad()) == 0).all().item<bool>());
    for (bool zero_norm : {false, true}) {
      at::Tensor y = L.clone().requires_grad_();
      at::Tensor o = zero_norm ? agg(y, m, mode, 0.0, 0.0) : agg(y, at::zeros({2, 3}, at::kBool), mode);
      o.backward();
      CHECK_TRUE(val(o) == 0 && (y.grad() == 0).all().item<bool>());
    }
  }
}

LLMRL_TEST(loss_agg_dtypes) {
  at::manual_seed(2);
  at::Tensor L = at::randn({5, 40}, at::kDouble), mask = at::rand({5, 40}) > 0.3;
  for (auto dt : {at::kFloat, at::kBFloat16, at::kHalf}) {
    for (const char* mode : kModes) {
      at::Tensor l = L.to(dt);
      at::Tensor x = l.clone().requires_grad_();
      at::Tensor out = agg(x, mask.to(at::kInt), mode);  // any mask dtype
      out.backward();
      CHECK_TRUE(out.scalar_type() == at::kFloat && x.grad().scalar_type() == dt);
      at::Tensor ld = l.to(at::kDouble).requires_grad_();
      at::Tensor want = agg_ref(ld, mask, mode, 40);
      want.backward();
      CHECK_CLOSE(out, want, 1e-6, 1e-6);  // float64 sums of the exact low-precision inputs
      CHECK_CLOSE(x.grad(), ld.grad(), dt == at::kFloat ? 1e-7 : 1e-3, 1e-2);
    }
  }
}

LLMRL_TEST(loss_agg_argument_errors) {
  at::Tensor a = at::zeros({2, 3}), m = at::ones({2, 3}, at::kBool);
  auto throws = [](const std::function<void()>& f, const std::string& what) {
    try { f(); } catch (const c10::Error& e) { return std::string(e.what()).find(what) != std::string::npos; }
    return false;
  };
  CHECK_TRUE(throws([&] { agg(a, m, "mean"); }, "loss_agg: 'mode' must be one of"));
  CHECK_TRUE(throws([&] { agg(a, at::ones({3, 2}, at::kBool), "token_mean"); }, "'mask' must have the shape of 'loss'"));
  CHECK_TRUE(throws([&] { agg(at::zeros({6}), at::ones({6}, at::kBool), "token_mean"); }, "'loss' must have shape [B, T]"));
  CHECK_TRUE(throws([&] { agg(a, m, "token_mean", -1.0); }, "'normalizer' must be a finite number >= 0"));
  CHECK_TRUE(throws([&] { agg(a, m, "token_mean", std::nullopt, -2.0); }, "'num_sequences' must be"));
  CHECK_TRUE(throws([&] { agg(a, m, "seq_mean_token_sum_norm", std::nullopt, std::nullopt, 0); }, "'max_length' must be > 0"));
}
